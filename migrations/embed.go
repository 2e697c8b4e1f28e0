// Package migrations holds Keystone's SQL schema migrations, embedded into the
// binary and applied by internal/store at start-up. A migration never changes
// once it has landed on main: fix forward with a new file.
//
// Numbering: one block per capability, so that work landing in parallel never
// collides: 00001–00099 foundation, 00100–00199 deploy engine, 00200–00299
// secrets and audit, 00300–00399 status page and users, 00400–00499 GitHub
// conversation (outbox, comments), 00500–00599 build ownership, 00600–00699
// hardening, 00700–00799 router, 00800–00899 first-run setup, 00900–00949
// GitHub Deployments and previews, 01000–01049 app host names, 01050–01099
// kept containers (keep_previous), 01100–01149 fault suite.
package migrations

import "embed"

// FS holds every *.sql migration, named NNNNN_what.sql.
//
//go:embed *.sql
var FS embed.FS
