//go:build faults

package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// Moments of an update that are no step of their own: draining, the end
// of the health step, when the router has moved traffic to the new
// version and waits for the old one's requests in flight; reporting, once
// the deployment has ended and its statuses are on their way to GitHub
// (the outbox).
const (
	stepDraining  = "draining"
	stepReporting = "reporting"
)

// killSteps are the moments `keystone serve` is killed at: queued, each
// step an update through the router records (deploy.RoutedSteps) with
// draining after the health check, and reporting.
func killSteps() []string {
	steps := slices.Clone(deploy.RoutedSteps)
	steps = slices.Insert(steps, slices.Index(steps, deploy.StepHealth)+1, stepDraining)
	return slices.Concat([]string{store.StateQueued}, steps, []string{stepReporting})
}

// landing pushes version v and returns once the update is at its step,
// with the SHA that must end deployed and what to undo once serve is dead
// (a hold on Docker or GitHub); nil when the step cannot be hit for sure.
type landing func(w *world, cut *deploytest.DockerCut, v string) (sha string, undo func())

// landings says how each kill step is reached. Through Docker calls held
// at the socket proxy where a step is too short to be seen in the
// database; the request held is Dropped (never reaching the engine) or
// Released (reaching it after serve died, as a request sent just before a
// crash does).
var landings = map[string]landing{
	store.StateQueued: func(w *world, _ *deploytest.DockerCut, v string) (string, func()) {
		// A slow build holds the app; the next push waits queued behind it.
		first := w.push(gittest.Behaviour{Version: v + "-overtaken", BuildStep: true, BuildSleep: 8 * time.Second,
			BuildPrint: []string{"building slowly"}})
		w.awaitLog(w.deploymentOf(first), "building slowly")
		sha := w.push(gittest.Behaviour{Version: v})
		w.waitState(w.deploymentOf(sha), store.StateQueued)
		return sha, nil
	},
	// The deploy's fetch finds the commit in the mirror the push job filled
	// (it read .keystone.yml there): it lasts milliseconds and calls nothing
	// a test can hold.
	deploy.StepFetch: nil,
	deploy.StepBuild: func(w *world, _ *deploytest.DockerCut, v string) (string, func()) {
		sha := w.push(gittest.Behaviour{Version: v, BuildStep: true, BuildSleep: 8 * time.Second,
			BuildPrint: []string{"building slowly"}})
		w.awaitLog(w.deploymentOf(sha), "building slowly")
		return sha, nil
	},
	deploy.StepStart: func(w *world, cut *deploytest.DockerCut, v string) (string, func()) {
		return w.pushHeld(cut, v, deploy.StepStart, requestTo("POST ", "/containers/create")), cut.Release
	},
	deploy.StepSwitch: func(w *world, cut *deploytest.DockerCut, v string) (string, func()) {
		return w.pushHeld(cut, v, deploy.StepSwitch, requestTo("POST ", "/start HTTP/1.1")), cut.Release
	},
	deploy.StepHealth: func(w *world, _ *deploytest.DockerCut, v string) (string, func()) {
		// It takes a few seconds to listen.
		sha := w.push(gittest.Behaviour{Version: v, StartDelay: 4 * time.Second})
		w.waitStep(w.deploymentOf(sha), deploy.StepHealth)
		return sha, nil
	},
	stepDraining: func(w *world, _ *deploytest.DockerCut, v string) (string, func()) {
		// A slow request to the serving version is in flight when the
		// router moves the route: the switch waits for it (drain).
		sha := w.push(gittest.Behaviour{Version: v, StartDelay: 3 * time.Second})
		id := w.deploymentOf(sha)
		w.waitStep(id, deploy.StepHealth)
		before := w.routeTarget()
		slow := w.slowRequest(15 * time.Second)
		await(w.t, time.Minute, "the route moved, the old version draining", func() bool {
			target := w.routeTarget()
			return target != "" && target != before && !w.finished(id)
		})
		select {
		case err := <-slow:
			w.t.Fatalf("the slow request ended before the kill: %v", err)
		default:
		}
		w.t.Cleanup(func() {
			if err := <-slow; err != nil {
				w.t.Errorf("the request in flight while serve was killed draining: %v", err)
			}
		})
		return sha, nil
	},
	deploy.StepCleanup: func(w *world, cut *deploytest.DockerCut, v string) (string, func()) {
		// The previous container's removal, the first removal of the update
		// once it is checking health (a few seconds to listen).
		sha := w.push(gittest.Behaviour{Version: v, StartDelay: 3 * time.Second})
		id := w.deploymentOf(sha)
		w.waitStep(id, deploy.StepHealth)
		w.awaitHeld(cut.HoldAt(requestTo("DELETE ", "/containers/")), id)
		if !w.finished(id) {
			w.t.Fatalf("deployment %d removes a container before it ended", id)
		}
		return sha, cut.Drop
	},
	stepReporting: func(w *world, _ *deploytest.DockerCut, v string) (string, func()) {
		// GitHub takes the update's statuses but does not answer: the
		// outbox keeps them to send until it hears back.
		sha := w.commit(gittest.Behaviour{Version: v})
		remove := w.GitHub.Inject(githubtest.Fault{PathPrefix: "/repos/" + w.repo + "/statuses/" + sha, Stall: 5 * time.Minute})
		if d := w.hooks.deliver("push", w.Repo.PushEvent("main", sha, "alice")); d.Code != 202 {
			w.t.Fatalf("push of %s answered %d", sha[:7], d.Code)
		}
		id := w.deploymentOf(sha)
		await(w.t, 3*time.Minute, "the update ended, its statuses not acknowledged", func() bool {
			return w.finished(id) && w.outboxPending() > 0
		})
		return sha, remove
	},
}

// TestKillServeDuringUpdate SIGKILLs `keystone serve` at each step of an
// update in turn (killSteps), one update per step, restarting it each
// time, with a client sending requests for the app through the router
// throughout: no request fails, each update completes after the restart
// and answers, one container serves, nothing is pending or orphaned.
func TestKillServeDuringUpdate(t *testing.T) {
	var cut *deploytest.DockerCut
	w := newWorld(t, "kill-serve", "SIGKILL keystone serve at each step of an update", withDockerCut(&cut))
	_, host, l := w.serveV1(40)
	var hit, missed []string
	for i, step := range killSteps() {
		land, ok := landings[step]
		switch {
		case !ok:
			t.Fatalf("no landing for step %q: say how to kill serve at it", step)
		case land == nil:
			missed = append(missed, step)
			continue
		}
		v := fmt.Sprintf("v%d", i+2)
		began := time.Now()
		sha, undo := land(w, cut, v)
		if undo != nil {
			w.killAndRestart(undo)
		} else {
			w.killAndRestart()
		}
		id := w.deploymentOf(sha)
		if st := w.finalStatus(sha, 5*time.Minute); !strings.HasPrefix(st, "success") {
			t.Fatalf("%s after a kill at %s: %s\n%s", v, step, st, strings.Join(w.Log(t, id), "\n"))
		}
		w.routed(host, v, time.Minute)
		hit = append(hit, step)
		t.Logf("killed at %s: %s deployed, %.1fs", step, v, time.Since(began).Seconds())
		if !l.seenVersion(v) {
			before := l.answered()
			await(t, 30*time.Second, "answers of "+v, func() bool { return l.answered() > before+10 })
		}
	}
	sent, failed := l.finishWithoutFailures(t, "")
	w.settled()
	if n := len(w.Containers(t, "io.keystone.app="+w.repo+"/web")); n != 1 {
		t.Errorf("%d containers of web, want 1", n)
	}
	w.row.Faults = fmt.Sprintf("SIGKILL keystone serve at %s (not hit: %s)", strings.Join(hit, ", "), strings.Join(missed, ", "))
	t.Logf("load: %d sent, %d failed, by version %v; killed at %v, not at %v", sent, failed, l.seen, hit, missed)
}

// requestTo matches a Docker API request by its method and a part of its
// request line.
func requestTo(method, part string) func([]byte) bool {
	return func(p []byte) bool {
		line, _, _ := bytes.Cut(p, []byte("\r\n"))
		return bytes.HasPrefix(line, []byte(method)) && bytes.Contains(line, []byte(part))
	}
}

// pushHeld pushes v with Docker request match held and returns once the
// update is held there, at step.
func (w *world) pushHeld(cut *deploytest.DockerCut, v, step string, match func([]byte) bool) string {
	w.t.Helper()
	held := cut.HoldAt(match)
	sha := w.push(gittest.Behaviour{Version: v})
	id := w.deploymentOf(sha)
	w.awaitHeld(held, id)
	w.waitStep(id, step)
	return sha
}

// awaitHeld waits for a held Docker request of deployment id.
func (w *world) awaitHeld(held <-chan struct{}, id int64) {
	w.t.Helper()
	select {
	case <-held:
	case <-time.After(3 * time.Minute):
		w.t.Fatalf("deployment %d never made the request held:\n%s", id, strings.Join(w.Log(w.t, id), "\n"))
	}
}

// awaitLog waits for a line of deployment id's log to contain s.
func (w *world) awaitLog(id int64, s string) {
	w.t.Helper()
	await(w.t, 2*time.Minute, fmt.Sprintf("deployment %d's log saying %q", id, s), func() bool {
		return strings.Contains(strings.Join(w.Log(w.t, id), "\n"), s)
	})
}

// waitState waits until deployment id is in state.
func (w *world) waitState(id int64, state string) {
	w.t.Helper()
	await(w.t, time.Minute, fmt.Sprintf("deployment %d %s", id, state), func() bool {
		var s string
		err := w.Store.Pool().QueryRow(context.Background(), `SELECT state FROM deployments WHERE id = $1`, id).Scan(&s)
		return err == nil && s == state
	})
}

// outboxPending is how many GitHub calls wait in the outbox.
func (w *world) outboxPending() int {
	var n int
	if err := w.Store.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM github_outbox WHERE state = 'pending'`).Scan(&n); err != nil {
		w.t.Errorf("outbox: %v", err)
	}
	return n
}

// routeTarget is where the router sends app web's requests now.
func (w *world) routeTarget() string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	routes, err := w.proxy.client.Routes(ctx)
	if err != nil {
		w.t.Fatalf("list routes: %v", err)
	}
	service := deploy.RouteService(w.App(w.t, "web"))
	for _, r := range routes {
		if r.Service == service {
			return r.Target
		}
	}
	return ""
}

// slowRequest asks the serving version through the router for an answer
// that takes d, and sends nil on the channel when it got one.
func (w *world) slowRequest(d time.Duration) <-chan error {
	host, addr := w.host(), w.proxy.addr
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/slow?for="+d.String(), nil)
		req.Host = host
		resp, err := (&http.Client{Timeout: d + time.Minute}).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("answered %s", resp.Status)
			}
		}
		done <- err
	}()
	return done
}
