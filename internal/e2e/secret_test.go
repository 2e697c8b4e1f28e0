package e2e_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
)

// TestSecretNeverLeaks sets a secret with the CLI, deploys an app whose
// build prints the value and whose container prints it, proves the container
// really has it, and then looks for the value everywhere Keystone writes:
// the database (the deployment log and audit trail among every table), every
// request it sent GitHub (statuses, comments, a /keystone status reply),
// every status page an admin can open, and its own output.
func TestSecretNeverLeaks(t *testing.T) {
	t.Parallel()
	s := newStack(t, keyLine("k1", 1))
	s.start(t)
	value := "e2e-secret-" + rand.Text() // distinctive: found nowhere by chance
	s.mustCLI(t, value+"\n", "secret", "set", repoName, "web", "API_TOKEN")
	s.addUser(t, "ada", "admin")

	sha := s.deployed(t, appFiles(t, gittest.Behaviour{Version: "1", BuildStep: true,
		BuildPrint: []string{"build sees " + value}, PrintEnv: []string{"API_TOKEN"}}), "v1 prints its secret")
	id := s.lastDeploymentID(t)
	port := s.App(t, "web").HostPort
	if code, body, err := deploytest.Get(port, "/env/API_TOKEN"); err != nil || code != 200 || body != value {
		t.Fatalf("the container's API_TOKEN: %d %q %v; want the secret", code, body, err)
	}
	deploytest.Eventually(t, deployWait, "the PR comment of the deploy", func() (bool, error) {
		return s.botCommentContains("✅ Deployed **web** at `" + sha[:7] + "`"), nil
	})
	status := s.comment(t, "alice", "/keystone status")
	s.Reply(t, status, "Keystone status of "+repoName, deployWait)

	// The printed lines reached Keystone: they are there, masked.
	log := strings.Join(s.Log(t, id), "\n")
	if !strings.Contains(log, "build sees [redacted]") {
		t.Errorf("the stored log lacks the build's line, masked:\n%s", log)
	}
	s.pagesDoNotLeak(t, value, id)
	s.gitHubDoesNotLeak(t, value, sha)
	s.databaseDoesNotLeak(t, value)
	if out := s.ks.Output(); strings.Contains(out, value) {
		t.Errorf("Keystone's own output shows the secret:\n%s", lineWith(out, value))
	}
}

// pagesDoNotLeak signs in as the admin and opens every page that shows the
// app, its deployment or the trail. Each must show what it is about (the
// masked lines, the secret's name), so a blank page cannot pass.
func (s *stack) pagesDoNotLeak(t *testing.T, value string, id int64) {
	t.Helper()
	web := s.signIn(t, "ada")
	pages := []struct{ path, shows string }{
		{"/", "octo/web"},
		{"/apps/octo/web/web", "API_TOKEN=[redacted]"}, // recent container output; the secrets list names API_TOKEN
		{fmt.Sprintf("/deployments/%d", id), "build sees [redacted]"},
		{fmt.Sprintf("/deployments/%d/log", id), "build sees [redacted]"},
		{"/audit", "secret.set"},
	}
	for _, p := range pages {
		body := web.page(p.path)
		if !strings.Contains(body, p.shows) {
			t.Errorf("%s does not show %q: the check below would prove nothing\n%s", p.path, p.shows, body)
		}
		if strings.Contains(body, value) {
			t.Errorf("%s shows the secret:\n%s", p.path, lineWith(body, value))
		}
	}
	if app := web.page("/apps/octo/web/web"); !strings.Contains(app, "<code>API_TOKEN</code>") {
		t.Errorf("the app page's secrets list lacks API_TOKEN")
	}
}

// gitHubDoesNotLeak checks every status and comment by name, then every
// request body Keystone sent the fake GitHub.
func (s *stack) gitHubDoesNotLeak(t *testing.T, value, sha string) {
	t.Helper()
	sts := s.GitHub.Statuses(repoName, sha)
	if len(sts) < 2 {
		t.Errorf("%d statuses of the deploy, want its steps", len(sts))
	}
	for _, st := range sts {
		if strings.Contains(st.Description+st.TargetURL, value) {
			t.Errorf("status %+v shows the secret", st)
		}
	}
	comments := s.GitHub.Comments(repoName, prNumber)
	if len(comments) < 3 { // the status command, the deploy comment, the reply
		t.Errorf("%d comments on the PR, want at least 3", len(comments))
	}
	for _, c := range comments {
		if strings.Contains(c.Body, value) {
			t.Errorf("comment %d shows the secret:\n%s", c.ID, c.Body)
		}
	}
	reqs := s.GitHub.Requests()
	for _, r := range reqs {
		if strings.Contains(string(r.Body), value) || strings.Contains(r.Path+r.Query.Encode(), value) {
			t.Errorf("%s %s to GitHub carries the secret", r.Method, r.Path)
		}
	}
}

// databaseDoesNotLeak looks for the value, as text and as the hex of bytea,
// in every row of every table; the sealed secret itself is ciphertext.
func (s *stack) databaseDoesNotLeak(t *testing.T, value string) {
	t.Helper()
	ctx := t.Context()
	rows, err := s.Store.Pool().Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deployment_log_lines", "audit_events", "secrets", "github_outbox"} {
		if !slices.Contains(tables, want) {
			t.Errorf("no table %s among %v: the scan misses it", want, tables)
		}
	}
	hexValue := hex.EncodeToString([]byte(value))
	for _, table := range tables {
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM %s t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0`,
			pgx.Identifier{table}.Sanitize())
		if err := s.Store.Pool().QueryRow(ctx, q, value, hexValue).Scan(&n); err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		if n > 0 {
			t.Errorf("%d rows of %s hold the secret", n, table)
		}
	}
}

// botCommentContains reports whether one of Keystone's comments on the
// pull request contains want.
func (s *stack) botCommentContains(want string) bool {
	for _, c := range s.GitHub.Comments(repoName, prNumber) {
		if c.User == s.GitHub.Slug+"[bot]" && strings.Contains(c.Body, want) {
			return true
		}
	}
	return false
}

// lineWith returns the lines of text holding s, for failure messages.
func lineWith(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
