package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/store"
)

// benchEnv is newEnv for benchmarks.
func benchEnv(b *testing.B) *env {
	b.Helper()
	return newEnvTB(b)
}

// BenchmarkEnqueueStatus is the cost an outbox entry adds to the
// transaction of the change it reports (key lock, last-entry check, insert,
// notify), one transaction each.
func BenchmarkEnqueueStatus(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		err := e.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
			_, err := outbox.EnqueueStatus(ctx, q, target, status(shaA, "pending", fmt.Sprintf("step %d", i)))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendStatuses is how fast the dispatcher sends one
// installation's statuses to an in-process fake GitHub (entries/s), its
// requests serial as GitHub asks.
func BenchmarkSendStatuses(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	err := e.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		for i := range b.N {
			sha := fmt.Sprintf("%040x", i%10)
			if _, err := outbox.EnqueueStatus(ctx, q, target, status(sha, "pending", fmt.Sprintf("step %d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	outboxtest.Start(b, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(b, e.st, 10*time.Minute)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
}
