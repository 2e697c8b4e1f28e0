//go:build faults

package faults_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/gittest"
)

// TestKillProxy SIGKILLs `keystone proxy` while idle and again during an
// update, restarting it each time on its data directory: its routes come
// back from its own state, the update completes, and requests fail only
// while the proxy is down.
func TestKillProxy(t *testing.T) {
	w := newWorld(t, "kill-proxy", "SIGKILL keystone proxy while idle, during an update")
	_, host, l := w.serveV1(40)

	var windows [][2]time.Time

	// Idle.
	killed := time.Now()
	w.proxy.kill()
	before := l.failureCount()
	await(t, 30*time.Second, "requests failing while the proxy is down", func() bool { return l.failureCount() > before })
	w.proxy.start()
	w.routed(host, "v1", time.Minute)
	windows = append(windows, [2]time.Time{killed, time.Now()})

	// During an update: killed while the new version builds, so that
	// Keystone meets the dead proxy when it switches, and restarted after
	// the update ended or 10 s into its switch.
	v2 := w.push(gittest.Behaviour{Version: "v2", BuildStep: true, BuildSleep: 4 * time.Second,
		BuildPrint: []string{"building slowly"}})
	id2 := w.deploymentOf(v2)
	await(t, 2*time.Minute, "v2's build step running", func() bool {
		return strings.Contains(strings.Join(w.Log(t, id2), "\n"), "building slowly")
	})
	killed = time.Now()
	w.proxy.kill()
	w.waitStepOrFinished(id2, deploy.StepHealth, 2*time.Minute)
	// Down while Keystone switches the route: until the update ends or
	// has met the dead proxy for a while.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !w.finished(id2); {
		time.Sleep(200 * time.Millisecond) // the fault's duration, polled
	}
	w.proxy.start()
	served := time.Now()
	windows = append(windows, [2]time.Time{killed, served})
	if st := w.finalStatus(v2, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v2 through a proxy restart: %s\n%s", st, strings.Join(w.Log(t, id2), "\n"))
	}
	log := strings.Join(w.Log(t, id2), "\n")
	t.Logf("log of the update that met the dead proxy:\n%s", log)
	// The switch waited for the router instead of failing the attempt.
	if n := w.deployAttempts(id2); n != 1 || !strings.Contains(log, "does not answer: waiting up to") {
		t.Errorf("the update ran %d attempts through the proxy's restart, want 1 that waited for it", n)
	}
	w.routed(host, "v2", 2*time.Minute)
	windows[len(windows)-1][1] = time.Now()
	now := l.answered()
	await(t, 30*time.Second, "answers after the restarts", func() bool { return l.answered() > now+20 })

	sent, failures := l.finish()
	outside, inside := 0, 0
	for _, f := range failures {
		in := false
		for _, win := range windows {
			in = in || (!f.At.Before(win[0]) && !f.At.After(win[1]))
		}
		if in {
			inside++
		} else {
			outside++
			t.Errorf("a request failed outside the proxy's down windows at %s: %s", f.At.Format(time.StampMilli), f.Why)
		}
	}
	var report []string
	for _, win := range windows {
		report = append(report, fmt.Sprintf("%.1fs", win[1].Sub(win[0]).Seconds()))
	}
	w.row.Faults += fmt.Sprintf(" (down windows %s; %d failed inside, %d outside)", strings.Join(report, ", "), inside, outside)
	w.settled()
	t.Logf("load: %d sent, %d failed (all while the proxy was down: windows %v), by version %v", sent, len(failures), report, l.seen)
}

func firstFailures(fs []failure, n int) []string {
	var out []string
	for _, f := range fs[:min(n, len(fs))] {
		out = append(out, f.At.Format(time.StampMilli)+" "+f.Why)
	}
	return out
}
