package users_test

import (
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/users"
)

// TestAuthenticateFloodIsBoundedInMemory: 16 sign-ins at once, each an
// argon2id of 19 MiB, must not take 16 × 19 MiB: hashing runs at most
// users.MaxConcurrentHashes at a time (issue 12 item 2). The peak heap is
// sampled while they run.
func TestAuthenticateFloodIsBoundedInMemory(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir, err := users.NewDirectory(st, users.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Add(t.Context(), "test", users.NewUser{Name: "vic", Role: store.RoleViewer, Password: "right"}); err != nil {
		t.Fatal(err)
	}
	// Collect garbage early, so the heap measures what is live: the hashes
	// running at once.
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var m runtime.MemStats
		var top uint64
		for {
			runtime.ReadMemStats(&m)
			top = max(top, m.HeapInuse)
			select {
			case <-done:
				peak <- top
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	const flood = 16
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			name := "vic"
			if i%2 == 1 {
				name = "nobody" // the decoy hash costs the same
			}
			if _, err := dir.Authenticate(t.Context(), name, "wrong"); err == nil {
				t.Error("a wrong password was accepted")
			}
		})
	}
	wg.Wait()
	close(done)
	top := <-peak
	used := (top - min(top, base.HeapInuse)) >> 20
	// The running ones, and garbage of up to four more that a collector
	// starved by a loaded machine has not freed yet: still far below the
	// 16 × 19 MiB of an unbounded flood (285 MiB measured before the cap).
	limit := uint64((users.MaxConcurrentHashes+4)*19 + 40)
	t.Logf("peak heap above the start: %d MiB for %d sign-ins at once (limit %d MiB)", used, flood, limit)
	if used > limit {
		t.Fatalf("peak heap grew by %d MiB during %d concurrent sign-ins, want at most %d MiB", used, flood, limit)
	}
}
