package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
)

const appUsage = "app allow OWNER/REPO APP BRANCH"

var appNamePattern = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// appCommand is `keystone app allow`: an admin's allowance for pushes to
// BRANCH to create, re-create or re-point APP, which the default branch's
// .keystone.yml does not give that branch (SPEC §5). It is audited.
func appCommand(ctx context.Context, e env) error {
	_, args, err := subcommand(e, "app", appUsage, map[string]int{"allow": 3})
	if err != nil {
		return err
	}
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
