// Package faults is Keystone's whole-system fault suite (`make faults`,
// issue 15). Its tests start the system as a user does — the built
// `keystone serve` and `keystone proxy` binaries configured by environment,
// real PostgreSQL, Docker and git, the fake GitHub — break one part at a
// time, and assert only on what is observable from outside: database rows,
// Docker, the fake GitHub's records and the apps' answers through the
// router. The tests are built only with the `faults` build tag
// (scripts/faults.sh sets it; `make test` vets them with it and runs only a
// reduced set, KEYSTONE_FAULTS_QUICK=1: the whole suite takes minutes of
// the machine); each adds a row to the report table printed at the end.
package faults
