package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
)

// auditWant is one event an action must have left: who, what, on what, and
// some of its details (matched with jsonb containment).
type auditWant struct {
	actor, action, target string
	details               map[string]any
	via                   string // the entry point, naming the subtest
}

// TestEveryAuditedActionLeavesItsEvent performs every audited action of
// SPEC §11 through its real entry point (CLI, sign-in form, webhooks of
// pushes and comments), then finds each one's event, verifies the chain with
// `keystone audit verify`, breaks one row behind the trigger's back and sees
// verify fail naming it.
func TestEveryAuditedActionLeavesItsEvent(t *testing.T) {
	t.Parallel()
	oldKey, newKey := keyLine("old", 1), keyLine("new", 2)
	s := newStack(t, newKey+","+oldKey)
	s.cliKeys = oldKey // secrets are set under the old key, so rotate has work
	cliActions(t, s)
	s.start(t)
	pageActions(t, s)

	v1 := s.deployed(t, appFiles(t, gittest.Behaviour{Version: "1"}), "v1")
	lock := s.comment(t, "alice", "/keystone lock web freeze")
	s.Reply(t, lock, "🔒 **web** is locked by @alice: freeze.", deployWait)
	unlock := s.comment(t, "alice", "/keystone unlock")
	s.Reply(t, unlock, "🔓 **web** is unlocked", deployWait)
	// Comments redeploy with `deploy` (the branch's head again, an update).
	redeploy := s.comment(t, "alice", "/keystone deploy web")
	s.Reply(t, redeploy, "✅ Deployed **web** at `"+v1[:7]+"`", deployWait)
	denied := s.comment(t, "bob", "/keystone lock web")
	s.Reply(t, denied, "needs write, maintain or admin access", deployWait)
	// The file now names only an app of another branch: web leaves.
	s.push(t, map[string][]byte{".keystone.yml": gittest.KeystoneYML("other", "release")}, "web leaves")

	want := []auditWant{
		{cliActor, "user.added", "user:ada", map[string]any{}, "user add ada"},
		{cliActor, "user.added", "user:tmp", map[string]any{}, "user add tmp"},
		{cliActor, "user.removed", "user:tmp", map[string]any{}, "user remove tmp"},
		{cliActor, "secret.set", appKey, map[string]any{"name": "KEEP", "key_id": "old"}, "secret set KEEP"},
		{cliActor, "secret.unset", appKey, map[string]any{"name": "DROP"}, "secret unset DROP"},
		{cliActor, "app.allowed", appKey, map[string]any{"branch": "staging"}, "app allow"},
		{cliActor, "keys.rotated", "secrets", map[string]any{"key_id": "new", "rotated": 1}, "keys rotate"},
		{"ada", "login.failed", "user:ada", map[string]any{"method": "password"}, "wrong password"},
		{"ada", "login.succeeded", "user:ada", map[string]any{}, "sign in"},
		{"ada", "logout", "user:ada", map[string]any{}, "sign out"},
		{"alice", "deployment.requested", appKey, map[string]any{"kind": "deploy", "sha": v1, "trigger": "push"}, "push v1"},
		{"keystone", "deployment.finished", appKey, map[string]any{"kind": "deploy", "sha": v1, "state": "succeeded"}, "push v1 finished"},
		{"alice", "command.accepted", appKey, map[string]any{"verb": "lock", "comment_id": lock.ID}, "lock comment"},
		{"alice", "app.locked", appKey, map[string]any{"reason": "freeze"}, "lock comment"},
		{"alice", "command.accepted", appKey, map[string]any{"verb": "unlock", "comment_id": unlock.ID}, "unlock comment"},
		{"alice", "app.unlocked", appKey, map[string]any{"was_locked_by": "alice"}, "unlock comment"},
		{"alice", "command.accepted", appKey, map[string]any{"verb": "deploy", "comment_id": redeploy.ID}, "deploy comment"},
		{"alice", "deployment.requested", appKey, map[string]any{"kind": "update", "sha": v1, "trigger": "comment"}, "deploy comment"},
		{"keystone", "deployment.finished", appKey, map[string]any{"kind": "update", "sha": v1, "state": "succeeded"}, "deploy comment finished"},
		{"bob", "command.denied", repoName, map[string]any{"verb": "lock", "comment_id": denied.ID}, "bob's lock comment"},
		{"alice", "app.removed", appKey, map[string]any{"branch": "main", "secrets_deleted": []string{"KEEP"}}, "push without web"},
	}
	coversEveryAction(t, append(want, firstRunAudit()...)) // the setup's: TestFirstRunInOneClick
	// app.removed is the last to be written; the push is handled in the
	// background.
	deploytest.Eventually(t, deployWait, "the app.removed event", func() (bool, error) {
		return countEvents(t, s, want[len(want)-1]) == 1, nil
	})
	for _, w := range want {
		t.Run(w.via+": "+w.action, func(t *testing.T) {
			if n := countEvents(t, s, w); n != 1 {
				t.Errorf("%d events by %s of %s on %s with %v, want 1\ntrail:\n%s", n, w.actor, w.action, w.target, w.details, trail(t, s))
			}
		})
	}
	verifyAndTamper(t, s)
}

// coversEveryAction fails the test when internal/store declares an audit
// action (a constant Audit… = "…") that want does not expect, so that a new
// action cannot go untested here.
func coversEveryAction(t *testing.T, want []auditWant) {
	t.Helper()
	expected := map[string]bool{}
	for _, w := range want {
		expected[w.action] = true
	}
	pkgs, err := parser.ParseDir(token.NewFileSet(), "../store", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := 0
	for _, f := range pkgs["store"].Files {
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok || len(spec.Names) != 1 || len(spec.Values) != 1 || !strings.HasPrefix(spec.Names[0].Name, "Audit") {
				return true
			}
			if lit, ok := spec.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				action, _ := strconv.Unquote(lit.Value)
				declared++
				if !expected[action] {
					t.Errorf("store declares the audit action %s (%s), which this test does not perform", action, spec.Names[0].Name)
				}
			}
			return true
		})
	}
	if declared < len(expected) {
		t.Errorf("found %d audit actions declared in internal/store, fewer than the %d expected: the scan is broken", declared, len(expected))
	}
}

// cliActions runs the audited CLI commands, before Keystone serves.
func cliActions(t *testing.T, s *stack) {
	t.Helper()
	s.addUser(t, "ada", "admin")
	s.addUser(t, "tmp", "viewer")
	s.mustCLI(t, "", "user", "remove", "tmp")
	s.mustCLI(t, "kept value\n", "secret", "set", repoName, "web", "KEEP")
	s.mustCLI(t, "dropped value\n", "secret", "set", repoName, "web", "DROP")
	s.mustCLI(t, "", "secret", "unset", repoName, "web", "DROP")
	s.mustCLI(t, "", "app", "allow", repoName, "web", "staging")
	s.cliKeys = s.env["KEYSTONE_ENCRYPTION_KEYS"] // new first, old still readable
	if r := s.mustCLI(t, "", "keys", "rotate"); !strings.Contains(r.stdout, "re-encrypted 1 secrets under key new") {
		t.Fatalf("keys rotate: %s", r)
	}
}

// pageActions signs in with a wrong password, then rightly, and out, over
// HTTP with the forms' CSRF tokens.
func pageActions(t *testing.T, s *stack) {
	t.Helper()
	if code := s.visitor(t).login("ada", "not-her-password"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong password answered %d, want 401", code)
	}
	web := s.signIn(t, "ada")
	if code, loc := web.post("/logout", "/", nil); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login") {
		t.Fatalf("sign out answered %d to %q", code, loc)
	}
	if code, _ := web.get("/"); code == http.StatusOK {
		t.Fatal("after signing out / still answers 200: the session was not ended")
	}
}

// countEvents counts the events matching w.
func countEvents(t *testing.T, s *stack, w auditWant) int {
	t.Helper()
	details, err := json.Marshal(w.details)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = s.Store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM audit_events
		WHERE actor = $1 AND action = $2 AND target = $3 AND details @> $4::jsonb`,
		w.actor, w.action, w.target, string(details)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// trail lists every event, for failure messages.
func trail(t *testing.T, s *stack) string {
	t.Helper()
	rows, err := s.Store.Pool().Query(t.Context(), `SELECT id || ' ' || actor || ' ' || action || ' ' || target || ' ' || details::text
		FROM audit_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// verifyAndTamper: `keystone audit verify` passes, then fails naming the
// app.locked event once a superuser has changed its actor with the
// append-only trigger disabled.
func verifyAndTamper(t *testing.T, s *stack) {
	t.Helper()
	r := s.mustCLI(t, "", "audit", "verify")
	if !strings.Contains(r.stdout, "audit trail intact: ") {
		t.Fatalf("audit verify: %s", r)
	}
	var victim int64
	if err := s.Store.Pool().QueryRow(t.Context(), `SELECT id FROM audit_events WHERE action = 'app.locked'`).Scan(&victim); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), s.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(t.Context(), conn, func(tx pgx.Tx) error {
		for _, sql := range []string{`ALTER TABLE audit_events DISABLE TRIGGER USER`,
			fmt.Sprintf(`UPDATE audit_events SET actor = 'mallory' WHERE id = %d`, victim),
			`ALTER TABLE audit_events ENABLE TRIGGER USER`} {
			if _, err := tx.Exec(t.Context(), sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r = s.cli(t, "", "audit", "verify")
	if r.exit == 0 || !strings.Contains(r.stderr, fmt.Sprintf("audit event %d: hash mismatch", victim)) {
		t.Fatalf("audit verify after event %d was changed: %s", victim, r)
	}
}
