package queue_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/testlog"
)

// TestOrphanRescue: a job left running by a dead process is made available at
// once (or discarded when out of attempts); a live process's job is left alone.
func TestOrphanRescue(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	client, err := queue.NewClient(st.Pool(), nil, queue.Config{DeployWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	insert := func(owner string, attempt int) int64 {
		res, err := client.Insert(t.Context(), queue.PushArgs{DeliveryID: 1}, &river.InsertOpts{MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Pool().Exec(t.Context(), `UPDATE river_job SET state = 'running', attempt = $2,
			attempted_by = ARRAY[$3], attempted_at = now() - interval '1 minute' WHERE id = $1`,
			res.Job.ID, attempt, owner)
		if err != nil {
			t.Fatal(err)
		}
		return res.Job.ID
	}
	dead := insert("keystone_dead_1", 1)
	deadOutOfAttempts := insert("keystone_dead_1", 3)
	live := insert("keystone_live_1", 1)

	rescuer := &queue.OrphanRescuer{Store: st, ProcessID: "keystone_live_1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	release, err := rescuer.HoldLiveness(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	rescuer.RescueOnce(t.Context())

	want := map[int64]string{dead: "available", deadOutOfAttempts: "discarded", live: "running"}
	for id, state := range want {
		var got string
		if err := st.Pool().QueryRow(t.Context(), `SELECT state FROM river_job WHERE id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != state {
			t.Errorf("job %d: state %s, want %s", id, got, state)
		}
	}

	// A process never rescues its own jobs, even without its lock.
	release()
	rescuer.RescueOnce(t.Context())
	var got string
	if err := st.Pool().QueryRow(t.Context(), `SELECT state FROM river_job WHERE id = $1`, live).Scan(&got); err != nil || got != "running" {
		t.Fatalf("own job after the lock's release: state %q, err %v, want running", got, err)
	}
	// Once the live process is gone, another process rescues its job.
	other := &queue.OrphanRescuer{Store: st, ProcessID: "keystone_other_1", Logger: rescuer.Logger}
	other.RescueOnce(t.Context())
	if err := st.Pool().QueryRow(t.Context(), `SELECT state FROM river_job WHERE id = $1`, live).Scan(&got); err != nil || got != "available" {
		t.Fatalf("job of the stopped process: state %q, err %v", got, err)
	}
}

// When the liveness lock's connection is killed (pg_terminate_backend), the
// process takes its lock again, so other processes do not take its running
// jobs for orphans; and its own rescuer never re-queues them meanwhile.
func TestLivenessLockRetakenAfterItsConnectionDies(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	client, err := queue.NewClient(st.Pool(), nil, queue.Config{DeployWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Insert(t.Context(), queue.PushArgs{DeliveryID: 1}, &river.InsertOpts{MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	const self = "keystone_self_1"
	if _, err := st.Pool().Exec(t.Context(), `UPDATE river_job SET state = 'running', attempt = 1,
		attempted_by = ARRAY[$2], attempted_at = now() - interval '1 minute' WHERE id = $1`, res.Job.ID, self); err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	rescuer := &queue.OrphanRescuer{Store: st, ProcessID: self, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	release, err := rescuer.HoldLiveness(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var key int64
	if err := st.Pool().QueryRow(t.Context(), `SELECT hashtext($1)`, self).Scan(&key); err != nil {
		t.Fatal(err)
	}
	killed := terminateHolder(t, st, 0x4b50, key)

	rescuer.RescueOnce(t.Context()) // with or without its lock, never its own job
	jobState := func() string {
		var got string
		if err := st.Pool().QueryRow(t.Context(), `SELECT state FROM river_job WHERE id = $1`, res.Job.ID).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := jobState(); got != "running" {
		t.Fatalf("own job after the lock's loss: %s, want running", got)
	}
	deadline := time.Now().Add(20 * store.LockCheckInterval)
	for {
		var pid int
		err := st.Pool().QueryRow(t.Context(), `
			SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = $1
			  AND objid::bigint = ($2::bigint & 4294967295) AND objsubid = 2 AND granted`, 0x4b50, key).Scan(&pid)
		if err == nil && pid != killed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the liveness lock was not taken again (last: pid %d, %v)\n%s", pid, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	other := &queue.OrphanRescuer{Store: st, ProcessID: "keystone_other_1", Logger: rescuer.Logger}
	other.RescueOnce(t.Context())
	if got := jobState(); got != "running" {
		t.Fatalf("job of the live process after another's rescue: %s, want running", got)
	}
	if !strings.Contains(logs.String(), "process liveness lock lost") || !strings.Contains(logs.String(), "taken again") {
		t.Errorf("the loss and recovery are not logged:\n%s", logs.String())
	}
}
