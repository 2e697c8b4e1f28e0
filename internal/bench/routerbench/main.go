// Command routerbench compares `keystone proxy` with kamal-proxy v0.9.2 in
// one run, with the same backends and load (`make bench`):
//
//   - overhead: 16 keep-alive clients back to back, direct and through the
//     proxy in alternating slices; req/s and added p50;
//   - switch under load: 200 req/s open loop (half keep-alive, half fresh
//     connections) through an update, a failed update (target dead) and a
//     rollback, with slow requests straddling each switch; failed requests,
//     connection errors, slow requests answered, first answer from the new
//     version after the switch command starts, switch command time;
//   - peak RSS after 100 more routes were added and each was asked once.
//
// kamal-proxy is an external binary (-kamal); without it only Keystone runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	keystoneBin := flag.String("keystone", "bin/keystone", "keystone binary")
	kamalBin := flag.String("kamal", "", "kamal-proxy v0.9.2 binary (empty: keystone only)")
	overhead := flag.Duration("overhead", 6*time.Second, "overhead phase length, direct and proxied each")
	rate := flag.Int("rate", 200, "open-loop request rate during switches")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	v1, v2 := startBackend("v1"), startBackend("v2")
	proxies := []proxy{&keystone{bin: *keystoneBin}}
	if *kamalBin != "" {
		proxies = append(proxies, &kamal{bin: *kamalBin})
	}
	// Start every proxy first, so the overhead slices of all of them and of
	// the direct path interleave and share the machine's noise.
	fronts := make([]string, len(proxies))
	for i, p := range proxies {
		front, err := p.start(ctx, v1.addr)
		if err != nil {
			log.Fatalf("%s: start: %v", p.name(), err)
		}
		if err := waitFor(10*time.Second, "the proxy answering v1", func() bool { return version(front) == "v1" }); err != nil {
			log.Fatalf("%s: %v", p.name(), err)
		}
		fronts[i] = front
	}
	direct, proxied := overheadRun(fronts, "http://"+v1.addr, *overhead)
	rows := make([]row, len(proxies))
	for i, p := range proxies {
		rows[i] = row{name: p.name(), directRPS: direct.rps, proxiedRPS: proxied[i].rps, addedP50: proxied[i].p50 - direct.p50}
	}
	for i, p := range proxies {
		err := measureSwitch(ctx, p, fronts[i], v1, v2, *rate, &rows[i])
		p.stop()
		if err != nil {
			log.Fatalf("%s: %v", p.name(), err)
		}
	}
	printTable(os.Stdout, rows)
}

type row struct {
	name                   string
	sent, failed, connErrs int
	slowOK, slowTotal      int
	firstNew               []time.Duration // update, rollback
	switchCmd              []time.Duration
	failedDeployRefused    bool
	directRPS, proxiedRPS  float64
	addedP50               time.Duration
	rssKiB                 int
}

// measureSwitch runs the switches under load, then the 100 routes.
func measureSwitch(ctx context.Context, p proxy, front string, v1, v2 *backend, rate int, r *row) error {
	sw := &switcher{front: front, rate: rate}
	sw.startLoad()
	time.Sleep(time.Second) // steady load before the first switch
	for i, step := range []struct {
		target, want string
		fail         bool
	}{{v2.addr, "v2", false}, {deadAddr(), "", true}, {v1.addr, "v1", false}} {
		slow := sw.slow(5, 1500*time.Millisecond)
		time.Sleep(200 * time.Millisecond) // the slow requests reach the old version
		start := time.Now()
		sw.watch(step.want, start)
		err := p.deploy(ctx, step.target)
		took := time.Since(start)
		if step.fail {
			r.failedDeployRefused = err != nil
		} else if err != nil {
			return fmt.Errorf("deploy %d: %w", i, err)
		} else {
			r.switchCmd = append(r.switchCmd, took)
		}
		time.Sleep(2 * time.Second)
		if !step.fail {
			r.firstNew = append(r.firstNew, sw.firstNew())
		}
		r.slowOK += slow()
		r.slowTotal += 5
	}
	r.sent, r.failed, r.connErrs = sw.stopLoad()

	if err := p.addRoutes(ctx, 100, v1.addr); err != nil {
		return fmt.Errorf("100 routes: %w", err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for i := range 100 {
		get(c, front, fmt.Sprintf("app%03d.bench.test", i), "/")
	}
	r.rssKiB = vmHWM(p.pid())
	return nil
}

func deadAddr() string {
	port, _ := freePort()
	return "127.0.0.1:" + strconv.Itoa(port)
}

// version asks the front for benchHost's version.
func version(front string) string {
	_, body, _ := get(&http.Client{Timeout: 2 * time.Second}, front, benchHost, "/")
	return body
}

func get(c *http.Client, base, host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// backend is an app version: / answers its name, /up 200, /slow?ms=N after N ms.
type backend struct{ addr string }

func startBackend(name string) *backend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })
	mux.HandleFunc("/up", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		io.WriteString(w, name)
	})
	go http.Serve(ln, mux)
	return &backend{addr: ln.Addr().String()}
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| proxy | failed / sent | conn errors | slow answered | failed update refused | first new answer (update / rollback) | switch cmd | direct req/s | proxied req/s | added p50 | peak RSS, 100 routes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d / %d | %d | %d/%d | %v | %s | %s | %.0f | %.0f | %s | %.1f MiB |\n",
			r.name, r.failed, r.sent, r.connErrs, r.slowOK, r.slowTotal, r.failedDeployRefused,
			durs(r.firstNew), durs(r.switchCmd), r.directRPS, r.proxiedRPS, ms(r.addedP50), float64(r.rssKiB)/1024)
	}
}

func durs(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, ms(d))
	}
	return strings.Join(s, " / ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
