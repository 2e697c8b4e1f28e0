//go:build faults

package faults_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/testlog"
	"github.com/keystone-app/keystone/internal/webhook"
)

const (
	hookSecret = "faults-suite-secret"
	domain     = "apps.test"
)

// world is one scenario's running system: `keystone serve` and `keystone
// proxy` (domain mode, TLS off) on a fresh database, the fake GitHub and
// git server with repository octo/<name>, and the webhook sender.
type world struct {
	*deploytest.Env
	t      *testing.T
	repo   string
	env    map[string]string
	ks     *keystonetest.Process
	proxy  *proxyProc
	hooks  *hooks
	mu     sync.Mutex
	pushed []string // SHAs pushed, in order
	row    row      // the scenario's report row; record fills in the figures
	loads  []*load
}

// newWorld starts the system for scenario name; its report row, with
// faults described, is added when the test ends. Each before changes the
// world (its environment) before `keystone serve` starts.
func newWorld(t *testing.T, name, faults string, before ...func(*world)) *world {
	t.Helper()
	e := deploytest.New(t, name)
	repo := "octo/" + name
	e.GitHub.SetPermission(repo, "alice", "write")
	w := &world{Env: e, t: t, repo: repo, hooks: &hooks{bodies: map[string][]byte{}}}
	w.proxy = newProxy(t)
	w.env = map[string]string{
		"DATABASE_URL": e.DBURL, "KEYSTONE_GITHUB_WEBHOOK_SECRET": hookSecret, "KEYSTONE_DATA_DIR": t.TempDir(),
		"KEYSTONE_GITHUB_APP_ID": fmt.Sprint(e.GitHub.AppID), "KEYSTONE_GITHUB_PRIVATE_KEY": string(e.GitHub.PrivateKeyPEM),
		"KEYSTONE_GITHUB_API_URL": e.GitHub.URL, "KEYSTONE_PUBLIC_URL": "http://keystone.test:8080",
		"KEYSTONE_PORT_RANGE": e.PortRange.String(), "KEYSTONE_APP_HOST": "127.0.0.1",
		"KEYSTONE_GITHUB_WEB_URL": e.Git.URL, "KEYSTONE_APPS_DOMAIN": domain,
		"KEYSTONE_PROXY_ADMIN": "unix://" + w.proxy.sock,
	}
	for _, b := range before {
		b(w)
	}
	w.start()
	w.row = row{Scenario: name, Faults: faults}
	t.Cleanup(func() {
		if t.Failed() {
			w.dumpDeployments()
		}
	})
	t.Cleanup(w.record)
	return w
}

// start runs `keystone serve` and points the webhook sender at it.
func (w *world) start() {
	w.t.Helper()
	ks := keystonetest.Start(w.t, w.env)
	w.ks = ks
	w.hooks.setURL(ks.URL)
	w.t.Cleanup(func() {
		if w.t.Failed() {
			w.t.Logf("keystone serve's log (warnings and errors, and the deploys):\n%s", deployLines(ks.Output(), 120))
		}
	})
}

// killAndRestart SIGKILLs `keystone serve`, runs afterKill (undoing a
// scenario's hold on it), waits until the dead process's running jobs are
// old enough for the next process's rescuer, and starts it again.
func (w *world) killAndRestart(afterKill ...func()) {
	w.t.Helper()
	w.ks.Kill()
	for _, f := range afterKill {
		f()
	}
	await(w.t, time.Minute, "the dead process's jobs older than the rescue grace", func() bool {
		var young int
		err := w.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM river_job
			WHERE state = 'running' AND attempted_at > now() - interval '6 seconds'`).Scan(&young)
		return err == nil && young == 0
	})
	w.start()
}

// withEnv adds to or overrides `keystone serve`'s environment ("KEY=value"
// each), for newWorld.
func withEnv(kv ...string) func(*world) {
	return func(w *world) {
		for _, e := range kv {
			k, v, _ := strings.Cut(e, "=")
			w.env[k] = v
		}
	}
}

// withDockerCut puts a DockerCut between `keystone serve` and Docker and
// hands it over in *cut, for newWorld.
func withDockerCut(cut **deploytest.DockerCut) func(*world) {
	return func(w *world) {
		*cut = deploytest.NewDockerCut(w.t, w.Docker)
		w.env["DOCKER_HOST"] = (*cut).Host
	}
}

// files is the test app answering b.Version as app "web" on main.
func (w *world) files(b gittest.Behaviour) map[string][]byte {
	f := gittest.AppFiles(w.t, "", b)
	maps.Copy(f, map[string][]byte{".keystone.yml": gittest.KeystoneYML("web", "main")})
	return f
}

// push commits b on main, delivers the push and returns the SHA; it fails
// the test unless the delivery is accepted.
func (w *world) push(b gittest.Behaviour) string {
	w.t.Helper()
	sha := w.commit(b)
	if d := w.hooks.deliver("push", w.Repo.PushEvent("main", sha, "alice")); d.Code != http.StatusAccepted {
		w.t.Fatalf("push of %s answered %d %s", sha[:7], d.Code, d.Status)
	}
	return sha
}

// commit commits b on main and records the SHA as pushed.
func (w *world) commit(b gittest.Behaviour) string {
	w.t.Helper()
	sha := w.Repo.Commit(w.t, "main", w.files(b), "version "+b.Version)
	w.mu.Lock()
	w.pushed = append(w.pushed, sha)
	w.mu.Unlock()
	return sha
}

// finalStatus waits for sha's keystone/web status to leave pending.
func (w *world) finalStatus(sha string, timeout time.Duration) string {
	w.t.Helper()
	return w.statusIn(w.repo, sha, timeout)
}

// statusIn waits for sha's last status in repository fullName to leave
// pending and returns it.
func (w *world) statusIn(fullName, sha string, timeout time.Duration) string {
	w.t.Helper()
	var last string
	await(w.t, timeout, "a final status of "+fullName+"@"+sha[:7], func() bool {
		sts := w.GitHub.Statuses(fullName, sha)
		if len(sts) == 0 {
			return false
		}
		s := sts[len(sts)-1]
		last = s.State + " " + s.Description
		return s.State != "pending"
	})
	return last
}

// deploymentOf waits for the latest deployment of sha and returns its id.
func (w *world) deploymentOf(sha string) int64 {
	w.t.Helper()
	var id int64
	await(w.t, 2*time.Minute, "a deployment of "+sha[:7], func() bool {
		return w.Store.Pool().QueryRow(context.Background(),
			`SELECT id FROM deployments WHERE sha = $1 ORDER BY id DESC LIMIT 1`, sha).Scan(&id) == nil
	})
	return id
}

// waitStep waits until deployment id reaches step.
func (w *world) waitStep(id int64, step string) {
	w.t.Helper()
	await(w.t, 3*time.Minute, fmt.Sprintf("deployment %d at step %s", id, step), func() bool {
		var s string
		err := w.Store.Pool().QueryRow(context.Background(), `SELECT step FROM deployments WHERE id = $1`, id).Scan(&s)
		return err == nil && s == step
	})
}

// host is app web's host name under the apps domain.
func (w *world) host() string {
	w.t.Helper()
	return deploy.DefaultHost(w.App(w.t, "web"), domain)
}

// routed waits until the router answers want for host.
func (w *world) routed(host, want string, timeout time.Duration) {
	w.t.Helper()
	await(w.t, timeout, host+" answering "+want+" through the router", func() bool {
		st, body, err := routertest.GetVia(w.proxy.addr, host)
		return err == nil && st == 200 && body == "version="+want
	})
}

// waitStepOrFinished waits until deployment id reaches step or ends.
func (w *world) waitStepOrFinished(id int64, step string, timeout time.Duration) {
	w.t.Helper()
	await(w.t, timeout, fmt.Sprintf("deployment %d at step %s or finished", id, step), func() bool {
		var s string
		var finished bool
		err := w.Store.Pool().QueryRow(context.Background(),
			`SELECT step, finished_at IS NOT NULL FROM deployments WHERE id = $1`, id).Scan(&s, &finished)
		return err == nil && (s == step || finished)
	})
}

// finished reports whether deployment id has ended.
func (w *world) finished(id int64) bool {
	var done bool
	err := w.Store.Pool().QueryRow(context.Background(),
		`SELECT finished_at IS NOT NULL FROM deployments WHERE id = $1`, id).Scan(&done)
	return err == nil && done
}

// proxyProc is the real `keystone proxy` in domain mode with TLS off; it
// can be killed and started again on the same data directory and ports.
type proxyProc struct {
	t          *testing.T
	dir, sock  string
	addr       string // data plane host:port
	cmd        *exec.Cmd
	out        testlog.Buffer
	client     *routerapi.Client
	exited     chan struct{}
	startedAll int
}

func newProxy(t *testing.T) *proxyProc {
	t.Helper()
	dir, err := os.MkdirTemp("", "ksf") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &proxyProc{t: t, dir: dir, sock: filepath.Join(dir, "a.sock"),
		addr: fmt.Sprintf("127.0.0.1:%d", routertest.FreePort(t))}
	p.client = routerapi.NewClient(p.sock)
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("keystone proxy output:\n%s", lastLines(p.out.String(), 40))
		}
	})
	return p
}

// start runs the proxy and waits until its admin API answers.
func (p *proxyProc) start() {
	p.t.Helper()
	cmd := exec.Command(keystonetest.Binary(p.t), "proxy")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"KEYSTONE_DATA_DIR=" + filepath.Join(p.dir, "data"), "KEYSTONE_APPS_DOMAIN=" + domain,
		"KEYSTONE_TLS=off", "KEYSTONE_PROXY_HTTP_ADDR=" + p.addr, "KEYSTONE_PROXY_ADMIN=unix://" + p.sock,
		"KEYSTONE_PUBLIC_URL=http://keystone.test:8080"}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	exited := p.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	p.startedAll++
	await(p.t, 30*time.Second, "keystone proxy answers on its admin socket", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return p.client.Health(ctx) == nil
	})
}

// kill SIGKILLs the proxy and waits for it to be gone.
func (p *proxyProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// hooks plays GitHub's webhook sender and records every delivery.
type hooks struct {
	mu     sync.Mutex
	url    string
	sent   []delivery
	bodies map[string][]byte // by GUID, to send again
}

// delivery is one delivery and Keystone's answer (Code 0: no answer).
type delivery struct {
	GUID, Event string
	Code        int
	Status      string // the answer's "status": accepted, ignored, duplicate...
	At          time.Time
}

func (h *hooks) setURL(u string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.url = u
}

// deliver sends a signed delivery with a new GUID.
func (h *hooks) deliver(event string, body []byte) delivery {
	guid := newGUID()
	h.mu.Lock()
	h.bodies[guid] = body
	h.mu.Unlock()
	return h.send(guid, event, body, signed(body))
}

// signed is the header GitHub signs body with.
func signed(body []byte) http.Header {
	return http.Header{"X-Hub-Signature-256": {webhook.Sign([]byte(hookSecret), body)}}
}

// send posts body with the given headers and records the answer.
func (h *hooks) send(guid, event string, body []byte, hdr http.Header) delivery {
	h.mu.Lock()
	u := h.url
	h.mu.Unlock()
	d := delivery{GUID: guid, Event: event, At: time.Now()}
	req, _ := http.NewRequest(http.MethodPost, u+"/webhooks/github", bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	if event != "" {
		req.Header.Set("X-GitHub-Event", event)
	}
	if guid != "" {
		req.Header.Set("X-GitHub-Delivery", guid)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err == nil {
		var ans struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		d.Code, d.Status = resp.StatusCode, ans.Status
	}
	h.mu.Lock()
	h.sent = append(h.sent, d)
	h.mu.Unlock()
	return d
}

func (h *hooks) all() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.sent...)
}

func newGUID() string { return strings.ReplaceAll(rand.Text(), "=", "") }

// serveV1 deploys v1 of the app, awaits it answering through the router
// and starts a client sending perSecond requests to it; it returns v1's SHA,
// the app's host and the load, already answered.
func (w *world) serveV1(perSecond int) (sha, host string, l *load) {
	w.t.Helper()
	sha = w.push(gittest.Behaviour{Version: "v1"})
	if st := w.finalStatus(sha, 5*time.Minute); !strings.HasPrefix(st, "success") {
		w.t.Fatalf("v1: %s", st)
	}
	host = w.host()
	w.routed(host, "v1", time.Minute)
	l = w.startLoad(host, perSecond)
	await(w.t, 30*time.Second, "the load client gets answers", func() bool { return l.answered() > 20 })
	return sha, host, l
}

// await polls cond until it holds, failing the test after timeout.
func await(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deploytest.Eventually(t, timeout, what, func() (bool, error) { return cond(), nil })
}

// deployLines are the last n lines of a log that are not the expected
// noise of an outage (connection errors of River and the outbox).
func deployLines(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if !strings.Contains(l, "dial error") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(len(keep)-n, 0):], "\n")
}

// dumpDeployments logs every deployment row and the log of each one that
// did not succeed, for a failed scenario.
func (w *world) dumpDeployments() {
	rows, err := w.Store.Pool().Query(context.Background(), `SELECT id, sha, state, step, description,
		COALESCE(to_char(started_at, 'HH24:MI:SS.MS'), '-'), COALESCE(to_char(finished_at, 'HH24:MI:SS.MS'), '-'), container_id
		FROM deployments ORDER BY id`)
	if err != nil {
		w.t.Logf("dump deployments: %v", err)
		return
	}
	defer rows.Close()
	var out []string
	var failed []int64
	for rows.Next() {
		var id int64
		var sha, state, step, desc, started, finished, ctr string
		if err := rows.Scan(&id, &sha, &state, &step, &desc, &started, &finished, &ctr); err != nil {
			w.t.Logf("dump deployments: %v", err)
			return
		}
		out = append(out, fmt.Sprintf("#%d %s %s/%s %q started %s finished %s container %.12s", id, sha[:7], state, step, desc, started, finished, ctr))
		if state != "succeeded" {
			failed = append(failed, id)
		}
	}
	w.t.Logf("deployments:\n%s", strings.Join(out, "\n"))
	for _, id := range failed {
		w.t.Logf("log of #%d:\n%s", id, strings.Join(w.Log(w.t, id), "\n"))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
