//go:build faults

package faults_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// load sends paced requests for host through the router, from a keep-alive
// and a fresh-connection client, until stopped. It counts every request
// and keeps each failure (an error or a status other than 200) with when
// it ended.
type load struct {
	sent     atomic.Int64
	mu       sync.Mutex
	failures []failure
	seen     map[string]int
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

type failure struct {
	At  time.Time
	Why string
}

func startLoad(addr, host string, perSecond int) *load {
	l := &load{stop: make(chan struct{}), seen: map[string]int{}}
	clients := []*http.Client{
		{Timeout: 10 * time.Second},
		{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	const workers = 4
	for i := range workers {
		c := clients[i%len(clients)]
		l.wg.Go(func() {
			tick := time.NewTicker(time.Second * workers / time.Duration(perSecond))
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.one(c, addr, host)
			}
		})
	}
	return l
}

func (l *load) one(c *http.Client, addr, host string) {
	l.sent.Add(1)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		l.fail(err.Error())
		return
	}
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, rerr := resp.Body.Read(buf)
		b.Write(buf[:n])
		if rerr != nil {
			break
		}
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		l.fail(fmt.Sprintf("%d %q", resp.StatusCode, b.String()))
		return
	}
	l.mu.Lock()
	l.seen[strings.TrimSpace(b.String())]++
	l.mu.Unlock()
}

func (l *load) fail(why string) {
	l.mu.Lock()
	l.failures = append(l.failures, failure{At: time.Now(), Why: why})
	l.mu.Unlock()
}

// failureCount is how many requests failed so far.
func (l *load) failureCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failures)
}

// answered is how many requests got a 200 so far.
func (l *load) answered() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.seen {
		n += c
	}
	return n
}

// finish stops the load and returns requests sent and the failures.
func (l *load) finish() (sent int, failures []failure) {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.sent.Load()), l.failures
}

// finishWithoutFailures stops the load and fails t if any request through
// the router failed; to names the requests' app in the message ("" for the
// scenario's one app). It returns how many were sent and failed.
func (l *load) finishWithoutFailures(t testing.TB, to string) (sent, failed int) {
	t.Helper()
	sent, failures := l.finish()
	if len(failures) != 0 {
		t.Errorf("%d of %d requests %sthrough the router failed: %v", len(failures), sent, to, firstFailures(failures, 5))
	}
	return sent, len(failures)
}

// tally is what a scenario observed at its end, for its report row.
type tally struct {
	Stored, Unprocessed, Jobs int
	Lost                      int // accepted (202) deliveries not stored
	PendingStatuses           int // pushed SHAs whose last status is pending
	Unfinished                int // deployments, jobs, outbox entries not finished
	Containers, Routes, Ports int // orphaned
}

func (t tally) pending() int { return t.PendingStatuses + t.Unfinished }

func (t tally) orphaned() string { return fmt.Sprintf("%d/%d/%d", t.Containers, t.Routes, t.Ports) }

// tally reads the end state: the database, Docker, the router's table and
// the fake GitHub's statuses.
func (w *world) tally() tally {
	w.t.Helper()
	ctx := context.Background()
	var c tally
	db := w.Store.Pool()
	if err := db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM webhook_deliveries),
		(SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL),
		(SELECT count(*) FROM river_job WHERE state = 'completed'),
		(SELECT count(*) FROM deployments WHERE finished_at IS NULL) +
		(SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled')
			AND id NOT IN (SELECT job_id FROM job_rescues)) +
		(SELECT count(*) FROM github_outbox WHERE state = 'pending')`).Scan(&c.Stored, &c.Unprocessed, &c.Jobs, &c.Unfinished); err != nil {
		w.t.Errorf("tally: %v", err)
		return c
	}
	for _, d := range w.hooks.all() {
		if d.Code != http.StatusAccepted {
			continue
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE guid = $1`, d.GUID).Scan(&n); err != nil {
			w.t.Errorf("tally: %v", err)
			return c
		}
		if n != 1 {
			c.Lost++
		}
	}
	c.Lost += c.Unprocessed
	w.mu.Lock()
	pushed := append([]string(nil), w.pushed...)
	w.mu.Unlock()
	for _, sha := range pushed {
		if sts := w.GitHub.Statuses(w.repo, sha); len(sts) > 0 && sts[len(sts)-1].State == "pending" {
			c.PendingStatuses++
		}
	}
	c.Containers, c.Ports = w.orphanedContainers()
	c.Routes = w.orphanedRoutes()
	return c
}

// settled awaits the end state every scenario promises: nothing pending
// (deployments, jobs, outbox, deliveries, pushed SHAs' statuses), nothing
// acknowledged lost, no orphaned container, route or port.
func (w *world) settled() tally {
	w.t.Helper()
	var c tally
	await(w.t, 3*time.Minute, "nothing pending, lost or orphaned", func() bool {
		c = w.tally()
		return c.pending() == 0 && c.Lost == 0 && c.Containers == 0 && c.Routes == 0 && c.Ports == 0
	})
	return c
}

// orphanedContainers counts this instance's containers that serve no live
// app (not its current deployment's, or a second one of an app), and the
// host ports they publish.
func (w *world) orphanedContainers() (containers, ports int) {
	w.t.Helper()
	current := map[string]bool{}
	rows, err := w.Store.Pool().Query(context.Background(),
		`SELECT current_deployment_id FROM apps WHERE removed_at IS NULL AND current_deployment_id IS NOT NULL`)
	if err != nil {
		w.t.Errorf("tally: %v", err)
		return -1, -1
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			w.t.Errorf("tally: %v", err)
			return -1, -1
		}
		current[strconv.FormatInt(id, 10)] = true
	}
	rows.Close()
	seen := map[string]bool{}
	for _, ct := range w.Containers(w.t) {
		dep := ct.Labels["io.keystone.deployment"]
		if current[dep] && !seen[dep] && ct.State == container.StateRunning {
			seen[dep] = true
			continue
		}
		containers++
		ports += len(ct.Ports)
	}
	var removedPorts int
	if err := w.Store.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM apps WHERE removed_at IS NOT NULL AND host_port IS NOT NULL`).Scan(&removedPorts); err != nil {
		w.t.Errorf("tally: %v", err)
		return -1, -1
	}
	return containers, ports + removedPorts
}

// orphanedRoutes counts the router's routes that name no live app, or
// whose target is not the published port of the app's serving container.
func (w *world) orphanedRoutes() int {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	routes, err := w.proxy.client.Routes(ctx)
	if err != nil {
		w.t.Errorf("tally: list routes: %v", err)
		return -1
	}
	want := map[string]string{} // service → target
	rows, err := w.Store.Pool().Query(ctx, `SELECT a.id, COALESCE(d.container_id, '') FROM apps a
		LEFT JOIN deployments d ON d.id = a.current_deployment_id WHERE a.removed_at IS NULL`)
	if err != nil {
		w.t.Errorf("tally: %v", err)
		return -1
	}
	type live struct {
		id        int64
		container string
	}
	var apps []live
	for rows.Next() {
		var a live
		if err := rows.Scan(&a.id, &a.container); err != nil {
			w.t.Errorf("tally: %v", err)
			return -1
		}
		apps = append(apps, a)
	}
	rows.Close()
	for _, a := range apps {
		target := ""
		if a.container != "" {
			if in, err := w.Docker.ContainerInspect(ctx, a.container); err == nil && in.NetworkSettings != nil {
				for _, b := range in.NetworkSettings.Ports {
					if len(b) > 0 {
						target = "127.0.0.1:" + b[0].HostPort
					}
				}
			}
		}
		want["app-"+strconv.FormatInt(a.id, 10)] = target
	}
	n := 0
	for _, r := range routes {
		target, ok := want[r.Service]
		if !ok || (target != "" && r.Target != target) {
			n++
		}
	}
	return n
}

// record adds the scenario's row to the report, from what the world saw
// and its end state; newWorld registers it to run when the test ends, so a
// failing scenario is reported too.
func (w *world) record() {
	r := w.row
	for _, l := range w.loads {
		sent, failures := l.finish()
		r.Requests += sent
		r.Failed += len(failures)
	}
	r.Sent = len(w.hooks.all())
	c := w.tally()
	r.Stored, r.Jobs, r.Pending, r.Orphaned, r.Lost = c.Stored, c.Jobs, c.pending(), c.orphaned(), c.Lost
	r.Passed = !w.t.Failed()
	report.add(r)
}

// startLoad starts a load through the router for host, ended (and counted
// in the report) when the test ends at the latest.
func (w *world) startLoad(host string, perSecond int) *load {
	l := startLoad(w.proxy.addr, host, perSecond)
	w.loads = append(w.loads, l)
	return l
}

// seenVersion reports whether a request was answered by version v.
func (l *load) seenVersion(v string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen["version="+v] > 0
}
