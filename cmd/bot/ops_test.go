package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// script runs one of scripts/ with env on top of PATH and HOME.
func script(t *testing.T, env map[string]string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", name), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// seed gives a database what a Keystone in use has: installations, apps,
// deployments with steps and logs, secrets and audit events.
func seed(t *testing.T, c cli, dbURL string) {
	t.Helper()
	conn := connect(t, dbURL)
	exec1(t, conn, `INSERT INTO installations (id, account_login) VALUES (7, 'acme')`)
	exec1(t, conn, `INSERT INTO repositories (id, installation_id, full_name) VALUES (70, 7, 'acme/web')`)
	for i, app := range []string{"api", "worker"} {
		var appID int64
		err := conn.QueryRow(t.Context(), `INSERT INTO apps (installation_id, owner, repo, name, branch, host_port)
			VALUES (7, 'acme', 'web', $1, 'main', $2) RETURNING id`, app, 9000+i).Scan(&appID)
		if err != nil {
			t.Fatal(err)
		}
		for d := range 3 {
			var depID int64
			sha := strings.Repeat(fmt.Sprint(d+1), 40)
			err := conn.QueryRow(t.Context(), `INSERT INTO deployments (app_id, kind, sha, actor, trigger, state, step, description, queued_at, started_at, finished_at)
				VALUES ($1, $2, $3, 'alice', 'push', 'succeeded', 'done', 'Deployed in 1.2s', now(), now(), now()) RETURNING id`,
				appID, map[bool]string{true: "deploy", false: "update"}[d == 0], sha).Scan(&depID)
			if err != nil {
				t.Fatal(err)
			}
			exec1(t, conn, `INSERT INTO deployment_steps (deployment_id, position, name, finished_at) VALUES ($1, 1, 'build', now())`, depID)
			exec1(t, conn, `INSERT INTO deployment_log_lines (deployment_id, seq, line) SELECT $1, g, 'line ' || g FROM generate_series(1, 20) g`, depID)
			exec1(t, conn, `UPDATE apps SET current_deployment_id = $1 WHERE id = $2`, depID, appID)
		}
	}
	for _, name := range []string{"DATABASE_URL", "API_TOKEN"} {
		if r := c.run("value-of-"+name, "secret", "set", "acme/web", "api", name); r.exit != 0 {
			t.Fatal(r)
		}
	}
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range 5 {
		if err := st.AppendAudit(t.Context(), store.AuditEvent{Actor: "alice", Action: store.AuditDeployRequested,
			Target: "acme/web/api", Details: map[string]any{"n": i, "sha": "abc1234", "nested": map[string]any{"ok": true}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot fingerprints every table a restore must bring back.
func snapshot(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	conn := connect(t, dbURL)
	out := map[string]string{}
	for _, table := range []string{"installations", "repositories", "apps", "deployments", "deployment_steps",
		"deployment_log_lines", "secrets", "audit_events", "audit_chain_head", "goose_db_version"} {
		var n int
		var sum string
		err := conn.QueryRow(t.Context(), fmt.Sprintf(`SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM %s t`, table)).Scan(&n, &sum)
		if err != nil {
			t.Fatalf("fingerprint %s: %v", table, err)
		}
		out[table] = fmt.Sprintf("%d rows %s", n, sum)
	}
	return out
}

func httpOK(t *testing.T, u string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
}

// TestBackupDropRestore: scripts/backup.sh and scripts/restore.sh bring a
// dropped database back with the same apps, history, secrets and audit
// trail; Keystone serves it, audit verify passes and new events chain on.
func TestBackupDropRestore(t *testing.T) {
	dbURL := storetest.Fresh(t)
	keys := keyLine("k1", 9)
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_ENCRYPTION_KEYS": keys, "SUDO_USER": "ops"}}
	seed(t, c, dbURL)
	ksEnv := map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_ENCRYPTION_KEYS": keys, "KEYSTONE_DATA_DIR": t.TempDir()}
	ks := keystonetest.Start(t, ksEnv)
	httpOK(t, ks.URL+"/healthz")
	if err := ks.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dbURL)

	dump := filepath.Join(t.TempDir(), "keystone.dump")
	if out, err := script(t, map[string]string{"DATABASE_URL": dbURL}, "backup.sh", dump); err != nil || strings.TrimSpace(out) != dump {
		t.Fatalf("backup.sh: %v\n%s", err, out)
	}
	recreateDatabase(t, dbURL)
	if out, err := script(t, map[string]string{"DATABASE_URL": dbURL}, "restore.sh", dump); err != nil {
		t.Fatalf("restore.sh: %v\n%s", err, out)
	}
	after := snapshot(t, dbURL)
	for table, fp := range before {
		if after[table] != fp {
			t.Errorf("%s after restore: %s, before: %s", table, after[table], fp)
		}
	}

	ks = keystonetest.Start(t, ksEnv)
	httpOK(t, ks.URL+"/healthz")
	httpOK(t, ks.URL+"/readyz")
	verify := exec.CommandContext(t.Context(), keystonetest.Binary(t), "audit", "verify")
	verify.Env = []string{"DATABASE_URL=" + dbURL, "PATH=" + os.Getenv("PATH")}
	// 7 seeded, and each of the two starts without a GitHub App issued a
	// setup link (setup.link_issued).
	if out, err := verify.CombinedOutput(); err != nil || !strings.Contains(string(out), "audit trail intact: 9 events checked") {
		t.Fatalf("keystone audit verify after restore: %v\n%s", err, out)
	}
	if got := appSecrets(t, dbURL, keys, "acme", "web", "api"); got["API_TOKEN"] != "value-of-API_TOKEN" || len(got) != 2 {
		t.Fatalf("secrets after restore: %v", got)
	}
	if r := c.run("after-restore", "secret", "set", "acme/web", "api", "NEW"); r.exit != 0 {
		t.Fatalf("a change after the restore: %s", r)
	}
	if r := c.run("", "audit", "verify"); r.exit != 0 || !strings.Contains(r.stdout, "10 events checked") {
		t.Fatalf("the chain does not go on after the restore: %s", r)
	}
	ks.Kill()

	out, err := script(t, map[string]string{"DATABASE_URL": dbURL}, "restore.sh", dump)
	if err == nil || !strings.Contains(out, "already has") || !strings.Contains(out, "--clean") {
		t.Fatalf("restore over a database in use: %v\n%s", err, out)
	}
	if out, err := script(t, map[string]string{"DATABASE_URL": dbURL}, "restore.sh", "--clean", dump); err != nil {
		t.Fatalf("restore.sh --clean: %v\n%s", err, out)
	}
	if after := snapshot(t, dbURL); after["audit_events"] != before["audit_events"] || after["secrets"] != before["secrets"] {
		t.Fatalf("--clean restore did not bring back the dump: %v", after)
	}
}

// recreateDatabase drops the database of dbURL and creates it empty.
func recreateDatabase(t *testing.T, dbURL string) {
	t.Helper()
	name := databaseName(t, dbURL)
	server := connect(t, storetest.ServerURL(t))
	exec1(t, server, fmt.Sprintf(`DROP DATABASE %s WITH (FORCE)`, pgx.Identifier{name}.Sanitize()))
	exec1(t, server, fmt.Sprintf(`CREATE DATABASE %s`, pgx.Identifier{name}.Sanitize()))
}

func databaseName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func withUser(t *testing.T, dbURL, role string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// TestAuditRoleCannotRewriteHistory: after scripts/db-roles.sql, Keystone
// runs as a role that appends to the audit trail but cannot change, delete,
// truncate, or unprotect it; the owner role still migrates, and new tables
// reach the app role.
func TestAuditRoleCannotRewriteHistory(t *testing.T) {
	dbURL := storetest.Fresh(t) // migrated by a superuser, as an existing install would be
	suffix := randomTag("")
	owner, app := "ks_owner_"+suffix, "ks_app_"+suffix
	server := connect(t, storetest.ServerURL(t))
	exec1(t, server, fmt.Sprintf(`CREATE ROLE %s LOGIN`, owner))
	exec1(t, server, fmt.Sprintf(`CREATE ROLE %s LOGIN`, app))
	t.Cleanup(func() {
		ctx := context.Background()
		for _, sql := range []string{`DROP DATABASE IF EXISTS ` + pgx.Identifier{databaseName(t, dbURL)}.Sanitize() + ` WITH (FORCE)`, `DROP ROLE ` + app, `DROP ROLE ` + owner} {
			if _, err := server.Exec(ctx, sql); err != nil {
				t.Errorf("cleanup %s: %v", sql, err)
			}
		}
	})
	psql := exec.CommandContext(t.Context(), "psql", "--no-psqlrc", "--quiet", "--dbname="+dbURL,
		"-v", "owner="+owner, "-v", "app="+app, "-f", filepath.Join(repoRoot(t), "scripts", "db-roles.sql"))
	if out, err := psql.CombinedOutput(); err != nil {
		t.Fatalf("db-roles.sql: %v\n%s", err, out)
	}
	ownerURL, appURL := withUser(t, dbURL, owner), withUser(t, dbURL, app)
	if r := (cli{t: t, env: map[string]string{"DATABASE_URL": ownerURL}}).run("", "migrate"); r.exit != 0 {
		t.Fatalf("migrate as the owner: %s", r)
	}

	ks := keystonetest.Start(t, map[string]string{"DATABASE_URL": appURL, "KEYSTONE_DATA_DIR": t.TempDir()})
	httpOK(t, ks.URL+"/readyz")
	asApp := cli{t: t, env: map[string]string{"DATABASE_URL": appURL, "SUDO_USER": "ops"}}
	for _, args := range [][]string{{"secret", "set", "acme/web", "api", "TOKEN"}, {"secret", "unset", "acme/web", "api", "TOKEN"}, {"audit", "verify"}} {
		if r := asApp.run("value", args...); r.exit != 0 {
			t.Fatalf("%q as the app role: %s", args, r)
		}
	}

	conn := connect(t, appURL)
	for _, sql := range []string{
		`UPDATE audit_events SET actor = 'mallory'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
		`ALTER TABLE audit_events DISABLE TRIGGER USER`,
		`DROP TRIGGER audit_events_no_update_delete ON audit_events`,
		`DROP FUNCTION audit_events_append_only() CASCADE`,
		`DROP TABLE audit_events`,
		`DELETE FROM audit_chain_head`,
		`CREATE TABLE sneaky (x int)`,
	} {
		_, err := conn.Exec(t.Context(), sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as the app role: err = %v, want permission denied (42501)", sql, err)
		}
	}
	ownerConn := connect(t, ownerURL)
	exec1(t, ownerConn, `CREATE TABLE later_migration (x int)`)
	exec1(t, conn, `INSERT INTO later_migration VALUES (1)`)
	_, err := ownerConn.Exec(t.Context(), `UPDATE audit_events SET actor = 'mallory'`)
	if err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("UPDATE as the owner: %v, want the trigger's refusal", err)
	}
	if err := ks.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ks.Output(), "permission denied") {
		t.Fatalf("Keystone as the app role hit a missing privilege:\n%s", ks.Output())
	}
}

// TestServeLocksTheAuditTrailAtStartUp: given KEYSTONE_MIGRATE_DATABASE_URL,
// `keystone serve` migrates as that role and grants DATABASE_URL's role its
// rights by itself, so the role it serves as can append to the audit trail
// but not rewrite it, with no script run by hand; serving as a role that can
// rewrite the trail is said loudly.
func TestServeLocksTheAuditTrailAtStartUp(t *testing.T) {
	dbURL := storetest.Fresh(t)
	app := "ks_app_" + randomTag("")
	server := connect(t, storetest.ServerURL(t))
	exec1(t, server, fmt.Sprintf(`CREATE ROLE %s LOGIN`, app))
	t.Cleanup(func() {
		ctx := context.Background()
		for _, sql := range []string{`DROP DATABASE IF EXISTS ` + pgx.Identifier{databaseName(t, dbURL)}.Sanitize() + ` WITH (FORCE)`, `DROP ROLE ` + app} {
			if _, err := server.Exec(ctx, sql); err != nil {
				t.Errorf("cleanup %s: %v", sql, err)
			}
		}
	})
	const warning = "the audit trail is not protected"
	appURL := withUser(t, dbURL, app)
	ks := keystonetest.Start(t, map[string]string{"DATABASE_URL": appURL, "KEYSTONE_MIGRATE_DATABASE_URL": dbURL,
		"KEYSTONE_DATA_DIR": t.TempDir()})
	httpOK(t, ks.URL+"/readyz")
	asApp := cli{t: t, env: map[string]string{"DATABASE_URL": appURL, "SUDO_USER": "ops"}}
	if r := asApp.run("value", "secret", "set", "acme/web", "api", "TOKEN"); r.exit != 0 {
		t.Fatalf("secret set as the app role: %s", r)
	}
	conn := connect(t, appURL)
	for _, sql := range []string{`UPDATE audit_events SET actor = 'mallory'`, `DELETE FROM audit_events`, `TRUNCATE audit_events`,
		`ALTER TABLE audit_events DISABLE TRIGGER USER`} {
		_, err := conn.Exec(t.Context(), sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as the app role: err = %v, want permission denied (42501)", sql, err)
		}
	}
	if err := ks.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ks.Output(), warning) || strings.Contains(ks.Output(), "permission denied") {
		t.Fatalf("Keystone as the granted app role:\n%s", ks.Output())
	}

	// As the owner itself, Keystone serves but says the trail is unprotected.
	owner := keystonetest.Start(t, map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_DATA_DIR": t.TempDir()})
	httpOK(t, owner.URL+"/readyz")
	if err := owner.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(owner.Output(), warning) {
		t.Fatalf("Keystone as the tables' owner did not warn %q:\n%s", warning, owner.Output())
	}
}
