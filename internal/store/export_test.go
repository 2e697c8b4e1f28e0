package store

import (
	"context"
	"io/fs"
)

// MigrateFS applies the migrations of fsys, for tests of migration failures.
func (s *Store) MigrateFS(ctx context.Context, fsys fs.FS) error { return s.migrateKeystone(ctx, fsys) }
