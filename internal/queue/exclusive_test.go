package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// overlapWorker records, per app, how many of its jobs run at the same moment.
type overlapWorker struct {
	river.WorkerDefaults[queue.DeployArgs]
	mu          sync.Mutex
	running     map[int64]int
	maxPerApp   int
	runningAll  int
	maxAll      int
	done        int
	hold        time.Duration
	allFinished chan struct{}
	total       int
}

func (w *overlapWorker) Work(ctx context.Context, job *river.Job[queue.DeployArgs]) error {
	app := job.Args.AppID
	w.mu.Lock()
	w.running[app]++
	w.runningAll++
	w.maxPerApp = max(w.maxPerApp, w.running[app])
	w.maxAll = max(w.maxAll, w.runningAll)
	w.mu.Unlock()

	select { // the job's work: long enough for others to try to overlap it
	case <-time.After(w.hold):
	case <-ctx.Done():
		return ctx.Err()
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.running[app]--
	w.runningAll--
	w.done++
	if w.done == w.total {
		close(w.allFinished)
	}
	return nil
}

// runTwoProcesses works jobsPerApp jobs of each of apps apps with two River
// clients on one database, as two Keystone processes would, and returns the
// worker's observations.
func runTwoProcesses(t *testing.T, exclusive bool, apps, jobsPerApp int) *overlapWorker {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w := &overlapWorker{running: map[int64]int{}, hold: 150 * time.Millisecond,
		allFinished: make(chan struct{}), total: apps * jobsPerApp}

	clients := make([]*river.Client[pgx.Tx], 2)
	for i := range clients {
		workers := river.NewWorkers()
		var worker river.Worker[queue.DeployArgs] = w
		if exclusive {
			worker = queue.Exclusive(st, worker, 200*time.Millisecond)
		}
		river.AddWorker(workers, worker)
		c, err := queue.NewClient(st.Pool(), workers, queue.Config{
			DeployWorkers: 4, FetchPollInterval: 50 * time.Millisecond, ID: fmt.Sprintf("process-%d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	var params []river.InsertManyParams
	for j := range jobsPerApp {
		for a := 1; a <= apps; a++ {
			params = append(params, river.InsertManyParams{Args: queue.DeployArgs{DeploymentID: int64(j), AppID: int64(a)}})
		}
	}
	if _, err := clients[0].InsertMany(t.Context(), params); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Stop(ctx)
		})
	}
	select {
	case <-w.allFinished:
	case <-time.After(90 * time.Second):
		t.Fatalf("only %d of %d jobs finished", w.done, w.total)
	}
	return w
}

func TestExclusiveRunsOneJobPerAppAcrossProcesses(t *testing.T) {
	w := runTwoProcesses(t, true, 3, 4)
	if w.maxPerApp != 1 {
		t.Fatalf("up to %d jobs of one app ran at once, want 1", w.maxPerApp)
	}
	if w.maxAll < 2 {
		t.Fatalf("at most %d jobs ran at once: different apps should run in parallel", w.maxAll)
	}
}

// TestWithoutExclusiveJobsOfOneAppOverlap shows the test above can fail: the
// same load without the lock runs jobs of one app together.
func TestWithoutExclusiveJobsOfOneAppOverlap(t *testing.T) {
	w := runTwoProcesses(t, false, 1, 6)
	if w.maxPerApp < 2 {
		t.Fatalf("jobs of one app never overlapped without the lock (max %d)", w.maxPerApp)
	}
}

func TestTryLockAppReleases(t *testing.T) {
	st := storetest.New(t)
	ctx := t.Context()
	_, release, ok, err := st.TryLockApp(ctx, 77)
	if err != nil || !ok {
		t.Fatalf("first lock: ok=%v err=%v", ok, err)
	}
	if held, err := st.AppLocked(ctx, 77); err != nil || !held {
		t.Fatalf("AppLocked while held = %v, %v", held, err)
	}
	if _, _, ok, err := st.TryLockApp(ctx, 77); err != nil || ok {
		t.Fatalf("second lock while held: ok=%v err=%v", ok, err)
	}
	release()
	if held, err := st.AppLocked(ctx, 77); err != nil || held {
		t.Fatalf("AppLocked after release = %v, %v", held, err)
	}
	_, release2, ok, err := st.TryLockApp(ctx, 77)
	if err != nil || !ok {
		t.Fatalf("lock after release: ok=%v err=%v", ok, err)
	}
	release2()
}

// terminateHolder kills the database session holding the advisory lock
// (class, key), as an operator's pg_terminate_backend or a dropped network
// connection would, and returns its pid.
func terminateHolder(t *testing.T, st *store.Store, class, key int64) int {
	t.Helper()
	var pid int
	err := st.Pool().QueryRow(t.Context(), `
		SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = $1
		  AND objid::bigint = ($2::bigint & 4294967295) AND objsubid = 2 AND granted`, class, key).Scan(&pid)
	if err != nil {
		t.Fatalf("find the lock's session: %v", err)
	}
	var ok bool
	if err := st.Pool().QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	return pid
}

// A job whose app lock's connection is killed mid-job is stopped (its
// context ends with ErrLockLost) instead of running on unguarded while
// another job of the app may start.
func TestAppLockLostStopsTheJob(t *testing.T) {
	st := storetest.New(t)
	held, release, ok, err := st.TryLockApp(t.Context(), 78)
	if err != nil || !ok {
		t.Fatalf("lock: ok=%v err=%v", ok, err)
	}
	defer release()
	terminateHolder(t, st, 0x4b53, 78)
	select {
	case <-held.Done():
	case <-time.After(10 * store.LockCheckInterval):
		t.Fatal("the lock's context did not end after its connection was killed")
	}
	if cause := context.Cause(held); !errors.Is(cause, store.ErrLockLost) {
		t.Fatalf("cause %v, want ErrLockLost", cause)
	}
	// The lock is free for the next job.
	_, release2, ok, err := st.TryLockApp(t.Context(), 78)
	if err != nil || !ok {
		t.Fatalf("lock after the loss: ok=%v err=%v", ok, err)
	}
	release2()
}
