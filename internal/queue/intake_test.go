package queue_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/webhook"
)

// TestIntakeGroupCommit: many deliveries recorded at once, each twice, are
// committed in shared batches yet each is stored once with one job, and every
// repeat is reported as a duplicate.
func TestIntakeGroupCommit(t *testing.T) {
	st, jobs := storeAndJobs(t)
	intake := queue.NewIntake(st, jobs)
	defer intake.Close()

	const distinct = 60
	var mu sync.Mutex
	accepted, duplicates := 0, 0
	var wg sync.WaitGroup
	for i := range distinct * 2 {
		wg.Go(func() {
			n, err := intake.Record(t.Context(), webhook.Delivery{
				GUID: fmt.Sprintf("batch-%d", i%distinct), Event: "push", InstallationID: 1,
				Repository: "o/r", Payload: []byte(`{}`),
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, webhook.ErrDuplicate):
				duplicates++
			case err != nil:
				t.Errorf("record: %v", err)
			case n != 1:
				t.Errorf("record enqueued %d jobs, want 1", n)
			default:
				accepted++
			}
		})
	}
	wg.Wait()
	if accepted != distinct || duplicates != distinct {
		t.Fatalf("accepted %d, duplicates %d; want %d each", accepted, duplicates, distinct)
	}
	var rows, jobRows int
	if err := st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM webhook_deliveries`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM river_job WHERE kind = 'push'`).Scan(&jobRows); err != nil {
		t.Fatal(err)
	}
	if rows != distinct || jobRows != distinct {
		t.Fatalf("%d deliveries and %d jobs stored, want %d each", rows, jobRows, distinct)
	}
}

func TestIntakeClosedRefuses(t *testing.T) {
	st := storetest.New(t)
	jobs, err := queue.NewClient(st.Pool(), nil, queue.Config{DeployWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	intake := queue.NewIntake(st, jobs)
	intake.Close()
	if _, err := intake.Record(t.Context(), webhook.Delivery{GUID: "closed-1", Event: "push"}); !errors.Is(err, queue.ErrIntakeClosed) {
		t.Fatalf("err = %v, want ErrIntakeClosed", err)
	}
}
