package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// BenchmarkDeploy measures, against the real engine and `keystone serve`:
//   - first deploy: from the webhook to the app answering healthy, against a
//     person typing `git clone --depth 1`, a BuildKit build, `docker run` and
//     polling until healthy, in the same run (each side with its own new
//     binary, so neither finds the other's layers in the cache);
//   - second deploy of a one-line change, against the same commands again
//     (a fresh clone, a build using the layer cache, replace the container);
//   - rollback: from the job's start to the previous version answering;
//   - the update's downtime window, as Keystone records it and as a client
//     polling every 10ms sees it.
//
// It runs twice: "direct", Keystone alone, which stops the serving container
// and starts the new one on the app's port; and "router", Keystone with the
// real `keystone proxy` in IP mode (as `make run` starts them), which starts
// the new container beside the serving one and switches the app's port to it.
//
// Run it with: go test -run '^$' -bench BenchmarkDeploy -benchtime 7x ./internal/deploy/e2e/
func BenchmarkDeploy(b *testing.B) {
	b.Run("direct", func(b *testing.B) { benchDeploy(b, newStack(b, "bench")) })
	b.Run("router", func(b *testing.B) {
		proxy := keystonetest.StartProxy(b, nil)
		benchDeploy(b, newStack(b, "bench", map[string]string{"KEYSTONE_PROXY_ADMIN": "unix://" + proxy.Admin}))
	})
}

func benchDeploy(b *testing.B, s *stack) {
	gh, err := github.New(github.Config{AppID: s.GitHub.AppID, PrivateKeyPEM: s.GitHub.PrivateKeyPEM, APIURL: s.GitHub.URL})
	if err != nil {
		b.Fatal(err)
	}
	requester := benchRequester(b, s)
	var rows []benchRow
	for i := 0; b.Loop(); i++ {
		repo := fmt.Sprintf("octo/bench-%d", i)
		s.GitHub.AddInstallation(deploytest.Installation, "octo", repo)
		r := s.Git.CreateRepo(b, repo, deploytest.Installation, s.GitHub.RepositoryID(repo))
		tok, err := gh.InstallationToken(context.Background(), deploytest.Installation)
		if err != nil {
			b.Fatal(err)
		}
		rawPort := deploytest.FreePortRange(b, 1).First
		var row benchRow
		if i%2 == 0 { // alternate who goes first
			row.firstRaw, row.secondRaw = rawDeploys(b, r, tok, rawPort)
			row.firstKS, row.secondKS, row.downtime, row.observed, row.rollback = keystoneDeploys(b, s, r, requester)
		} else {
			row.firstKS, row.secondKS, row.downtime, row.observed, row.rollback = keystoneDeploys(b, s, r, requester)
			row.firstRaw, row.secondRaw = rawDeploys(b, r, tok, rawPort)
		}
		rows = append(rows, row)
	}
	report(b, rows)
}

type benchRow struct {
	firstKS, firstRaw, secondKS, secondRaw, rollback, downtime, observed time.Duration
}

// uniqueApp is the test app's files with a binary no other build has used:
// the same program with random bytes appended.
func uniqueApp(b *testing.B, version string) map[string][]byte {
	files := gittest.AppFiles(b, "", gittest.Behaviour{Version: version})
	files["app"] = append(slices.Clone(files["app"]), []byte(rand.Text())...)
	return files
}

const benchYML = "apps:\n  - name: web\n    branch: main\n    port: 8080\n    health_check_path: /healthz\n"

func keystoneDeploys(b *testing.B, s *stack, r *gittest.Repo, requester *deploy.Requester) (first, second, downtime, observed, rollback time.Duration) {
	files := uniqueApp(b, "v1")
	files[".keystone.yml"] = []byte(benchYML)
	sha1 := r.Commit(b, "main", files, "v1")
	start := time.Now()
	s.deliver(b, r.PushEvent("main", sha1, "alice"))
	port := waitStarted(b, s, r, sha1)
	waitAnswer(b, port, "/healthz", "")
	first = time.Since(start)
	d1 := s.WaitFinished(b, s.deploymentOf(b, "web", sha1).ID, time.Minute)

	sha2 := r.Commit(b, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)}, "v2")
	start = time.Now()
	s.deliver(b, r.PushEvent("main", sha2, "alice"))
	waitStarted(b, s, r, sha2)
	waitAnswer(b, port, "/", "version=v2")
	second = time.Since(start)
	d2 := s.WaitFinished(b, s.deploymentOf(b, "web", sha2).ID, time.Minute)
	breakdown(b, s, d1)
	breakdown(b, s, d2)
	if d2.DowntimeMS != nil {
		downtime = time.Duration(*d2.DowntimeMS) * time.Millisecond
	}

	// The downtime a client sees, polling all along through a third update.
	sha3 := r.Commit(b, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v3"}`)}, "v3")
	s.deliver(b, r.PushEvent("main", sha3, "alice"))
	observed = watchDowntime(port, "version=v3")
	s.WaitFinished(b, s.deploymentOf(b, "web", sha3).ID, time.Minute)

	rb, err := requester.Request(context.Background(), deploy.Request{AppID: d1.AppID, Kind: store.KindRollback,
		Actor: "bench", Trigger: store.TriggerPage})
	if err != nil {
		b.Fatal(err)
	}
	waitAnswer(b, port, "/", "version=v2") // back from v3
	answered := time.Now()
	rb = s.WaitFinished(b, rb.ID, time.Minute)
	if rb.State != store.StateSucceeded || rb.StartedAt == nil {
		b.Fatalf("rollback: %s %s", rb.State, rb.Description)
	}
	rollback = answered.Sub(*rb.StartedAt)
	return first, second, downtime, observed, rollback
}

// breakdown prints where a deployment's time went: the push job (fetch,
// .keystone.yml), the queue, and each step.
func breakdown(b *testing.B, s *stack, d store.Deployment) {
	var received time.Time
	if err := s.Store.Pool().QueryRow(context.Background(), `SELECT received_at FROM webhook_deliveries WHERE id = $1`,
		d.DeliveryID).Scan(&received); err != nil {
		b.Fatal(err)
	}
	steps, err := s.Store.StepsOf(context.Background(), d.ID)
	if err != nil || d.StartedAt == nil {
		b.Fatal(err)
	}
	var pushPicked time.Time
	if err := s.Store.Pool().QueryRow(context.Background(), `SELECT attempted_at FROM river_job
		WHERE kind = 'push' AND (args->>'delivery_id')::bigint = $1`, d.DeliveryID).Scan(&pushPicked); err != nil {
		b.Fatal(err)
	}
	line := fmt.Sprintf("  %s #%d: push job picked %.2fs, worked %.2fs, queue %.2fs", d.Kind, d.ID, pushPicked.Sub(received).Seconds(),
		d.QueuedAt.Sub(pushPicked).Seconds(), d.StartedAt.Sub(d.QueuedAt).Seconds())
	for _, st := range steps {
		end := time.Now()
		if st.FinishedAt != nil {
			end = *st.FinishedAt
		}
		line += fmt.Sprintf(", %s %.2fs", st.Name, end.Sub(st.StartedAt).Seconds())
	}
	fmt.Println(line)
}

// waitStarted waits until Keystone has started the container of sha (its
// deployment reached the health check) and returns the app's port. Polling
// the port before that would be unlike the raw commands, which poll once
// `docker run` returned; and a connection the engine's proxy takes while
// the container's network comes up stalls for a second (ARP), which would
// charge the poller's timing to Keystone.
func waitStarted(b *testing.B, s *stack, r *gittest.Repo, sha string) int {
	var port int
	deploytest.Eventually(b, time.Minute, "the new container started", func() (bool, error) {
		a, err := s.Store.AppByName(context.Background(), r.Owner, r.Name, "web")
		if err != nil {
			return false, nil
		}
		port = a.HostPort
		var step string
		err = s.Store.Pool().QueryRow(context.Background(), `SELECT step FROM deployments
			WHERE app_id = $1 AND sha = $2 ORDER BY id DESC LIMIT 1`, a.ID, sha).Scan(&step)
		return err == nil && (step == "health" || step == "succeeded" || step == "restore"), nil
	})
	return port
}

// rawDeploys is what a person would type, timed the same way.
func rawDeploys(b *testing.B, r *gittest.Repo, token string, port int) (first, second time.Duration) {
	tag := "keystone-bench-raw-" + strings.ToLower(rand.Text()[:10])
	name := tag
	defer func() {
		_ = exec.Command("docker", "rm", "-f", name).Run()
		_ = exec.Command("docker", "rmi", "-f", tag+":1", tag+":2").Run()
	}()
	files := uniqueApp(b, "v1")
	files[".keystone.yml"] = []byte(benchYML)
	r.Commit(b, "main", files, "raw v1")
	start := time.Now()
	dir := rawClone(b, r, token)
	cloned := time.Now()
	buildKit(b, tag+":1", dir)
	built := time.Now()
	run(b, "docker", "run", "-d", "--name", name, "-e", "PORT=8080", "-p", strconv.Itoa(port)+":8080", tag+":1")
	ran := time.Now()
	waitAnswer(b, port, "/healthz", "")
	first = time.Since(start)
	fmt.Printf("  raw first: clone %.2fs, build %.2fs, run %.2fs, healthy %.2fs\n", cloned.Sub(start).Seconds(),
		built.Sub(cloned).Seconds(), ran.Sub(built).Seconds(), time.Since(ran).Seconds())

	r.Commit(b, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)}, "raw v2")
	start = time.Now()
	dir = rawClone(b, r, token)
	buildKit(b, tag+":2", dir)
	run(b, "docker", "rm", "-f", name)
	run(b, "docker", "run", "-d", "--name", name, "-e", "PORT=8080", "-p", strconv.Itoa(port)+":8080", tag+":2")
	waitAnswer(b, port, "/", "version=v2")
	second = time.Since(start)
	return first, second
}

func rawClone(b *testing.B, r *gittest.Repo, token string) string {
	dir := filepath.Join(b.TempDir(), "src")
	cmd := exec.Command("git", "clone", "-q", "--depth", "1", r.CloneURL(), dir)
	auth := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
	cmd.Env = append(os.Environ(), "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader",
		"GIT_CONFIG_VALUE_0=Authorization: Basic "+auth, "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git clone: %v\n%s", err, out)
	}
	return dir
}

// buildKit builds dir as tag with the engine's BuildKit, as Keystone
// builds (issue 10). The docker CLI here (28.x) builds with BuildKit only
// through the buildx plugin, which this machine lacks (no package for it);
// the raw command is then what `docker build` would send: the context's tar
// to the engine's /build with version=2, by curl over the engine's socket.
func buildKit(b *testing.B, tag, dir string) {
	script := `tar -C "$1" -c . | curl -sS --fail --unix-socket /var/run/docker.sock -H 'Content-Type: application/x-tar' ` +
		`--data-binary @- "http://docker/v1.41/build?version=2&t=$2"`
	out, err := exec.Command("sh", "-c", script, "sh", dir, tag).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte(`"errorDetail"`)) || !bytes.Contains(out, []byte("moby.image.id")) {
		b.Fatalf("BuildKit build of %s: %v\n%s", dir, err, out)
	}
}

func run(b *testing.B, name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// waitAnswer polls the app every 20ms until path answers 2xx (and body
// holds want, when given).
func waitAnswer(b *testing.B, port int, path, want string) {
	c := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 && strings.Contains(string(body), want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("%s never answered %q", url, want)
}

// watchDowntime polls the app every 10ms, as a client would, until it
// answers want, and returns the longest stretch without an answer.
func watchDowntime(port int, want string) time.Duration {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	{
		var longest time.Duration
		var downSince time.Time
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			resp, err := c.Get(url)
			body := ""
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
			}
			ok := err == nil && resp.StatusCode == 200
			switch {
			case !ok && downSince.IsZero():
				downSince = time.Now()
			case ok && !downSince.IsZero():
				longest = max(longest, time.Since(downSince))
				downSince = time.Time{}
			}
			if strings.Contains(body, want) {
				return longest
			}
		}
		return longest
	}
}

// benchRequester asks the running Keystone for rollbacks: it records them
// in the database, where Keystone's workers take them.
func benchRequester(b *testing.B, s *stack) *deploy.Requester {
	jobs, err := queue.NewClient(s.Store.Pool(), nil, queue.Config{DeployWorkers: 1})
	if err != nil {
		b.Fatal(err)
	}
	e, err := deploy.New(deploy.Deps{Store: s.Store, Docker: s.Docker, Logger: slog.New(slog.DiscardHandler)},
		deploy.Config{DataDir: b.TempDir(), PortRange: s.PortRange})
	if err != nil {
		b.Fatal(err)
	}
	return e.Requester(jobs)
}

func report(b *testing.B, rows []benchRow) {
	med := func(pick func(benchRow) time.Duration) time.Duration {
		var v []time.Duration
		for _, r := range rows {
			v = append(v, pick(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	first, firstRaw := med(func(r benchRow) time.Duration { return r.firstKS }), med(func(r benchRow) time.Duration { return r.firstRaw })
	second, secondRaw := med(func(r benchRow) time.Duration { return r.secondKS }), med(func(r benchRow) time.Duration { return r.secondRaw })
	rollback := med(func(r benchRow) time.Duration { return r.rollback })
	downtime, observed := med(func(r benchRow) time.Duration { return r.downtime }), med(func(r benchRow) time.Duration { return r.observed })
	fmt.Printf("\nDeploy engine (%s), median of %d runs\n", b.Name(), len(rows))
	fmt.Printf("%-36s %10s %10s %7s %s\n", "measure", "keystone", "raw", "ratio", "target")
	fmt.Printf("%-36s %9.2fs %9.2fs %7.2f %s\n", "first deploy, webhook to healthy", first.Seconds(), firstRaw.Seconds(), first.Seconds()/firstRaw.Seconds(), "<= 1.05")
	fmt.Printf("%-36s %9.2fs %9.2fs %7.2f %s\n", "one-line change, webhook to healthy", second.Seconds(), secondRaw.Seconds(), second.Seconds()/secondRaw.Seconds(), "<= 0.90")
	fmt.Printf("%-36s %9.2fs %10s %7s %s\n", "rollback, job start to answering", rollback.Seconds(), "", "", "<= 2s")
	fmt.Printf("%-36s %9.2fs %10s\n", "update downtime, recorded", downtime.Seconds(), "")
	fmt.Printf("%-36s %9.2fs %10s\n", "update downtime, seen by a client", observed.Seconds(), "")
	for i, r := range rows {
		fmt.Printf("  run %d: first %.2fs/%.2fs  second %.2fs/%.2fs  rollback %.2fs  downtime %.2fs (seen %.2fs)\n", i+1,
			r.firstKS.Seconds(), r.firstRaw.Seconds(), r.secondKS.Seconds(), r.secondRaw.Seconds(),
			r.rollback.Seconds(), r.downtime.Seconds(), r.observed.Seconds())
	}
	b.ReportMetric(first.Seconds()/firstRaw.Seconds(), "first_ratio")
	b.ReportMetric(second.Seconds()/secondRaw.Seconds(), "second_ratio")
	b.ReportMetric(rollback.Seconds(), "rollback_s")
	b.ReportMetric(float64(downtime.Milliseconds()), "downtime_ms")
}
