package queue_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
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

	// Once the live process is gone, its job is rescued too.
	release()
	rescuer.RescueOnce(t.Context())
	var got string
	if err := st.Pool().QueryRow(t.Context(), `SELECT state FROM river_job WHERE id = $1`, live).Scan(&got); err != nil || got != "available" {
		t.Fatalf("job of the stopped process: state %q, err %v", got, err)
	}
}
