package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// cli runs one command in-process the way main does.
type cli struct {
	t   *testing.T
	env map[string]string
}

type result struct {
	stdout, stderr string
	exit           int
}

func (c cli) run(stdin string, args ...string) result {
	c.t.Helper()
	var out, errOut bytes.Buffer
	err := dispatch(c.t.Context(), env{args: args, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		lookup: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }})
	return result{stdout: out.String(), stderr: errOut.String(), exit: exitCode(err)}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.exit, r.stdout, r.stderr)
}

func keyLine(id string, b byte) string {
	return id + ":" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

// appSecrets decrypts what Keystone would inject into owner/repo/app.
func appSecrets(t *testing.T, dbURL, keys, owner, repo, app string) map[string]string {
	t.Helper()
	cfg, err := config.Load(func(k string) (string, bool) {
		v, ok := map[string]string{"KEYSTONE_ENCRYPTION_KEYS": keys}[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := secrets.NewKeyring(cfg.EncryptionKeys)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var id int64
	err = st.Pool().QueryRow(t.Context(), `INSERT INTO apps (installation_id, owner, repo, name, branch) VALUES (1, $1, $2, $3, 'main')
		ON CONFLICT (owner, repo, name) DO UPDATE SET branch = 'main' RETURNING id`, owner, repo, app).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := secrets.New(st, ring).AppSecrets(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSecretCommands: set takes the value from stdin less one line break,
// list shows names only, unset removes, and no output or error ever holds a
// value; mistakes exit 2 (usage) or 1 with a message naming what is wrong.
func TestSecretCommands(t *testing.T) {
	dbURL := storetest.Fresh(t)
	keys := keyLine("k1", 7)
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_ENCRYPTION_KEYS": keys, "SUDO_USER": "alice"}}
	values := map[string]string{"PLAIN": "v-plain-1", "CRLF": "v-crlf-2", "TWO_NL": "v-two-3\n", "MULTI": "line-1\nline-2", "SPACES": "  v-space-4  "}
	inputs := map[string]string{"PLAIN": "v-plain-1\n", "CRLF": "v-crlf-2\r\n", "TWO_NL": "v-two-3\n\n", "MULTI": "line-1\nline-2", "SPACES": "  v-space-4  "}
	var outputs strings.Builder
	for name, in := range inputs {
		r := c.run(in, "secret", "set", "acme/web", "api", name)
		outputs.WriteString(r.stdout + r.stderr)
		if r.exit != 0 || !strings.Contains(r.stdout, "set "+name+" on acme/web/api") {
			t.Fatalf("set %s: %s", name, r)
		}
	}
	if got := appSecrets(t, dbURL, keys, "acme", "web", "api"); fmt.Sprint(got) != fmt.Sprint(values) {
		t.Fatalf("stored values %q, want %q", got, values)
	}
	r := c.run("", "secret", "list", "acme/web", "api")
	outputs.WriteString(r.stdout + r.stderr)
	if r.exit != 0 || r.stdout != "CRLF\nMULTI\nPLAIN\nSPACES\nTWO_NL\n" {
		t.Fatalf("list: %s", r)
	}
	r = c.run("", "secret", "unset", "acme/web", "api", "PLAIN")
	if r.exit != 0 || !strings.Contains(r.stdout, "unset PLAIN") {
		t.Fatalf("unset: %s", r)
	}
	mistakes := []struct {
		stdin string
		args  []string
		exit  int
		want  string
	}{
		{"", []string{"secret"}, 2, "secret needs a subcommand"},
		{"", []string{"secret", "show", "acme/web", "api"}, 2, `unknown secret subcommand "show"`},
		{"x", []string{"secret", "set", "acme/web", "api"}, 2, "secret set takes 3 arguments, got 2"},
		{"x", []string{"secret", "set", "acme", "api", "KEY"}, 2, `"acme" is not OWNER/REPO`},
		{"x", []string{"secret", "set", "acme/web/extra", "api", "KEY"}, 2, `"acme/web/extra" is not OWNER/REPO`},
		{"", []string{"secret", "set", "acme/web", "api", "KEY"}, 1, "the value of KEY is empty"},
		{"\n", []string{"secret", "set", "acme/web", "api", "KEY"}, 1, "the value of KEY is empty"},
		{"v-port-5", []string{"secret", "set", "acme/web", "api", "PORT"}, 1, "PORT is reserved"},
		{"v-bad-6", []string{"secret", "set", "acme/web", "api", "9LIVES"}, 1, `secret name "9LIVES" is not valid`},
		{"v-bad-7", []string{"secret", "set", "acme/web", "Api", "KEY"}, 1, `app name "Api" is not valid`},
		{"v-nul\x00-8", []string{"secret", "set", "acme/web", "api", "KEY"}, 1, "NUL byte"},
		{"", []string{"secret", "unset", "acme/web", "api", "PLAIN"}, 1, "secret PLAIN of acme/web/api: not found"},
		{strings.Repeat("v", secrets.MaxValueBytes+2), []string{"secret", "set", "acme/web", "api", "BIG"}, 1, "more than the 65536 allowed"},
	}
	for _, m := range mistakes {
		r := c.run(m.stdin, m.args...)
		outputs.WriteString(r.stdout + r.stderr)
		if r.exit != m.exit || !strings.Contains(r.stderr, m.want) {
			t.Errorf("%q: %s\nwant exit %d and %q", m.args, r, m.exit, m.want)
		}
	}
	for _, v := range []string{"v-plain-1", "v-crlf-2", "v-two-3", "line-1", "v-space-4", "v-port-5", "v-bad-6", "v-bad-7", "v-nul", "vvvvvvvv"} {
		if strings.Contains(outputs.String(), v) {
			t.Errorf("a command printed the secret value %q", v)
		}
	}
	var actors string
	if err := pgxQueryRow(t, dbURL, `SELECT string_agg(DISTINCT actor, ',') FROM audit_events`, &actors); err != nil || actors != "cli:alice" {
		t.Fatalf("audit actors %q, %v; want cli:alice", actors, err)
	}
}

func pgxQueryRow(t *testing.T, dbURL, sql string, dest ...any) error {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(t.Context(), sql).Scan(dest...)
}

// TestKeysGenerateAndRotate: a generated key put first makes `keys rotate`
// move every secret to it; then the old key can be dropped and every secret
// still decrypts.
func TestKeysGenerateAndRotate(t *testing.T) {
	gen := cli{t: t, env: map[string]string{}}.run("", "keys", "generate")
	line := strings.TrimSpace(gen.stdout)
	if gen.exit != 0 || strings.Count(line, "\n") != 0 || !strings.Contains(gen.stderr, "keys rotate") {
		t.Fatalf("keys generate: %s", gen)
	}
	dbURL := storetest.Fresh(t)
	old := keyLine("old", 1)
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_ENCRYPTION_KEYS": old}}
	for i := range 3 {
		if r := c.run(fmt.Sprintf("value-%d", i), "secret", "set", "acme/web", "api", fmt.Sprintf("K%d", i)); r.exit != 0 {
			t.Fatal(r)
		}
	}
	c.env["KEYSTONE_ENCRYPTION_KEYS"] = line + "," + old
	r := c.run("", "keys", "rotate")
	newID := strings.Split(line, ":")[0]
	if r.exit != 0 || !strings.Contains(r.stdout, "re-encrypted 3 secrets under key "+newID) ||
		!strings.Contains(r.stdout, "no secret uses old any more") {
		t.Fatalf("keys rotate: %s", r)
	}
	got := appSecrets(t, dbURL, line, "acme", "web", "api")
	if len(got) != 3 || got["K2"] != "value-2" {
		t.Fatalf("with the new key alone: %v", got)
	}
	for _, bad := range [][]string{{"keys"}, {"keys", "rotate", "now"}, {"keys", "burn"}} {
		if r := c.run("", bad...); r.exit != 2 {
			t.Errorf("%q: %s, want exit 2", bad, r)
		}
	}
}

// TestAuditVerifyCommand: verify passes on an intact trail and, after a row
// is edited behind the trigger's back, exits 1 naming that row.
func TestAuditVerifyCommand(t *testing.T) {
	dbURL := storetest.Fresh(t)
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "SUDO_USER": "ops"}}
	for i := range 4 {
		if r := c.run("v", "secret", "set", "acme/web", "api", fmt.Sprintf("K%d", i)); r.exit != 0 {
			t.Fatal(r)
		}
	}
	r := c.run("", "audit", "verify")
	if r.exit != 0 || !strings.Contains(r.stdout, "audit trail intact: 4 events checked") {
		t.Fatalf("verify intact: %s", r)
	}
	var victim int64
	if err := pgxQueryRow(t, dbURL, `SELECT id FROM audit_events ORDER BY id OFFSET 2 LIMIT 1`, &victim); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, sql := range []string{`ALTER TABLE audit_events DISABLE TRIGGER USER`,
		fmt.Sprintf(`UPDATE audit_events SET target = 'acme/web/other' WHERE id = %d`, victim),
		`ALTER TABLE audit_events ENABLE TRIGGER USER`} {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	r = c.run("", "audit", "verify")
	if r.exit != 1 || !strings.Contains(r.stderr, fmt.Sprintf("audit event %d: hash mismatch", victim)) ||
		!strings.Contains(r.stdout, "checked 2 audit events") {
		t.Fatalf("verify tampered: %s", r)
	}
	if r := c.run("", "audit"); r.exit != 2 {
		t.Fatalf("audit with no subcommand: %s", r)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	ks := keystonetest.Start(t, map[string]string{"DATABASE_URL": storetest.Fresh(t), "KEYSTONE_DATA_DIR": t.TempDir()})
	_, port, _ := strings.Cut(ks.Addr, ":")
	if r := (cli{t: t, env: map[string]string{"KEYSTONE_ADDR": ":" + port}}).run("", "healthcheck"); r.exit != 0 {
		t.Fatalf("healthcheck of a serving Keystone: %s", r)
	}
	ks.Kill()
	if r := (cli{t: t, env: map[string]string{"KEYSTONE_ADDR": "127.0.0.1:" + port}}).run("", "healthcheck"); r.exit != 1 || !strings.Contains(r.stderr, "healthcheck") {
		t.Fatalf("healthcheck of a dead Keystone: %s", r)
	}
}

// TestProductionServeListsEveryProblem: `keystone serve` in production with
// unsafe configuration exits non-zero before touching anything, listing each
// problem; a safe configuration serves.
func TestProductionServeListsEveryProblem(t *testing.T) {
	devKey := "dev:" + base64.StdEncoding.EncodeToString([]byte("keystone-development-only-key-32"))
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"nothing set", nil, []string{"3 problems", "KEYSTONE_ENCRYPTION_KEYS: required in production",
			"KEYSTONE_PUBLIC_URL: plain http in production", "KEYSTONE_METRICS_TOKEN"}},
		{"development key", []string{"KEYSTONE_GITHUB_WEBHOOK_SECRET=s3cret", "KEYSTONE_PUBLIC_URL=https://ks.example.com",
			"KEYSTONE_ENCRYPTION_KEYS=" + devKey}, []string{`development key id "dev" is not allowed`}},
		{"http without allow", []string{"KEYSTONE_GITHUB_WEBHOOK_SECRET=s3cret", "KEYSTONE_ENCRYPTION_KEYS=" + keyLine("k", 3),
			"KEYSTONE_PUBLIC_URL=http://ks.example.com"}, []string{"KEYSTONE_PUBLIC_URL: plain http in production; use https or set KEYSTONE_ALLOW_HTTP=1"}},
		{"blank keys and bad value", []string{"KEYSTONE_GITHUB_WEBHOOK_SECRET=s3cret", "KEYSTONE_ENCRYPTION_KEYS= ",
			"KEYSTONE_ALLOW_HTTP=1", "KEYSTONE_WORKERS=many"}, []string{"3 problems", "KEYSTONE_ENCRYPTION_KEYS: required", "KEYSTONE_WORKERS", "KEYSTONE_METRICS_TOKEN: required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, keystonetest.Binary(t), "serve")
			// No database at all: the check must stop start-up before it is needed.
			cmd.Env = append([]string{"KEYSTONE_ENV=production", "KEYSTONE_ADDR=127.0.0.1:0"}, c.env...)
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
				t.Fatalf("serve: %v, want exit 1\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "s3cret") {
				t.Errorf("the webhook secret was printed:\n%s", out)
			}
		})
	}
	t.Run("safe configuration serves", func(t *testing.T) {
		keystonetest.Start(t, map[string]string{"KEYSTONE_ENV": "production", "DATABASE_URL": storetest.Fresh(t),
			"KEYSTONE_GITHUB_WEBHOOK_SECRET": "s3cret", "KEYSTONE_ENCRYPTION_KEYS": keyLine("k", 3),
			"KEYSTONE_PUBLIC_URL": "https://ks.example.com", "KEYSTONE_DATA_DIR": t.TempDir(),
			"KEYSTONE_METRICS_TOKEN": "0123456789abcdef0123"})
	})
}

// TestServeWarnsOfSecretsUnderMissingKeys: dropping a key before rotating is
// reported at start-up, naming the key, while Keystone keeps serving.
func TestServeWarnsOfSecretsUnderMissingKeys(t *testing.T) {
	dbURL := storetest.Fresh(t)
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_ENCRYPTION_KEYS": keyLine("dropped", 4)}}
	if r := c.run("value", "secret", "set", "acme/web", "api", "TOKEN"); r.exit != 0 {
		t.Fatal(r)
	}
	ks := keystonetest.Start(t, map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_ENCRYPTION_KEYS": keyLine("current", 5),
		"KEYSTONE_DATA_DIR": t.TempDir()})
	line := ks.WaitLog(30*time.Second, func(l map[string]any) bool {
		return strings.Contains(fmt.Sprint(l["msg"]), "keys missing from KEYSTONE_ENCRYPTION_KEYS")
	})
	if line["key_ids"] != "dropped" || line["secrets"] != float64(1) {
		t.Fatalf("warning %v, want key_ids dropped and 1 secret", line)
	}
}

// TestAppAllowCommand: `keystone app allow` records the allowance and
// audits it under the CLI actor; bad names exit 2.
func TestAppAllowCommand(t *testing.T) {
	dbURL := storetest.Fresh(t)
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "SUDO_USER": "alice"}}
	if r := c.run("", "app", "allow", "Acme/Web", "api", "tmp"); r.exit != 0 || !strings.Contains(r.stdout, "allowed Acme/Web/api to deploy from branch tmp") {
		t.Fatalf("app allow: %s", r)
	}
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q := store.NewQueries(st.Pool())
	if b, err := q.AllowedBranch(t.Context(), "acme", "web", "api"); b != "tmp" || err != nil {
		t.Fatalf("allowance %q, %v", b, err)
	}
	var actor string
	if err := st.Pool().QueryRow(t.Context(), `SELECT actor FROM audit_events WHERE action = 'app.allowed'
		AND target = 'acme/web/api' AND details->>'branch' = 'tmp'`).Scan(&actor); err != nil || actor != "cli:alice" {
		t.Fatalf("audit actor %q, %v", actor, err)
	}
	for _, args := range [][]string{{"app", "allow", "acme", "api", "tmp"}, {"app", "allow", "acme/web", "API", "tmp"},
		{"app", "allow", "acme/web", "api"}, {"app", "allow", "acme/web", "api", "a b"}} {
		if r := c.run("", args...); r.exit != 2 {
			t.Errorf("%q: %s, want exit 2", args, r)
		}
	}
}

// TestAuditHeadAndAnchors: `audit head` prints ID:HASH; `audit verify
// --anchor` accepts it, and refuses an anchor the trail does not match.
func TestAuditHeadAndAnchors(t *testing.T) {
	dbURL := storetest.Fresh(t)
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "SUDO_USER": "alice"}}
	for _, b := range []string{"one", "two"} {
		if r := c.run("", "app", "allow", "acme/web", "api", b); r.exit != 0 {
			t.Fatalf("app allow: %s", r)
		}
	}
	head := c.run("", "audit", "head")
	anchor := strings.TrimSpace(head.stdout)
	if head.exit != 0 || !strings.HasPrefix(anchor, "2:") || len(anchor) != 2+64 {
		t.Fatalf("audit head: %s", head)
	}
	if r := c.run("", "audit", "verify", "--anchor", anchor); r.exit != 0 || !strings.Contains(r.stdout, "1 anchors match") {
		t.Fatalf("verify against the head: %s", r)
	}
	wrong := "2:" + strings.Repeat("0", 64)
	if r := c.run("", "audit", "verify", "--anchor="+wrong); r.exit != 1 || !strings.Contains(r.stderr, "anchor") {
		t.Fatalf("verify against a wrong anchor: %s", r)
	}
	if r := c.run("", "audit", "verify", "--anchor", "x"); r.exit != 2 {
		t.Fatalf("a malformed anchor: %s", r)
	}
}
