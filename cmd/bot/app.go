package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/setup"
	"github.com/keystone-app/keystone/internal/store"
)

const appUsage = "app allow OWNER/REPO APP BRANCH | app forget"

var appNamePattern = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// appCommand is `keystone app allow|forget`.
func appCommand(ctx context.Context, e env) error {
	sub, args, err := subcommand(e, "app", appUsage, map[string]int{"allow": 3, "forget": 0})
	if err != nil {
		return err
	}
	if sub == "forget" {
		return appForget(ctx, e)
	}
	return appAllow(ctx, e, args)
}

// appAllow is `keystone app allow`: an admin's allowance for pushes to BRANCH
// to create, re-create or re-point APP, which the default branch's
// .keystone.yml does not give that branch (SPEC §5). It is audited.
func appAllow(ctx context.Context, e env, args []string) error {
	owner, repo, ok := strings.Cut(args[0], "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return usageError{fmt.Sprintf("%q is not OWNER/REPO: keystone %s", args[0], appUsage)}
	}
	app, branch := args[1], strings.TrimPrefix(args[2], "refs/heads/")
	if !appNamePattern.MatchString(app) {
		return usageError{fmt.Sprintf("%q is not an app name ([a-z0-9-]{1,40}): keystone %s", app, appUsage)}
	}
	if branch == "" || strings.ContainsAny(branch, " \t\n:") {
		return usageError{fmt.Sprintf("%q is not a branch name: keystone %s", args[2], appUsage)}
	}
	_, st, err := openDatabase(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		return q.AllowApp(ctx, owner, repo, app, branch, cliActor(e))
	}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "allowed %s/%s/%s to deploy from branch %s (from its next push)\n", owner, repo, app, branch)
	return nil
}

// appForget is `keystone app forget`: it removes the GitHub App stored by the
// first-run setup (SPEC §15), audited; the next `keystone serve` without
// KEYSTONE_GITHUB_* variables offers the setup again.
func appForget(ctx context.Context, e env) error {
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
