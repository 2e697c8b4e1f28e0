//go:build faults

package faults_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestPushBurstManyApps sends 200 pushes across 20 apps at once: 20
// repositories of the installation, each with its app "web" (as a user with
// 20 services has them), 10 commits each, all delivered together, each
// repository's in order. Every app ends on its newest commit and answers it
// through the router, the overtaken pushes end superseded (or deployed),
// no two deployments of one app ever run at once, and every delivery is
// stored once.
func TestPushBurstManyApps(t *testing.T) {
	const apps, perApp = 20, 10
	w := newWorld(t, "burst-20-apps", fmt.Sprintf("%d pushes at once across %d apps (%d repositories)", apps*perApp, apps, apps))
	var names []string
	for i := range apps {
		names = append(names, fmt.Sprintf("octo/svc-%02d", i))
	}
	w.GitHub.AddInstallation(deploytest.Installation, "octo", append([]string{w.repo}, names...)...)
	// The first app serves v0 before the burst, with traffic through the
	// router all along: the burst must not cost it a request.
	first := w.service(names[0])
	v0 := first.repo.Commit(t, "main", w.files(gittest.Behaviour{Version: "v0"}), "v0")
	first.seeded = true
	w.hooks.deliver("push", first.repo.PushEvent("main", v0, "alice"))
	svcs := []*service{first}
	for _, name := range names[1:] {
		svcs = append(svcs, w.service(name))
	}
	w.commitVersions(svcs, perApp)
	if st := w.statusIn(first.repo.FullName, v0, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("%s v0: %s", first.repo.FullName, st)
	}
	host0 := deploy.DefaultHost(w.serviceApp(first), domain)
	w.routed(host0, "v0", time.Minute)
	l := w.startLoad(host0, 20)

	// The burst: every repository's pushes at once, each in order.
	burst := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var refused []string
	for _, s := range svcs {
		wg.Go(func() {
			for _, sha := range s.shas {
				if d := w.hooks.deliver("push", s.repo.PushEvent("main", sha, "alice")); d.Code != http.StatusAccepted {
					mu.Lock()
					refused = append(refused, fmt.Sprintf("%s %s: %d %s", s.repo.FullName, sha[:7], d.Code, d.Status))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(refused) > 0 {
		t.Fatalf("%d pushes of the burst not accepted: %v", len(refused), refused)
	}
	t.Logf("%d deliveries sent in %.1fs", apps*perApp, time.Since(burst).Seconds())

	superseded, deployed := 0, 0
	for _, s := range svcs {
		sup, dep := w.onNewest(s, fmt.Sprintf("v%d", perApp))
		superseded, deployed = superseded+sup, deployed+dep
	}
	t.Logf("burst settled in %.1fs: %d superseded, %d overtaken but deployed", time.Since(burst).Seconds(), superseded, deployed)
	if superseded == 0 {
		t.Errorf("no push of the burst was superseded: the burst did not overtake anything")
	}
	l.finishWithoutFailures(t, "to "+first.repo.FullName+" ")
	w.settled()
	w.noOverlap()
	w.storedOnce("push", apps*perApp+1) // and the first app's v0
	w.row.Faults += fmt.Sprintf(" (%d superseded, %d overtaken but deployed; settled in %.0fs)", superseded, deployed,
		time.Since(burst).Seconds())
}

// service is one repository of the burst, holding app "web", and the
// commits to push to it.
type service struct {
	repo   *gittest.Repo
	shas   []string
	seeded bool // the app's files are committed already
}

// service creates repository fullName (installed already), alice a writer.
func (w *world) service(fullName string) *service {
	w.GitHub.SetPermission(fullName, "alice", "write")
	return &service{repo: w.Git.CreateRepo(w.t, fullName, deploytest.Installation, w.GitHub.RepositoryID(fullName))}
}

// serviceApp is s's app web.
func (w *world) serviceApp(s *service) store.App {
	w.t.Helper()
	app, err := w.Store.AppByName(context.Background(), s.repo.Owner, s.repo.Name, "web")
	if err != nil {
		w.t.Fatal(err)
	}
	return app
}

// commitVersions commits v1..vN of the test app to each service, a few
// repositories at a time (git is mostly process start-up, and the
// repositories share no lock).
func (w *world) commitVersions(svcs []*service, n int) {
	w.t.Helper()
	made := time.Now()
	var commits sync.WaitGroup
	slots := make(chan struct{}, 4)
	for _, s := range svcs {
		commits.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			for v := 1; v <= n; v++ {
				files := w.files(gittest.Behaviour{Version: fmt.Sprintf("v%d", v)})
				if v > 1 || s.seeded {
					// The binary, Dockerfile and .keystone.yml stay: commit the change only.
					files = map[string][]byte{"behaviour.json": files["behaviour.json"]}
				}
				s.shas = append(s.shas, s.repo.Commit(w.t, "main", files, fmt.Sprintf("v%d", v)))
			}
		})
	}
	commits.Wait()
	if w.t.Failed() {
		w.t.FailNow()
	}
	w.t.Logf("%d commits made in %.1fs", len(svcs)*n, time.Since(made).Seconds())
}

// onNewest waits for the final status of each of s's pushes: the newest
// deployed, each overtaken one superseded or deployed; s's app serves the
// newest, answering newest through the router. It returns how many were
// superseded and how many overtaken ones deployed.
func (w *world) onNewest(s *service, version string) (superseded, deployed int) {
	w.t.Helper()
	newest := s.shas[len(s.shas)-1]
	for _, sha := range s.shas {
		st := w.statusIn(s.repo.FullName, sha, 10*time.Minute)
		switch {
		case sha == newest:
			if !strings.HasPrefix(st, "success") {
				w.t.Errorf("%s: the newest push %s: %s", s.repo.FullName, sha[:7], st)
			}
		case strings.HasPrefix(st, "error Not deployed: superseded by "):
			superseded++
		case strings.HasPrefix(st, "success"):
			deployed++
		default:
			w.t.Errorf("%s: overtaken push %s: %q, want superseded or deployed", s.repo.FullName, sha[:7], st)
		}
	}
	app := w.serviceApp(s)
	if got := w.deploymentSHA(app.CurrentDeploymentID); got != newest {
		w.t.Errorf("%s serves %s, not its newest push %s", s.repo.FullName, got[:7], newest[:7])
	}
	w.routed(deploy.DefaultHost(app, domain), version, time.Minute)
	return superseded, deployed
}

// storedOnce fails the test unless want deliveries of event are stored,
// each GUID once.
func (w *world) storedOnce(event string, want int) {
	w.t.Helper()
	var stored, guids int
	if err := w.Store.Pool().QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT guid) FROM webhook_deliveries WHERE event = $1`, event).Scan(&stored, &guids); err != nil {
		w.t.Fatal(err)
	}
	if stored != want || guids != want {
		w.t.Errorf("%d %s deliveries stored (%d distinct), want %d", stored, event, guids, want)
	}
}

// TestPreviewBurst opens 20 pull requests at once on an app with previews
// and KEYSTONE_MAX_PREVIEWS=5: exactly 5 previews deploy, each answering
// its head through the router on its own host name; the 15 others end
// with the documented error status naming KEYSTONE_MAX_PREVIEWS and get no
// container; closing all 20 at once removes every preview's container,
// route and port while production keeps answering.
func TestPreviewBurst(t *testing.T) {
	const prs, limit = 20, 5
	w := newWorld(t, "preview-burst", fmt.Sprintf("%d pull requests opened at once, then closed at once (KEYSTONE_MAX_PREVIEWS=%d)", prs, limit),
		withEnv(fmt.Sprintf("KEYSTONE_MAX_PREVIEWS=%d", limit)))
	files := func(version string) map[string][]byte {
		f := w.files(gittest.Behaviour{Version: version})
		f[".keystone.yml"] = gittest.KeystoneYML("web", "main", "preview: true")
		return f
	}
	v1 := w.Repo.Commit(t, "main", files("v1"), "v1")
	w.mu.Lock()
	w.pushed = append(w.pushed, v1)
	w.mu.Unlock()
	w.hooks.deliver("push", w.Repo.PushEvent("main", v1, "alice"))
	if st := w.finalStatus(v1, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v1: %s", st)
	}
	host := w.host()
	w.routed(host, "v1", time.Minute)
	l := w.startLoad(host, 20)

	repoID := w.GitHub.RepositoryID(w.repo)
	heads := map[int]string{}
	for n := 1; n <= prs; n++ {
		branch := fmt.Sprintf("feature-%d", n)
		heads[n] = w.Repo.Commit(t, branch, files(fmt.Sprintf("pr-%d", n)), branch)
		w.GitHub.SetPullRequest(w.repo, githubtest.PullRequest{Number: n, State: "open", HeadRef: branch, HeadSHA: heads[n], HeadRepoID: repoID})
		w.mu.Lock()
		w.pushed = append(w.pushed, heads[n])
		w.mu.Unlock()
	}
	opened := time.Now()
	w.pullRequests("opened", heads, repoID)

	served, refused := w.previewsOpened(heads)
	t.Logf("previews settled %.1fs after the burst: %v served, %v refused", time.Since(opened).Seconds(), served, refused)
	if len(served) != limit || len(refused) != prs-limit {
		t.Errorf("%d previews served and %d refused, want %d and %d", len(served), len(refused), limit, prs-limit)
	}
	if n := len(w.Containers(t, "io.keystone.preview")); n != len(served) {
		t.Errorf("%d preview containers, want %d", n, len(served))
	}
	hosts := w.previewsRouted(served)
	w.settled()

	closed := time.Now()
	for n, sha := range heads {
		w.GitHub.SetPullRequest(w.repo, githubtest.PullRequest{Number: n, State: "closed", HeadRef: fmt.Sprintf("feature-%d", n),
			HeadSHA: sha, HeadRepoID: repoID})
	}
	w.pullRequests("closed", heads, repoID)
	await(t, 2*time.Minute, "every preview container gone", func() bool {
		return len(w.Containers(t, "io.keystone.preview")) == 0
	})
	c := w.settled()
	t.Logf("previews removed %.1fs after the closes", time.Since(closed).Seconds())
	var open int
	if err := w.Store.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM apps WHERE pr_number IS NOT NULL AND removed_at IS NULL`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d previews still open after every pull request closed", open)
	}
	for _, h := range hosts {
		if st, body, err := routertest.GetVia(w.proxy.addr, h); err == nil && st == 200 {
			t.Errorf("the closed preview's host %s still answers 200 %q", h, body)
		}
	}
	w.routed(host, "v1", time.Minute)
	l.finishWithoutFailures(t, "to production ")
	w.storedOnce("pull_request", 2*prs)
	w.row.Faults += fmt.Sprintf(" (%d served, %d refused; orphaned after close %s)", len(served), len(refused), c.orphaned())
}

// previewsOpened waits for the preview status of each pull request of
// heads (number → head SHA) and returns those served and those refused
// over the cap, which must have no container.
func (w *world) previewsOpened(heads map[int]string) (served, refused []int) {
	w.t.Helper()
	for n := 1; n <= len(heads); n++ {
		st := w.finalStatus(heads[n], 5*time.Minute)
		switch {
		case strings.HasPrefix(st, "success"):
			served = append(served, n)
		case strings.HasPrefix(st, "error ") && strings.Contains(st, "KEYSTONE_MAX_PREVIEWS"):
			refused = append(refused, n)
			label := "io.keystone.app=" + w.repo + "/" + store.PreviewName("web", n)
			if c := w.Containers(w.t, label); len(c) != 0 {
				w.t.Errorf("refused preview of #%d has %d containers", n, len(c))
			}
		default:
			w.t.Errorf("preview of #%d: %q, want success or refused over the cap", n, st)
		}
	}
	return served, refused
}

// previewsRouted waits until each served preview answers its head's
// version on its own host name through the router, and returns the hosts.
func (w *world) previewsRouted(served []int) []string {
	w.t.Helper()
	var hosts []string
	for _, n := range served {
		app, err := w.Store.AppByName(context.Background(), w.Repo.Owner, w.Repo.Name, store.PreviewName("web", n))
		if err != nil {
			w.t.Fatal(err)
		}
		hosts = append(hosts, deploy.DefaultHost(app, domain))
		w.routed(hosts[len(hosts)-1], fmt.Sprintf("pr-%d", n), time.Minute)
	}
	return hosts
}

// pullRequests delivers action for each pull request of heads at once.
func (w *world) pullRequests(action string, heads map[int]string, repoID int64) {
	w.t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for n, sha := range heads {
		wg.Go(func() {
			d := w.hooks.deliver("pull_request", w.Repo.PullRequestEvent(action, n, fmt.Sprintf("feature-%d", n), sha, repoID))
			if d.Code != http.StatusAccepted {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("#%d %s: %d %s", n, action, d.Code, d.Status))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		w.t.Fatalf("pull_request deliveries not accepted: %v", bad)
	}
}
