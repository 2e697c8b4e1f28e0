// Command webhookbench measures webhook intake (issue 2's benchmark): signed
// push deliveries against a running `keystone serve` at several concurrencies,
// against the ceiling of inserting the same rows directly with pgx, and
// Keystone's resident memory idle and under load. `make bench` runs it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/webhook"
)

const secret = "bench-secret"

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "webhookbench:", err)
		os.Exit(1)
	}
}

type result struct {
	mode        string
	concurrency int
	requests    int
	elapsed     time.Duration
	latencies   []time.Duration
	peakRSSKiB  int64
}

func (r result) throughput() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies)-1) * p)
	return r.latencies[i]
}

func run(ctx context.Context) error {
	binary := flag.String("keystone", "bin/keystone", "keystone binary")
	payloadFile := flag.String("payload", "internal/webhook/testdata/github-webhooks/push/with-new-branch.payload.json", "push payload")
	perRun := flag.Duration("duration", 5*time.Second, "length of each measured run")
	flag.Parse()
	server := os.Getenv("DATABASE_URL")
	if server == "" {
		return fmt.Errorf("DATABASE_URL is not set")
	}
	payload, err := os.ReadFile(*payloadFile)
	if err != nil {
		return err
	}

	dbURL, err := freshDatabase(ctx, server, "keystone_bench_webhooks")
	if err != nil {
		return err
	}
	ks, err := startKeystone(ctx, *binary, dbURL)
	if err != nil {
		return err
	}
	defer ks.stop()
	idleRSS := rssKiB(ks.cmd.Process.Pid)

	var results []result
	for _, c := range []int{1, 8, 64} {
		results = append(results, loadServer(ks, payload, c, *perRun, 0))
	}
	// Closed-loop senders measure saturation: at 64 of them latency is
	// queueing by Little's law. The paced runs offer a quarter and a half
	// of that saturated throughput from 64 senders, as bursts of real
	// deliveries would, and show the ack latency while Keystone keeps up.
	saturated := results[len(results)-1].throughput()
	for _, share := range []float64{0.25, 0.5} {
		r := loadServer(ks, payload, 64, *perRun, share*saturated)
		r.mode = fmt.Sprintf("paced %.0f%%", 100*share)
		results = append(results, r)
	}
	ceilingURL, err := freshDatabase(ctx, server, "keystone_bench_ceiling")
	if err != nil {
		return err
	}
	for _, c := range []int{1, 8, 64} {
		r, err := loadDirect(ctx, ceilingURL, payload, c, *perRun)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	printTable(os.Stdout, results, idleRSS)
	return nil
}

func freshDatabase(ctx context.Context, server, name string) (string, error) {
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	cfg, err := pgx.ParseConfig(server)
	if err != nil {
		return "", err
	}
	u := strings.Replace(server, "/"+cfg.Database+"?", "/"+name+"?", 1)
	if u == server {
		return "", fmt.Errorf("DATABASE_URL must name its database and have query parameters (as scripts/pg.sh prints)")
	}
	st, err := store.Open(ctx, u)
	if err != nil {
		return "", err
	}
	defer st.Close()
	return u, st.Migrate(ctx)
}

type keystone struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

func startKeystone(ctx context.Context, binary, dbURL string) (*keystone, error) {
	cmd := exec.CommandContext(ctx, binary, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "KEYSTONE_ADDR=127.0.0.1:18089",
		"KEYSTONE_GITHUB_WEBHOOK_SECRET="+secret, "KEYSTONE_DATA_DIR="+os.TempDir()+"/keystone-bench")
	cmd.Stdout = io.Discard
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start keystone: %w", err)
	}
	ks := &keystone{cmd: cmd, url: "http://127.0.0.1:18089", done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(ks.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(ks.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				time.Sleep(2 * time.Second) // let start-up allocations settle before the idle reading
				return ks, nil
			}
		}
		select {
		case <-ks.done:
			return nil, fmt.Errorf("keystone exited during start-up")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			ks.stop()
			return nil, fmt.Errorf("keystone not ready after 30s")
		}
	}
}

func (k *keystone) stop() {
	_ = k.cmd.Process.Signal(os.Interrupt)
	select {
	case <-k.done:
	case <-time.After(25 * time.Second):
		_ = k.cmd.Process.Kill()
	}
}

var guidSeq atomic.Int64

func nextGUID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), guidSeq.Add(1))
}

// drive runs fn from concurrency senders for d and gathers latencies. With
// rate > 0 the senders share a schedule of rate calls a second and each
// latency counts from the call's scheduled time, so a stall is not hidden
// by the calls it delays (coordinated omission); otherwise each sender
// calls again as soon as its last call returns.
func drive(concurrency int, d time.Duration, rate float64, fn func() error) ([]time.Duration, time.Duration, error) {
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	start := time.Now()
	deadline := start.Add(d)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if rate > 0 {
					t0 = start.Add(time.Duration(float64(next.Add(1)-1) / rate * float64(time.Second)))
					if !t0.Before(deadline) {
						break
					}
					time.Sleep(time.Until(t0))
				}
				if err := fn(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	return all, elapsed, firstErr
}

// loadServer sends signed push deliveries to Keystone from concurrency
// senders, closed-loop or, with rate > 0, paced (see drive).
func loadServer(ks *keystone, payload []byte, concurrency int, d time.Duration, rate float64) result {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	sig := webhook.Sign([]byte(secret), payload)
	var peak atomic.Int64
	stopSampling := sampleRSS(ks.cmd.Process.Pid, &peak)
	lat, elapsed, err := drive(concurrency, d, rate, func() error {
		req, _ := http.NewRequest(http.MethodPost, ks.url+"/webhooks/github", bytes.NewReader(payload))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", nextGUID("bench"))
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("delivery answered %d", resp.StatusCode)
		}
		return nil
	})
	stopSampling()
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookbench: server run:", err)
	}
	return result{mode: "keystone", concurrency: concurrency, requests: len(lat), elapsed: elapsed,
		latencies: lat, peakRSSKiB: peak.Load()}
}

// loadDirect inserts what an accepted push delivery writes (its row and its
// job, in one transaction) straight through pgx: the ceiling for intake.
func loadDirect(ctx context.Context, dbURL string, payload []byte, concurrency int, d time.Duration) (result, error) {
	pool, err := pgxpool.New(ctx, dbURL+"&pool_max_conns="+strconv.Itoa(max(8, concurrency)))
	if err != nil {
		return result{}, err
	}
	defer pool.Close()
	jobs, err := queue.NewClient(pool, nil, queue.Config{DeployWorkers: 1})
	if err != nil {
		return result{}, err
	}
	lat, elapsed, err := drive(concurrency, d, 0, func() error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			id, _, err := store.NewQueries(tx).InsertDelivery(ctx, store.Delivery{
				GUID: nextGUID("direct"), Event: "push", InstallationID: 1, Repository: "Codertocat/Hello-World", Payload: payload,
			})
			if err != nil {
				return err
			}
			_, err = jobs.InsertTx(ctx, tx, queue.PushArgs{DeliveryID: id}, &river.InsertOpts{})
			return err
		})
	})
	if err != nil {
		return result{}, fmt.Errorf("direct inserts: %w", err)
	}
	return result{mode: "direct pgx", concurrency: concurrency, requests: len(lat), elapsed: elapsed, latencies: lat}, nil
}

// sampleRSS records the peak resident memory of pid until stopped.
func sampleRSS(pid int, peak *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if v := rssKiB(pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func printTable(w io.Writer, results []result, idleRSS int64) {
	ceiling := map[int]float64{}
	for _, r := range results {
		if r.mode == "direct pgx" {
			ceiling[r.concurrency] = r.throughput()
		}
	}
	fmt.Fprintf(w, "webhook intake, %s, %d CPUs, %s\n\n", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), time.Now().Format("2006-01-02"))
	fmt.Fprintf(w, "| %-10s | %4s | %8s | %10s | %8s | %8s | %11s | %8s |\n", "mode", "conc", "requests", "req/s", "p50 ms", "p99 ms", "vs ceiling", "peak RSS")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 12), strings.Repeat("-", 6), strings.Repeat("-", 10),
		strings.Repeat("-", 12), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 13), strings.Repeat("-", 10))
	for _, r := range results {
		vs, rss := "", ""
		if r.mode == "keystone" {
			vs = fmt.Sprintf("%.0f%%", 100*r.throughput()/ceiling[r.concurrency])
		}
		if r.mode != "direct pgx" {
			rss = fmt.Sprintf("%.1f MB", float64(r.peakRSSKiB)/1024)
		}
		fmt.Fprintf(w, "| %-10s | %4d | %8d | %10.0f | %8.2f | %8.2f | %11s | %8s |\n", r.mode, r.concurrency, r.requests,
			r.throughput(), ms(r.percentile(0.50)), ms(r.percentile(0.99)), vs, rss)
	}
	fmt.Fprintf(w, "\nkeystone idle RSS: %.1f MB\n", float64(idleRSS)/1024)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
