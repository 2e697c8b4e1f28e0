// Package faults is Keystone's whole-system fault suite (`make faults`,
// issue 15). Its tests start the system as a user does — the built
// `keystone serve` and `keystone proxy` binaries configured by environment,
// real PostgreSQL, Docker and git, the fake GitHub — break one part at a
// time, and assert only on what is observable from outside: database rows,
// Docker, the fake GitHub's records and the apps' answers through the
// router. The tests run only with KEYSTONE_FAULTS=1 (scripts/faults.sh sets
// it); each adds a row to the report table printed at the end.
package faults
