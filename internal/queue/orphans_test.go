package queue_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/testlog"
)

// TestOrphanRescue: a job left running by a dead process is cancelled and
// replaced at once by a job with its arguments and the attempts it had left
// (none when it died in its last attempt); a live process's job is left
// alone; a second pass, here or in another process, replaces nothing again.
// Rescue goes through River's API: the state of River's rows is read back to
// check what River will do with them.
func TestOrphanRescue(t *testing.T) {
	st, client := storeAndJobs(t)
	// River has no API to make a job running without working it in this
	// process: the rows are set as a process that died would leave them.
	insert := func(owner string, delivery int64, attempt int) int64 {
		res, err := client.Insert(t.Context(), queue.PushArgs{DeliveryID: delivery}, &river.InsertOpts{MaxAttempts: 3, Queue: queue.QueueIntake})
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
	dead := insert("keystone_dead_1", 11, 1)
	deadOutOfAttempts := insert("keystone_dead_1", 12, 3)
	live := insert("keystone_live_1", 13, 1)

	var logs testlog.Buffer
	rescuer := &queue.OrphanRescuer{Store: st, Jobs: client, ProcessID: "keystone_live_1",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	release, err := rescuer.HoldLiveness(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	rescued, err := rescuer.Rescue(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]queue.RescuedJob{}
	for _, r := range rescued {
		byID[r.ID] = r
	}
	if len(rescued) != 2 || byID[dead].Replacement == 0 || byID[deadOutOfAttempts].ID == 0 || byID[deadOutOfAttempts].Replacement != 0 {
		t.Fatalf("rescued %+v, want job %d replaced and job %d cancelled only", rescued, dead, deadOutOfAttempts)
	}
	for _, id := range []int64{dead, deadOutOfAttempts} {
		j, err := client.JobGet(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(j.Metadata), "cancel_attempted_at") {
			t.Errorf("job %d of the dead process: metadata %s, want it marked for cancellation", id, j.Metadata)
		}
	}
	repl, err := client.JobGet(t.Context(), byID[dead].Replacement)
	if err != nil {
		t.Fatal(err)
	}
	var args queue.PushArgs
	if err := json.Unmarshal(repl.EncodedArgs, &args); err != nil || repl.State != rivertype.JobStateAvailable || repl.Kind != "push" ||
		args.DeliveryID != 11 || repl.Queue != queue.QueueIntake || repl.MaxAttempts != 2 {
		t.Errorf("replacement: state %s kind %s args %s queue %s max attempts %d, want available push of delivery 11 on %s with 2",
			repl.State, repl.Kind, repl.EncodedArgs, repl.Queue, repl.MaxAttempts, queue.QueueIntake)
	}
	if a, m := queue.Attempts(repl); a != 1 || m != 3 {
		t.Errorf("replacement counts attempts %d of %d, want 1 of 3 (its first is the job's second)", a, m)
	}
	if got, err := client.JobGet(t.Context(), live); err != nil || got.State != rivertype.JobStateRunning || strings.Contains(string(got.Metadata), "cancel") {
		t.Fatalf("the live process's job: %+v (%v), want running, untouched", got, err)
	}

	// Nothing is rescued twice, by this process or another.
	other := &queue.OrphanRescuer{Store: st, Jobs: client, ProcessID: "keystone_other_1", Logger: rescuer.Logger}
	for _, r := range []*queue.OrphanRescuer{rescuer, other} {
		if again, err := r.Rescue(t.Context()); err != nil || len(again) != 0 {
			t.Fatalf("second pass by %s rescued %+v (%v), want nothing", r.ProcessID, again, err)
		}
	}

	// A process never rescues its own jobs, even without its lock; once it
	// is gone, another process does.
	release()
	if own, err := rescuer.Rescue(t.Context()); err != nil || len(own) != 0 {
		t.Fatalf("own job after the lock's release: rescued %+v (%v), want nothing", own, err)
	}
	other.RescueOnce(t.Context())
	if done, err := st.RescuedJobs(t.Context(), []int64{live}); err != nil || !done[live] {
		t.Fatalf("job %d of the stopped process: rescued %v (%v), want it", live, done, err)
	}
	if want := fmt.Sprintf(`msg="job of a dead process rescued" job_id=%d`, live); !strings.Contains(logs.String(), want) {
		t.Errorf("the rescue is not logged (%q):\n%s", want, logs.String())
	}

	// A rescue is forgotten once River has finalized its job (as River's own
	// rescuer does, later) and it is old; kept while the job still runs or
	// while it is recent.
	finalize := func(id int64) {
		if _, err := st.Pool().Exec(t.Context(), `UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	finalize(dead)
	finalize(live)
	if _, err := st.Pool().Exec(t.Context(), `UPDATE job_rescues SET rescued_at = now() - interval '1 hour' WHERE job_id = ANY($1)`,
		[]int64{dead, deadOutOfAttempts}); err != nil {
		t.Fatal(err)
	}
	if again, err := other.Rescue(t.Context()); err != nil || len(again) != 0 {
		t.Fatalf("pass after the finalization rescued %+v (%v), want nothing", again, err)
	}
	kept, err := st.RescuedJobs(t.Context(), []int64{dead, deadOutOfAttempts, live})
	if err != nil {
		t.Fatal(err)
	}
	if kept[dead] || !kept[deadOutOfAttempts] || !kept[live] {
		t.Errorf("rescues kept %v: want job %d (finalized, old) forgotten, %d (still running) and %d (recent) kept",
			kept, dead, deadOutOfAttempts, live)
	}
}

// When the liveness lock's connection is killed (pg_terminate_backend), the
// process takes its lock again, so other processes do not take its running
// jobs for orphans; and its own rescuer never re-queues them meanwhile.
func TestLivenessLockRetakenAfterItsConnectionDies(t *testing.T) {
	st, client := storeAndJobs(t)
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
	rescuer := &queue.OrphanRescuer{Store: st, Jobs: client, ProcessID: self, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
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

	// With or without its lock, never its own job.
	if got, err := rescuer.Rescue(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("own job after the lock's loss: rescued %+v (%v), want nothing", got, err)
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
	other := &queue.OrphanRescuer{Store: st, Jobs: client, ProcessID: "keystone_other_1", Logger: rescuer.Logger}
	if got, err := other.Rescue(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("job of the live process: rescued by another %+v (%v), want nothing", got, err)
	}
	if j, err := client.JobGet(t.Context(), res.Job.ID); err != nil || j.State != rivertype.JobStateRunning {
		t.Fatalf("job of the live process: %+v (%v), want running", j, err)
	}
	if !strings.Contains(logs.String(), "process liveness lock lost") || !strings.Contains(logs.String(), "taken again") {
		t.Errorf("the loss and recovery are not logged:\n%s", logs.String())
	}
}

// storeAndJobs opens a fresh database and a job client on it that inserts
// and lists only (no workers run).
func storeAndJobs(t *testing.T) (*store.Store, *river.Client[pgx.Tx]) {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	client, err := queue.NewClient(st.Pool(), nil, queue.Config{DeployWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	return st, client
}
