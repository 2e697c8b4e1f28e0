//go:build faults

package faults_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/gittest"
)

// postgres stops or starts the suite's PostgreSQL (scripts/pg.sh on
// KEYSTONE_FAULTS_PGDIR, which scripts/faults.sh sets).
func postgres(t *testing.T, action string) {
	t.Helper()
	dir := os.Getenv("KEYSTONE_FAULTS_PGDIR")
	if dir == "" {
		t.Fatal("KEYSTONE_FAULTS_PGDIR is not set: run the suite with make faults, which starts its own PostgreSQL")
	}
	args := []string{action, dir}
	if action == "start" {
		args = append(args, "test")
	}
	if out, err := exec.Command("../../scripts/pg.sh", args...).CombinedOutput(); err != nil {
		t.Fatalf("pg.sh %s: %v\n%s", action, err, out)
	}
}

// TestPostgresStoppedDuringIntake stops PostgreSQL for ~10 s while pushes
// arrive and an update runs. While it is down deliveries are answered 503,
// never 2xx; each one acknowledged is stored and processed once it is back;
// the refused ones, sent again as GitHub would, are taken; the same
// `keystone serve` deploys the newest push, and the app answers through
// the router throughout.
func TestPostgresStoppedDuringIntake(t *testing.T) {
	w := newWorld(t, "postgres-down", "PostgreSQL stopped ~10 s during intake and an update")
	_, host, l := w.serveV1(40)

	// An update is under way, and pushes keep coming, when PostgreSQL stops.
	w.push(gittest.Behaviour{Version: "v2", BuildStep: true, BuildSleep: 3 * time.Second})
	postgres(t, "stop")
	stopped := time.Now()
	var during []delivery
	for i := 3; time.Since(stopped) < 10*time.Second || len(during) < 3; i++ {
		sha := w.commit(gittest.Behaviour{Version: fmt.Sprintf("v%d", i)})
		d := w.hooks.deliver("push", w.Repo.PushEvent("main", sha, "alice"))
		during = append(during, d)
		if d.Code/100 == 2 {
			t.Errorf("push of %s answered %d %s while PostgreSQL was down", sha[:7], d.Code, d.Status)
		} else if d.Code != http.StatusServiceUnavailable {
			t.Errorf("push of %s answered %d %s while PostgreSQL was down, want 503", sha[:7], d.Code, d.Status)
		}
		time.Sleep(time.Second) // pace the pushes over the outage
	}
	postgres(t, "start")
	t.Logf("PostgreSQL down %.1fs, %d pushes refused meanwhile", time.Since(stopped).Seconds(), len(during))

	// GitHub's redelivery of the refused deliveries (same GUIDs), then a
	// newest push: all taken by the same process.
	for _, d := range during {
		var again delivery
		await(t, time.Minute, "the redelivery of "+d.GUID+" taken", func() bool {
			w.hooks.mu.Lock()
			body := w.hooks.bodies[d.GUID]
			w.hooks.mu.Unlock()
			again = w.hooks.send(d.GUID, "push", body, signed(body))
			return again.Code == http.StatusAccepted || again.Status == "duplicate"
		})
	}
	last := w.push(gittest.Behaviour{Version: "last"})
	if st := w.finalStatus(last, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("the push after the outage: %s", st)
	}
	w.routed(host, "last", time.Minute)
	before := l.answered()
	await(t, 30*time.Second, "answers after the outage", func() bool { return l.answered() > before+20 })
	l.finishWithoutFailures(t, "")
	w.settled()
	var stored int
	if err := w.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want := len(during) + 3; stored != want {
		t.Errorf("%d deliveries stored, want %d (each push once)", stored, want)
	}
	w.row.Faults += fmt.Sprintf(" (%d deliveries refused 503 while down, all taken when sent again)", len(during))
}

// TestPushBurst sends 10 pushes to one app within 5 s: the app ends on the
// newest commit, the overtaken pushes end superseded (or deployed, when one
// finished before the next came), no two deployments of the app ever run
// at once, and every delivery is stored once.
func TestPushBurst(t *testing.T) {
	w := newWorld(t, "burst", "10 pushes in 5 s to one app")
	v0 := w.push(gittest.Behaviour{Version: "v0"})
	if st := w.finalStatus(v0, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v0: %s", st)
	}
	host := w.host()
	l := w.startLoad(host, 20)
	var shas []string
	for i := 1; i <= 10; i++ {
		shas = append(shas, w.push(gittest.Behaviour{Version: fmt.Sprintf("v%d", i)}))
		time.Sleep(500 * time.Millisecond) // the burst's pace: 10 in 5 s
	}
	newest := shas[len(shas)-1]
	superseded := 0
	for _, sha := range shas {
		st := w.finalStatus(sha, 5*time.Minute)
		switch {
		case sha == newest:
			if !strings.HasPrefix(st, "success") {
				t.Errorf("the newest push %s: %s", sha[:7], st)
			}
		case strings.HasPrefix(st, "error Not deployed: superseded by "):
			superseded++
		case !strings.HasPrefix(st, "success"):
			t.Errorf("overtaken push %s: %q, want superseded or deployed", sha[:7], st)
		}
	}
	if superseded == 0 {
		t.Errorf("no push of the burst was superseded: the burst did not overtake anything")
	}
	w.routed(host, "v10", time.Minute)
	if app := w.App(t, "web"); w.deploymentSHA(app.CurrentDeploymentID) != newest {
		t.Errorf("web serves deployment %d, not the newest push %s", app.CurrentDeploymentID, newest[:7])
	}
	l.finishWithoutFailures(t, "")
	w.settled()
	w.noOverlap()
	var stored, guids int
	if err := w.Store.Pool().QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT guid) FROM webhook_deliveries WHERE event = 'push'`).Scan(&stored, &guids); err != nil {
		t.Fatal(err)
	}
	if stored != 11 || guids != 11 {
		t.Errorf("%d push deliveries stored (%d distinct), want 11", stored, guids)
	}
	w.row.Faults += fmt.Sprintf(" (%d superseded)", superseded)
}

// deploymentSHA is deployment id's commit.
func (w *world) deploymentSHA(id int64) string {
	w.t.Helper()
	var sha string
	if err := w.Store.Pool().QueryRow(context.Background(), `SELECT sha FROM deployments WHERE id = $1`, id).Scan(&sha); err != nil {
		w.t.Fatal(err)
	}
	return sha
}

// noOverlap fails the test if two deployments of one app ran at once
// (their started–finished spans overlap), superseded ones included: one
// overtaken after it started still held the app until it ended.
func (w *world) noOverlap() {
	w.t.Helper()
	var n int
	err := w.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM deployments a JOIN deployments b
		ON a.app_id = b.app_id AND a.id < b.id
		WHERE a.started_at IS NOT NULL AND b.started_at IS NOT NULL
		AND a.started_at < b.finished_at AND b.started_at < a.finished_at`).Scan(&n)
	if err != nil {
		w.t.Fatal(err)
	}
	if n != 0 {
		w.t.Errorf("%d pairs of deployments of one app ran at once", n)
	}
}
