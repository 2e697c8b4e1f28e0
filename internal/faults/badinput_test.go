//go:build faults

package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
)

// TestBadInput sends 1,000 generated bad webhook deliveries — malformed,
// mistyped, unsigned, badly signed, oversized, replayed, with broken
// headers — then comment commands full of shell metacharacters, newlines,
// very long lines and unusual Unicode, pushes of malformed and hostile
// .keystone.yml files, and Host garbage to the router. Nothing is answered
// 5xx (the database is up), Keystone keeps running and deploys afterwards,
// no command or bad file runs anything, each bad file gets a failure status
// naming its problem, the app keeps answering, and every rejection is in
// serve's log under its delivery id. KEYSTONE_FAULTS_QUICK sends a fifth.
func TestBadInput(t *testing.T) {
	bodies, commands, ymls, hosts := scaled(1000, 200), scaled(100, 20), scaled(30, 8), scaled(100, 20)
	w := newWorld(t, "bad-input", fmt.Sprintf("%d bad deliveries, %d hostile comment commands, %d bad .keystone.yml pushes, %d garbage Hosts to the router",
		bodies, commands, ymls, hosts))
	v1, host, l := w.serveV1(20)
	canary := filepath.Join(t.TempDir(), "pwned")

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 15))
	valid := w.Repo.PushEvent("main", v1, "alice")
	byCode := map[int]int{}
	for i := range bodies {
		guid, event, body, hdr := badDelivery(rng, i, valid)
		d := w.hooks.send(guid, event, body, hdr)
		byCode[d.Code]++
		if d.Code == 0 || d.Code >= 500 {
			t.Errorf("bad delivery %d (%d bytes, event %q) answered %d", i, len(body), event, d.Code)
		}
	}
	t.Logf("answers to the bad deliveries by status: %v", byCode)

	w.GitHub.SetPermission(w.repo, "mallory", "read")
	var comments []string
	for i := range commands {
		user := []string{"alice", "mallory"}[i%2]
		c := w.GitHub.AddComment(w.repo, 5, user, hostileCommand(rng, canary))
		d := w.hooks.deliver("issue_comment", c.Event(w.repo, deploytest.Installation))
		if d.Code/100 != 2 {
			t.Errorf("comment %d %q answered %d %s", i, c.Body, d.Code, d.Status)
		}
		comments = append(comments, d.GUID)
	}
	badFiles := w.badYML(rng, ymls)
	refusedBefore := w.proxy.refused()
	var refusedByRouter int64
	for i := range hosts {
		h := garbageHost(rng, i)
		code, body, err := rawGet(w.proxy.addr, h)
		if err != nil || code >= 500 {
			t.Errorf("the router answered %d (%v) to Host %q", code, err, h)
		}
		// net/http itself refuses some bytes ("400 Bad Request: malformed
		// Host header") before the router sees them; these are the router's.
		if strings.Contains(body, "400 bad request: malformed Host") || strings.Contains(body, "No app is served at") {
			refusedByRouter++
		}
	}
	// The router counts each refusal and its log accounts for every one.
	if got := w.proxy.refused() - refusedBefore; got != refusedByRouter {
		t.Errorf("the router counted %d refusals of the garbage Hosts, it answered %d", got, refusedByRouter)
	}
	await(t, 30*time.Second, "every refusal of the router in its log", func() bool { return w.proxy.refusalsLogged() == w.proxy.refused() })

	// Keystone still deploys (an alice command may have locked the app).
	c := w.GitHub.AddComment(w.repo, 5, "alice", "/keystone unlock web")
	w.hooks.deliver("issue_comment", c.Event(w.repo, deploytest.Installation))
	// "unlocked", or "not locked" when no hostile command locked it (a
	// quick run's few commands often do not).
	if r := w.Reply(t, c, "locked", 2*time.Minute); !strings.Contains(r, "unlocked") && !strings.Contains(r, "is not locked") {
		t.Fatalf("reply to /keystone unlock web: %s", r)
	}
	v2 := w.push(gittest.Behaviour{Version: "v2"})
	if st := w.finalStatus(v2, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v2 after the bad input: %s", st)
	}
	w.routed(host, "v2", time.Minute)
	l.finishWithoutFailures(t, "")
	w.settled()
	if _, err := os.Stat(canary); !os.IsNotExist(err) {
		t.Errorf("a comment command ran a shell command: %s exists (%v)", canary, err)
	}
	// Every rejection logged: the last jobs' lines may trail their effects.
	rejections, unlogged := w.unloggedRejections(comments, badFiles)
	for deadline := time.Now().Add(30 * time.Second); len(unlogged) > 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond) // polled: the log has no event to await
		rejections, unlogged = w.unloggedRejections(comments, badFiles)
	}
	if len(unlogged) > 0 {
		t.Errorf("%d of %d rejections not in serve's log, e.g. %v", len(unlogged), rejections, unlogged[:min(len(unlogged), 10)])
	}
	w.row.Faults += fmt.Sprintf(" (answers %v; %d rejections, all logged with their delivery id; %d garbage Hosts refused by the router, counted and logged in summary lines, the rest by net/http)",
		byCode, rejections, refusedByRouter)
}

// badDelivery returns the i-th bad delivery: a kind chosen by i, its
// bytes by rng.
func badDelivery(rng *rand.Rand, i int, valid []byte) (guid, event string, body []byte, hdr http.Header) {
	guid, event = newGUID(), []string{"push", "issue_comment", "pull_request", "installation", "ping"}[rng.IntN(5)]
	sign := true
	switch i % 10 {
	case 0: // truncated
		body = valid[:rng.IntN(len(valid))]
	case 1: // random bytes
		body = make([]byte, rng.IntN(4096))
		for j := range body {
			body[j] = byte(rng.UintN(256))
		}
	case 2: // bytes flipped
		body = bytes.Clone(valid)
		for range 1 + rng.IntN(8) {
			body[rng.IntN(len(body))] = byte(rng.UintN(256))
		}
	case 3: // fields of the wrong type
		var m map[string]any
		_ = json.Unmarshal(valid, &m)
		keys := []string{"ref", "after", "repository", "installation", "sender", "head_commit", "commits", "action", "comment", "issue"}
		vals := []any{nil, 12, -1.5e300, "x", []any{1, "a"}, map[string]any{"id": "forty-two"}, true, strings.Repeat("é", 5000)}
		for range 1 + rng.IntN(4) {
			m[keys[rng.IntN(len(keys))]] = vals[rng.IntN(len(vals))]
		}
		body, _ = json.Marshal(m)
	case 4: // unsigned
		body, sign = valid, false
	case 5: // signed with another secret
		body, sign = valid, false
		hdr = signedWith("not-the-secret", body)
	case 6: // deep nesting, odd Unicode and invalid UTF-8 in strings
		switch rng.IntN(3) {
		case 0:
			body = []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))
		case 1:
			body = bytes.Replace(valid, []byte(`refs/heads/main`), []byte("refs/heads/\u202e\u0000\xff\xfe"+strings.Repeat("\U0001F600", 2000)), 1)
		default:
			body = []byte(`{"ref":"` + strings.Repeat("a", 1<<20) + `"}`)
		}
	case 7: // broken headers
		body = valid
		switch rng.IntN(3) {
		case 0:
			event = ""
		case 1:
			guid = strings.Repeat("g", 200)
		default:
			guid = "../../etc/passwd;rm -rf /"
		}
	case 8: // oversized now and then, else empty
		if i%100 == 8 {
			body = bytes.Repeat([]byte("x"), 26<<20)
		}
	case 9: // a replay: the same valid body and GUID again
		body, guid, event = valid, "replay-of-one-delivery", "push"
	}
	if sign {
		hdr = signed(body)
	}
	return guid, event, body, hdr
}

func signedWith(secret string, body []byte) http.Header {
	h := signed(body)
	if secret != hookSecret {
		h.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
	}
	return h
}

// hostileCommand is a comment that tries to make Keystone run something:
// each attempt would create canary.
func hostileCommand(rng *rand.Rand, canary string) string {
	shell := []string{"$(touch " + canary + ")", "`touch " + canary + "`", "; touch " + canary, "| touch " + canary,
		"&& touch " + canary, "\ntouch " + canary, "${IFS}touch${IFS}" + canary, "'; touch " + canary + "; '"}
	verbs := []string{"deploy web", "deploy", "rollback to", "lock web", "status", "redeploy web", "help", "preview"}
	odd := []string{"", "\u202e", "\u0000", "\U0001F4A5", "\r\n", strings.Repeat("A", 70000), "ﾟ･✿ヾ╲(｡◕‿◕｡)╱✿･ﾟ", "\t"}
	return "/keystone " + verbs[rng.IntN(len(verbs))] + " " + odd[rng.IntN(len(odd))] + shell[rng.IntN(len(shell))] +
		odd[rng.IntN(len(odd))]
}

// garbageHost is a Host header no app has.
func garbageHost(rng *rand.Rand, i int) string {
	hosts := []string{"", "..", "a..b." + domain, strings.Repeat("x", 300) + "." + domain, "web.octo." + domain + ":99999",
		"[::1", "*." + domain, "xn--" + strings.Repeat("9", 60) + "." + domain, "ÄPPS.test", "web\x00.apps.test", "a\x7fb", "\u202e.apps.test"}
	return hosts[(i+rng.IntN(len(hosts)))%len(hosts)]
}

// rawGet sends GET / with Host host as raw bytes (Go's client refuses to
// send a malformed Host) and returns the status code and body of the answer.
func rawGet(addr, host string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), err
}

// refused is the router's count of the requests and handshakes it refused
// itself (keystone_router_refused_total, every reason).
func (p *proxyProc) refused() int64 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := p.client.Metrics(ctx)
	if err != nil {
		p.t.Fatalf("router metrics: %v", err)
	}
	var n int64
	for _, l := range strings.Split(m, "\n") {
		if rest, ok := strings.CutPrefix(l, "keystone_router_refused_total{"); ok {
			_, v, _ := strings.Cut(rest, "} ")
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatalf("router metrics: %q: %v", l, err)
			}
			n += int64(f)
		}
	}
	return n
}

// refusalsLogged sums the counts of the router's "router: refused" summary
// lines in its output.
func (p *proxyProc) refusalsLogged() int64 {
	var n int64
	for _, l := range strings.Split(p.out.String(), "\n") {
		var e struct {
			Msg   string
			Count int64
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "router: refused" {
			n += e.Count
		}
	}
	return n
}
