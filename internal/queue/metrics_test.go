package queue_test

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/testlog"
)

// TestJobsGauge: keystone_jobs counts waiting and running jobs by kind and
// state, listed through River's API, and tells a dead process's rescued job
// (running in River's eyes until River finalizes it) from a running one.
func TestJobsGauge(t *testing.T) {
	st, client := storeAndJobs(t)
	var ids []int64
	for i := range 3 {
		res, err := client.Insert(t.Context(), queue.PushArgs{DeliveryID: int64(i + 1)}, &river.InsertOpts{MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Job.ID)
	}
	// Job 0 runs in a live process (this one), job 1 in a dead one; job 2
	// waits. River has no API to make a job running without working it.
	for i, owner := range []string{"keystone_live_1", "keystone_dead_1"} {
		if _, err := st.Pool().Exec(t.Context(), `UPDATE river_job SET state = 'running', attempt = 1,
			attempted_by = ARRAY[$2], attempted_at = now() - interval '1 minute' WHERE id = $1`, ids[i], owner); err != nil {
			t.Fatal(err)
		}
	}
	var logs testlog.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	rescuer := &queue.OrphanRescuer{Store: st, Jobs: client, ProcessID: "keystone_live_1", Logger: logger}
	if _, err := rescuer.Rescue(t.Context()); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(queue.NewJobsCollector(client, st, logger))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[f.GetName()+"{"+labels["kind"]+","+labels["state"]+"}"] = m.GetGauge().GetValue()
		}
	}
	// The replacement of the dead process's job waits beside job 2.
	want := map[string]float64{"keystone_jobs{push,running}": 1, "keystone_jobs{push,rescued}": 1, "keystone_jobs{push,available}": 2}
	if len(got) != len(want) {
		t.Errorf("keystone_jobs = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
