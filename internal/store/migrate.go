package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/keystone-app/keystone/migrations"
)

// migrateLockKey serialises migrations of Keystone processes starting together.
const migrateLockKey = 0x4b53_4d49_4752_4154 // "KSMIGRAT"

// Migrate applies Keystone's migrations and then River's job tables, each
// migration in its own transaction (River's cannot share one: a later version
// uses an enum value an earlier one adds). A failure names the migration and
// carries the database's error; nothing after it is applied.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockKey)); err != nil {
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLockKey))
	}()

	if err := s.migrateKeystone(ctx, migrations.FS); err != nil {
		return err
	}
	return s.migrateRiver(ctx)
}

func (s *Store) migrateKeystone(ctx context.Context, fsys fs.FS) error {
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	// Capabilities land in parallel with numbered blocks (see migrations/embed.go),
	// so a lower number may arrive after a higher one was applied.
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithAllowOutofOrder(true))
	if err != nil {
		return fmt.Errorf("migrate: load migrations: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		var partial *goose.PartialError
		if errors.As(err, &partial) && partial.Failed != nil && partial.Failed.Source != nil {
			return fmt.Errorf("migration %s failed: %w", path.Base(partial.Failed.Source.Path), rootCause(partial.Err))
		}
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func (s *Store) migrateRiver(ctx context.Context) error {
	migrator, err := rivermigrate.New(riverpgxv5.New(s.pool), nil)
	if err != nil {
		return fmt.Errorf("migrate job queue: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate job queue: %w", err)
	}
	return nil
}

// rootCause drops goose's wrapping so the message ends with PostgreSQL's words.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
