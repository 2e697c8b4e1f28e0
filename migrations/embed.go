// Package migrations holds Keystone's SQL schema migrations, embedded into the
// binary and applied by internal/store at start-up. A migration never changes
// once it has landed on main: fix forward with a new file.
//
// Numbering: 00001–00099 foundation, then one block per capability so that work
// landing in parallel never collides.
package migrations

import "embed"

// FS holds every *.sql migration, named NNNNN_what.sql.
//
//go:embed *.sql
var FS embed.FS
