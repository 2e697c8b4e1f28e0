package e2e_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/store"
)

// previewFiles is the test app answering b.Version, with previews on.
func previewFiles(t *testing.T, b gittest.Behaviour) map[string][]byte {
	f := gittest.AppFiles(t, "", b)
	maps.Copy(f, map[string][]byte{".keystone.yml": gittest.KeystoneYML("web", "main", "preview: true")})
	return f
}

// openPreview records pull request number from head at sha in the fake and
// delivers its opened event.
func (w *world) openPreview(t *testing.T, number int, head, sha string) {
	t.Helper()
	repoID := w.GitHub.RepositoryID(e2eRepo)
	w.GitHub.SetPullRequest(e2eRepo, githubtest.PullRequest{Number: number, State: "open", HeadRef: head, HeadSHA: sha, HeadRepoID: repoID})
	if _, code := w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("opened", number, head, sha, repoID)); code != http.StatusAccepted {
		t.Fatalf("pull_request opened delivery answered %d", code)
	}
}

// closePreview marks pull request number closed in the fake and delivers
// its closed event.
func (w *world) closePreview(t *testing.T, number int, head, sha string) {
	t.Helper()
	repoID := w.GitHub.RepositoryID(e2eRepo)
	w.GitHub.SetPullRequest(e2eRepo, githubtest.PullRequest{Number: number, State: "closed", HeadRef: head, HeadSHA: sha, HeadRepoID: repoID})
	if _, code := w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("closed", number, head, sha, repoID)); code != http.StatusAccepted {
		t.Fatalf("pull_request closed delivery answered %d", code)
	}
}

// previewGone awaits the end state of a closed preview: its app row removed
// with its port released, no container or image left, nothing listening on
// its old port.
func (w *world) previewGone(t *testing.T, name string, port int, timeout time.Duration) {
	t.Helper()
	label := "io.keystone.app=" + e2eRepo + "/" + name
	await(t, timeout, "preview "+name+" removed with its container, image and port", func() bool {
		var removed, hasPort bool
		err := w.Store.Pool().QueryRow(t.Context(), `SELECT removed_at IS NOT NULL, host_port IS NOT NULL FROM apps
			WHERE name = $1`, name).Scan(&removed, &hasPort)
		return err == nil && removed && !hasPort && len(w.Containers(t, label)) == 0 &&
			len(w.Images(t, label)) == 0 && !listening(port)
	})
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// nothingPending awaits every deployment finished, every job and outbox
// entry done and every delivery processed.
func (w *world) nothingPending(t *testing.T, timeout time.Duration) {
	t.Helper()
	await(t, timeout, "no unfinished deployment, job, outbox entry or delivery", func() bool {
		var pending int
		err := w.Store.Pool().QueryRow(t.Context(), `SELECT
			(SELECT count(*) FROM deployments WHERE finished_at IS NULL) +
			(SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled')
			AND id NOT IN (SELECT job_id FROM job_rescues)) +
			(SELECT count(*) FROM github_outbox WHERE state = 'pending') +
			(SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL)`).Scan(&pending)
		return err == nil && pending == 0
	})
}

// killAndRestart SIGKILLs Keystone, waits until the dead process's running
// jobs are old enough for the next process's rescuer, and starts it again.
func (w *world) killAndRestart(t *testing.T) {
	t.Helper()
	w.ks.Kill()
	await(t, 30*time.Second, "the dead process's jobs older than the rescue grace", func() bool {
		var young int
		err := w.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM river_job
			WHERE state = 'running' AND attempted_at > now() - interval '6 seconds'`).Scan(&young)
		return err == nil && young == 0
	})
	w.start(t)
}

// previewDeployments are the GitHub deployments in environment env.
func (w *world) previewDeployments(env string) []githubtest.Deployment {
	var out []githubtest.Deployment
	for _, d := range w.GitHub.Deployments(e2eRepo) {
		if d.Environment == env {
			out = append(out, d)
		}
	}
	return out
}

// TestPreviewThroughGitHubOutage runs the real binary. First it measures a
// production deploy and a preview of the same commit, and a preview's
// teardown after closed (figures logged, not asserted: docs/benchmarks.md).
// Then GitHub creates a preview's deployment but answers 500, and fails
// every repository call for a while after: the preview still deploys, and
// in the end its pull request has one GitHub deployment whose statuses
// arrived once each and in order.
func TestPreviewThroughGitHubOutage(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.start(t)
	v1 := w.Repo.Commit(t, "main", previewFiles(t, gittest.Behaviour{Version: "1"}), "v1")
	began := time.Now()
	w.hooks.deliver("push", w.Repo.PushEvent("main", v1, "alice"))
	if st := w.statusOf(t, v1, "keystone/web", 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("production v1: %s", st)
	}
	production := time.Since(began)

	// A preview of the same commit (pull request from main's head).
	began = time.Now()
	w.openPreview(t, 6, "main", v1)
	if st := w.statusOf(t, v1, "keystone/web-pr-6", 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("preview of v1: %s", st)
	}
	preview := time.Since(began)
	port := w.App(t, "web-pr-6").HostPort
	if !deploytest.Serves(port, "1") {
		t.Fatalf("the preview on %d does not serve v1", port)
	}
	began = time.Now()
	w.closePreview(t, 6, "main", v1)
	w.previewGone(t, "web-pr-6", port, 30*time.Second)
	teardown := time.Since(began)
	// A preview of a commit nothing built yet, as a pull request's first.
	p0 := w.Repo.Commit(t, "first", previewFiles(t, gittest.Behaviour{Version: "pr-0"}), "pr v0")
	began = time.Now()
	w.openPreview(t, 5, "first", p0)
	if st := w.statusOf(t, p0, "keystone/web-pr-5", 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("preview of %s: %s", p0[:7], st)
	}
	fresh := time.Since(began)
	w.closePreview(t, 5, "first", p0)
	w.previewGone(t, "web-pr-5", w.App(t, "web-pr-5").HostPort, 30*time.Second)
	ms := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	t.Logf("figures: production deploy %v; preview of the same commit %v (ratio %.2f); preview of a new commit %v (ratio %.2f); teardown after closed %v",
		ms(production), ms(preview), preview.Seconds()/production.Seconds(), ms(fresh), fresh.Seconds()/production.Seconds(), ms(teardown))
	outboxtest.WaitIdle(t, w.Store, time.Minute)

	// The outage: the creation is carried out but its answer lost, then the
	// next repository calls fail (counted, not timed: a loaded machine may
	// reach GitHub after any fixed span ended).
	const path = "/repos/" + e2eRepo + "/deployments"
	w.GitHub.Inject(githubtest.Fault{Method: "POST", PathPrefix: path, Status: 500, Apply: true, Times: 1, RetryAfter: time.Second})
	w.GitHub.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 500, Times: 8, RetryAfter: time.Second})
	p1 := w.Repo.Commit(t, "feature", previewFiles(t, gittest.Behaviour{Version: "pr-1"}), "pr v1")
	w.openPreview(t, 7, "feature", p1)
	if st := w.statusOf(t, p1, "keystone/web-pr-7", 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("preview of %s through the outage: %s", p1[:7], st)
	}
	await(t, 90*time.Second, "the preview's GitHub deployment to succeed", func() bool {
		ds := w.previewDeployments("web-pr-7")
		return len(ds) == 1 && deploymentStates(ds[0]) == "queued in_progress success"
	})
	outboxtest.WaitIdle(t, w.Store, time.Minute)
	ds := w.previewDeployments("web-pr-7")
	if len(ds) != 1 || deploymentStates(ds[0]) != "queued in_progress success" || ds[0].SHA != p1 ||
		!ds[0].TransientEnvironment || ds[0].ProductionEnvironment {
		t.Fatalf("GitHub deployments of the preview after the outage: %+v", ds)
	}
	if n := len(w.GitHub.Deployments(e2eRepo)); n != 4 {
		t.Errorf("%d GitHub deployments, want 4 (production, pull requests 6, 5 and 7)", n)
	}
	failed, looked := 0, false
	for _, r := range w.GitHub.RequestsTo("", path) {
		if r.Status == http.StatusInternalServerError {
			failed++
		}
		looked = looked || (r.Method == "GET" && r.Path == path && r.Status == http.StatusOK && r.Query.Get("sha") == p1)
	}
	if failed < 2 || !looked {
		t.Errorf("%d failed deployments calls, lookup of the lost creation %v: the outage did not meet the preview", failed, looked)
	}
	if port := w.App(t, "web-pr-7").HostPort; !deploytest.Serves(port, "pr-1") {
		t.Errorf("the preview on %d does not serve pr-1", port)
	}
}

// deploymentOfSHA waits until a deployment of sha exists and returns its id.
func (w *world) deploymentOfSHA(t *testing.T, sha string) int64 {
	t.Helper()
	var id int64
	await(t, time.Minute, "a deployment of "+sha[:7], func() bool {
		return w.Store.Pool().QueryRow(t.Context(), `SELECT id FROM deployments WHERE sha = $1 ORDER BY id DESC LIMIT 1`,
			sha).Scan(&id) == nil
	})
	return id
}

// TestPreviewSurvivesSIGKILL runs the real binary and kills it (SIGKILL: no
// shutdown code runs) while a preview builds, then again while a closed
// preview is torn down (its app is removed, its container still stopping:
// the app ignores SIGTERM). After each restart the state is whole: the
// interrupted preview deploys and serves, then after closed no container,
// image or port of it is left, its app row is removed, its GitHub
// deployment is inactive, production serves throughout, nothing is pending.
func TestPreviewSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	for _, domain := range []bool{false, true} {
		t.Run(map[bool]string{false: "port mode", true: "domain mode"}[domain], func(t *testing.T) {
			t.Parallel()
			previewSurvivesSIGKILL(t, domain)
		})
	}
}

// previewSurvivesSIGKILL is TestPreviewSurvivesSIGKILL, in domain mode
// behind the real `keystone proxy` when domain is true: there the
// preview's route must also be gone after the restart.
func previewSurvivesSIGKILL(t *testing.T, domain bool) {
	w := newWorld(t)
	var proxy *routerapi.Client
	var proxyAddr string
	if domain {
		proxy, proxyAddr = startProxy(t, w, "apps.test")
	}
	w.start(t)
	// serves tells whether app answers want: on its port, or in domain
	// mode through the proxy at its route's host.
	serves := func(app store.App, want string) bool {
		if !domain {
			return deploytest.Serves(app.HostPort, want)
		}
		host := w.routeHost(t, proxy, deploy.RouteService(app))
		if host == "" {
			return false
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+proxyAddr+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "version="+want
	}
	v1 := w.Repo.Commit(t, "main", previewFiles(t, gittest.Behaviour{Version: "1"}), "v1")
	w.hooks.deliver("push", w.Repo.PushEvent("main", v1, "alice"))
	if st := w.statusOf(t, v1, "keystone/web", 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("production v1: %s", st)
	}
	prod := w.App(t, "web").HostPort

	const pr = 7
	p1 := w.Repo.Commit(t, "feature", previewFiles(t, gittest.Behaviour{Version: "pr-1", IgnoreTerm: true,
		BuildStep: true, BuildSleep: 10 * time.Second, BuildPrint: []string{"building slowly"}}), "pr v1")
	w.openPreview(t, pr, "feature", p1)
	id := w.deploymentOfSHA(t, p1)
	await(t, time.Minute, "the preview's build step running", func() bool {
		return strings.Contains(strings.Join(w.Log(t, id), "\n"), "building slowly")
	})
	w.killAndRestart(t)
	if st := w.statusOf(t, p1, fmt.Sprintf("keystone/web-pr-%d", pr), 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("preview interrupted while building: %s\n%s", st, strings.Join(w.Log(t, id), "\n"))
	}
	if log := strings.Join(w.Log(t, id), "\n"); !strings.Contains(log, "interrupted") {
		t.Errorf("the preview's log does not tell of the interruption:\n%s", log)
	}
	w.nothingPending(t, time.Minute)
	name := fmt.Sprintf("web-pr-%d", pr)
	app := w.App(t, name)
	label := "io.keystone.app=" + e2eRepo + "/" + name
	if list := w.Containers(t, label); len(list) != 1 || list[0].Labels["io.keystone.deployment"] != fmt.Sprint(app.CurrentDeploymentID) {
		t.Fatalf("after the restart the preview has %d containers, want only its serving one", len(list))
	}
	if !serves(app, "pr-1") || !serves(w.App(t, "web"), "1") {
		var routes any
		if domain {
			routes, _ = proxy.Routes(t.Context())
		}
		t.Fatalf("after the restart: preview on %d, production on %d do not serve pr-1 and 1 (routes %+v)", app.HostPort, prod, routes)
	}

	if want := fmt.Sprintf("pr-%d-web-web.apps.test", pr); domain && w.routeHost(t, proxy, deploy.RouteService(app)) != want {
		t.Errorf("the preview's host is %q, want %q (SPEC §14)", w.routeHost(t, proxy, deploy.RouteService(app)), want)
	}

	// Teardown: the app is removed in one transaction, then its container
	// is stopped (the app ignores SIGTERM: that takes the stop grace).
	w.closePreview(t, pr, "feature", p1)
	await(t, 30*time.Second, "the preview's app removed while its container is still there", func() bool {
		var removed bool
		err := w.Store.Pool().QueryRow(t.Context(), `SELECT removed_at IS NOT NULL FROM apps WHERE name = $1`, name).Scan(&removed)
		return err == nil && removed
	})
	if len(w.Containers(t, label)) == 0 {
		t.Fatal("the preview's container was gone before the kill: the test proves nothing")
	}
	w.killAndRestart(t)
	w.previewGone(t, name, app.HostPort, time.Minute)
	w.nothingPending(t, time.Minute)
	if domain {
		await(t, 30*time.Second, "the preview's route gone from the proxy", func() bool { return w.routeHost(t, proxy, deploy.RouteService(app)) == "" })
		if w.routeHost(t, proxy, deploy.RouteService(w.App(t, "web"))) == "" {
			t.Errorf("production's route is gone with the preview's")
		}
	}
	ds := w.previewDeployments(name)
	if len(ds) != 1 || deploymentStates(ds[0]) != "queued in_progress success inactive" {
		t.Errorf("GitHub deployments of the preview: %+v", ds)
	}
	if !serves(w.App(t, "web"), "1") || len(w.Containers(t, "io.keystone.app="+e2eRepo+"/web")) != 1 {
		t.Errorf("production on %d does not serve v1 alone after the preview's teardown", prod)
	}
}

// startProxy runs the real `keystone proxy` in domain mode under domain
// with TLS off, and points the world's Keystone at its admin socket.
func startProxy(t *testing.T, w *world, domain string) (client *routerapi.Client, httpAddr string) {
	t.Helper()
	sock := w.proxySocket(t)
	client, httpAddr = runProxy(t, sock, domain, w.env["KEYSTONE_PUBLIC_URL"])
	w.env["KEYSTONE_APPS_DOMAIN"] = domain
	return client, httpAddr
}

// proxySocket chooses the router's admin socket and points the world's
// Keystone at it; nothing listens there until runProxy.
func (w *world) proxySocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ksp") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "a.sock")
	w.env["KEYSTONE_PROXY_ADMIN"] = "unix://" + sock
	return sock
}

// runProxy runs the real `keystone proxy` with its admin API on sock, in
// domain mode under domain ("" for IP mode), with TLS off.
func runProxy(t *testing.T, sock, domain, publicURL string) (client *routerapi.Client, httpAddr string) {
	t.Helper()
	httpAddr = fmt.Sprintf("127.0.0.1:%d", routertest.FreePort(t))
	env := map[string]string{"KEYSTONE_DATA_DIR": filepath.Join(filepath.Dir(sock), "data"),
		"KEYSTONE_TLS": "off", "KEYSTONE_PROXY_HTTP_ADDR": httpAddr,
		"KEYSTONE_PROXY_ADMIN": "unix://" + sock, "KEYSTONE_PUBLIC_URL": publicURL}
	if domain != "" {
		env["KEYSTONE_APPS_DOMAIN"] = domain
	}
	cmd := exec.Command(keystonetest.Binary(t), "proxy")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := routerapi.NewClient(sock)
	await(t, 20*time.Second, "keystone proxy answers on its admin socket", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		return c.Health(ctx) == nil
	})
	return c, httpAddr
}

// routeHost is the first host of the proxy's route for service, "" when
// it has none.
func (w *world) routeHost(t *testing.T, c *routerapi.Client, service string) string {
	t.Helper()
	routes, err := c.Routes(t.Context())
	if err != nil {
		t.Fatalf("list the proxy's routes: %v", err)
	}
	for _, r := range routes {
		if r.Service == service && len(r.Hosts) > 0 {
			return r.Hosts[0]
		}
	}
	return ""
}
