//go:build faults

package faults_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
)

// TestGitHubFailing makes GitHub answer 500s, then secondary rate limits
// (403 with Retry-After), to the repository calls of two updates. When it
// recovers every commit status and deployment status has arrived once and
// in order, and the app answers through the router throughout.
func TestGitHubFailing(t *testing.T) {
	w := newWorld(t, "github-failing", "GitHub 500s then secondary rate limits (403, Retry-After) during two updates")
	v1, host, l := w.serveV1(20)

	// Counted, not timed: on a loaded machine the updates may reach GitHub
	// after any fixed span ended.
	w.GitHub.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 500, Times: 6})
	w.GitHub.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 403, RetryAfter: 3 * time.Second, Times: 3})
	v2 := w.push(gittest.Behaviour{Version: "v2"})
	v3 := w.push(gittest.Behaviour{Version: "v3"})
	for _, sha := range []string{v2, v3} {
		w.finalStatus(sha, 6*time.Minute)
	}
	if st := w.finalStatus(v3, time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v3: %s", st)
	}
	w.routed(host, "v3", time.Minute)
	w.settled() // the outbox is drained too

	failed, limited := 0, 0
	for _, r := range w.GitHub.Requests() {
		switch {
		case r.Status == http.StatusInternalServerError:
			failed++
		case r.Status == http.StatusForbidden && strings.HasPrefix(r.Path, "/repos/"):
			limited++
		}
	}
	if failed != 6 || limited != 3 {
		t.Errorf("%d answers 500 and %d rate-limited, want 6 and 3: the faults did not meet the updates", failed, limited)
	}
	for _, sha := range []string{v1, v2, v3} {
		checkStatuses(t, w.GitHub.Statuses(w.repo, sha), sha)
	}
	order := []string{"queued", "in_progress", "success", "failure", "error", "inactive"}
	deployments := w.GitHub.Deployments(w.repo)
	for _, d := range deployments {
		var states []string
		for _, s := range d.Statuses {
			states = append(states, s.State)
		}
		sorted := slices.Clone(states)
		slices.SortStableFunc(sorted, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
		if !slices.Equal(states, sorted) || len(slices.Compact(slices.Clone(states))) != len(states) {
			t.Errorf("GitHub deployment %d of %s: statuses %v, want each once, in order", d.ID, d.SHA[:7], states)
		}
	}
	if len(deployments) < 2 {
		t.Errorf("%d GitHub deployments, want one for each deployed commit", len(deployments))
	}
	l.finishWithoutFailures(t, "")
	w.row.Faults += fmt.Sprintf(" (%d answers 500, %d rate-limited)", failed, limited)
}

// checkStatuses fails the test unless sha's statuses arrived once each:
// pending ones, then one final one, last.
func checkStatuses(t *testing.T, sts []githubtest.Status, sha string) {
	t.Helper()
	seen := map[string]bool{}
	var got []string
	for i, s := range sts {
		k := s.State + " " + s.Description
		got = append(got, k)
		if seen[k] {
			t.Errorf("status %q of %s arrived twice", k, sha[:7])
		}
		seen[k] = true
		if final := s.State != "pending"; final != (i == len(sts)-1) {
			t.Errorf("statuses of %s out of order: %q", sha[:7], got)
		}
	}
	if len(sts) == 0 {
		t.Errorf("no status of %s", sha[:7])
	}
}
