package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/keystone-app/keystone/internal/setup"
	"github.com/keystone-app/keystone/internal/store"
)

// appCommand is `keystone app forget`: it removes the GitHub App stored by
// the first-run setup (SPEC §15), audited; the next `keystone serve` without
// KEYSTONE_GITHUB_* variables offers the setup again.
func appCommand(ctx context.Context, e env) error {
	if _, _, err := subcommand(e, "app", "app forget", map[string]int{"forget": 0}); err != nil {
		return err
	}
	_, st, err := openDatabase(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	err = setup.Forget(ctx, st, cliActor(e))
	if errors.Is(err, store.ErrNotFound) {
		return errors.New("no GitHub App is stored (one set by KEYSTONE_GITHUB_* variables is not stored: unset them)")
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "forgot the stored GitHub App; restart keystone serve to stop using it and get a new setup link")
	fmt.Fprintln(e.stderr, "keystone: the App still exists on GitHub: delete it there (Settings → Developer settings → GitHub Apps) if it is no longer wanted")
	return nil
}
