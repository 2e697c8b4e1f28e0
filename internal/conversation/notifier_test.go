package conversation_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/store"
)

func statusLines(sts []githubtest.Status) []string {
	var out []string
	for _, s := range sts {
		out = append(out, s.State+" "+s.Description)
	}
	return out
}

// TestPushDeployStatusesAndPullRequestComment: a push deployment's life is
// the status sequence of SPEC §7 on its SHA, under keystone/<app> with the
// deployment page as target, and one comment on the pull request the commit
// came from, ending with outcome, app URL, health and logs; the next deploy
// of the pull request edits that comment.
func TestPushDeployStatusesAndPullRequestComment(t *testing.T) {
	e := newEnv(t)
	e.gh.SetPullsForCommit(fullRepo, sha1, 12)
	e.gh.SetPullsForCommit(fullRepo, sha2, 12)
	d := e.pushDeploy(sha1, "success")
	outboxtest.WaitIdle(t, e.st, 20*time.Second)

	want := []string{"pending Queued", "pending Fetching 1111111", "pending Building 1111111",
		"pending Starting 1111111", "pending Checking health", "success Deployed in 12.3s · healthy (GET /healthz 200)"}
	sts := e.gh.Statuses(fullRepo, sha1)
	if got := statusLines(sts); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("statuses = %q\nwant %q", got, want)
	}
	for _, s := range sts {
		if s.Context != "keystone/web" || s.TargetURL != fmt.Sprintf("https://keystone.example/deployments/%d", d.ID) {
			t.Fatalf("status context %q target %q", s.Context, s.TargetURL)
		}
	}
	c := e.replies(fullRepo, 12)
	if len(c) != 1 {
		t.Fatalf("%d Keystone comments on the pull request, want 1", len(c))
	}
	body := c[0].Body
	for _, part := range []string{"✅ Deployed **web** at `1111111`", "https://github.example/acme/web/commit/" + sha1,
		"| **App** | http://apps.example:9001/ |", "healthy: GET /healthz answered 200 after 1.2s",
		fmt.Sprintf("| **Logs** | https://keystone.example/deployments/%d |", d.ID)} {
		if !strings.Contains(body, part) {
			t.Errorf("comment lacks %q:\n%s", part, body)
		}
	}
	if i, j := strings.Index(body, "**App**"), strings.Index(body, "**Logs**"); i < 0 || j < i {
		t.Errorf("comment does not end with app URL, health and logs:\n%s", body)
	}

	d2 := e.pushDeploy(sha2, "unhealthy")
	c = e.replies(fullRepo, 12)
	if len(c) != 1 || c[0].ID != e.gh.Comments(fullRepo, 12)[0].ID {
		t.Fatalf("second deploy of the pull request: %d comments, want the first edited", len(c))
	}
	for _, part := range []string{"❌ Deploy of **web** at `2222222` failed", "unhealthy: GET /healthz 500 after 30s",
		fmt.Sprintf("/deployments/%d", d2.ID)} {
		if !strings.Contains(c[0].Body, part) {
			t.Errorf("edited comment lacks %q:\n%s", part, c[0].Body)
		}
	}
	if last := e.gh.Statuses(fullRepo, sha2); last[len(last)-1].State != "failure" ||
		!strings.HasPrefix(last[len(last)-1].Description, "Health check failed") {
		t.Errorf("final status of the failed deploy = %+v", last[len(last)-1])
	}
}

// TestDeploymentStates: each kind of ending maps to its GitHub state, and
// a description is cut to 140 characters, not bytes.
func TestDeploymentStates(t *testing.T) {
	e := newEnv(t)
	long := "Build failed: " + strings.Repeat("ünïcødé ", 40)
	tests := []struct {
		name, state, description, want string
	}{
		{"build failure", store.StateFailed, "Build failed: step 3/5 exited 1", "failure"},
		{"locked", store.StateErrored, "Not deployed: web is locked by @alice (freeze)", "error"},
		{"superseded", store.StateSuperseded, "Not deployed: superseded by 2222222", "error"},
		{"long multi-byte", store.StateFailed, long, "failure"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sha := strings.Repeat(fmt.Sprint(i+3), 40)
			d, err := e.engine.create(t.Context(), e.web.ID, store.KindUpdate, sha, "octocat", store.TriggerPush, "")
			if err != nil {
				t.Fatal(err)
			}
			e.engine.move(d, `state = $2, description = $3, finished_at = now()`, tt.state, tt.description)
			outboxtest.WaitIdle(t, e.st, 20*time.Second)
			sts := e.gh.Statuses(fullRepo, sha)
			last := sts[len(sts)-1]
			if last.State != tt.want || utf8.RuneCountInString(last.Description) > 140 {
				t.Fatalf("status %s %q (%d runes), want %s within 140", last.State, last.Description,
					utf8.RuneCountInString(last.Description), tt.want)
			}
			if tt.name != "long multi-byte" && last.Description != tt.description {
				t.Errorf("description %q, want %q", last.Description, tt.description)
			}
		})
	}
}

// TestOnlyChangesArePosted: a notification that changes nothing GitHub
// shows (the engine saving log counters) posts no status.
func TestOnlyChangesArePosted(t *testing.T) {
	e := newEnv(t)
	d, err := e.engine.create(t.Context(), e.web.ID, store.KindUpdate, sha1, "octocat", store.TriggerPush, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // e.g. one per log line
		d = e.engine.move(d, `log_lines = $2`, i)
	}
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if n := len(e.gh.Statuses(fullRepo, sha1)); n != 1 {
		t.Errorf("%d statuses for one state, want 1", n)
	}
}

// TestPushRefusedIsAFailureStatus: an app a push may not create or re-point
// gets a failure status on the pushed SHA under its own context, through the
// outbox, though it has no row.
func TestPushRefusedIsAFailureStatus(t *testing.T) {
	e := newEnv(t)
	err := e.st.InTx(t.Context(), func(tx pgx.Tx, _ *store.Queries) error {
		return e.notifier.PushRefused(t.Context(), tx, store.App{InstallationID: inst, Owner: "acme", Repo: "web", Name: "api"},
			sha1, "Not deployed: api is not declared for tmp on main")
	})
	if err != nil {
		t.Fatal(err)
	}
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	sts := e.gh.Statuses(fullRepo, sha1)
	if len(sts) != 1 || sts[0].State != "failure" || sts[0].Context != "keystone/api" ||
		sts[0].Description != "Not deployed: api is not declared for tmp on main" {
		t.Fatalf("statuses %+v", sts)
	}
}
