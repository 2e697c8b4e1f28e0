package store_test

import (
	"sync"
	"testing"

	"github.com/keystone-app/keystone/internal/audit"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// BenchmarkAppendAudit measures chained appends from concurrent writers, each
// its own transaction: the chain head serialises them, so this is the audit
// trail's ceiling. Run: go test -run '^$' -bench AppendAudit ./internal/store
func BenchmarkAppendAudit(b *testing.B) {
	st, err := store.Open(b.Context(), storetest.Fresh(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := store.AuditEvent{Actor: "alice", Action: store.AuditDeployRequested, Target: "acme/web/api",
		Details: map[string]any{"sha": "0123456789abcdef0123456789abcdef01234567", "kind": "update", "n": 1}}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := st.AppendAudit(b.Context(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerify walks a trail of 2000 events (one op = one whole walk).
// Run: go test -run '^$' -bench Verify ./internal/store
func BenchmarkVerify(b *testing.B) {
	st, err := store.Open(b.Context(), storetest.Fresh(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const events = 2000
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range events / 4 {
				err := st.AppendAudit(b.Context(), store.AuditEvent{Actor: "alice", Action: store.AuditCommandAccepted,
					Target: "acme/web/api", Details: map[string]any{"writer": w, "i": i, "command": "rollback"}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		rep, err := audit.Verify(b.Context(), st)
		if err != nil || rep.Checked != events {
			b.Fatalf("verify: %+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
