package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/keystone-app/keystone/internal/store"
)

func migrate(ctx context.Context, e env) error {
	if err := noArgs(e, "migrate"); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := store.MigrateAs(ctx, cfg.MigrateDatabaseURL, st); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "migrations applied")
	return nil
}
