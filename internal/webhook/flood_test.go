package webhook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// zeros is an endless reader of zero bytes: request bodies that the test
// itself does not hold in memory.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestUnsignedBodyFloodIsBoundedInMemory performs the flood of issue 12
// item 2: bodies of 20 MiB posted at once with no valid signature. The
// handler must not buffer them all before checking the signature: what it
// holds unverified stays within its budget (64 MiB by default). A signed
// delivery still gets in afterwards.
func TestUnsignedBodyFloodIsBoundedInMemory(t *testing.T) {
	b := setup(t)
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
	const flood, size = 8, 20 << 20
	codes := make([]int, flood)
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/webhooks/github", io.LimitReader(zeros{}, size))
			req.ContentLength = size
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", "flood")
			req.Header.Set("X-Hub-Signature-256", "sha256=00")
			rec := httptest.NewRecorder()
			b.router.ServeHTTP(rec, req)
			codes[i] = rec.Code
		})
	}
	wg.Wait()
	close(done)
	top := <-peak
	used := (top - min(top, base.HeapInuse)) >> 20
	t.Logf("peak heap above the start: %d MiB for %d unsigned bodies of %d MiB at once; answers %v", used, flood, size>>20, codes)
	if used > 64+50 {
		t.Fatalf("peak heap grew by %d MiB, want at most the 64 MiB budget and 50 MiB of garbage not yet collected", used)
	}
	for _, c := range codes {
		if c != http.StatusUnauthorized && c != http.StatusServiceUnavailable {
			t.Errorf("an unsigned body answered %d, want 401 or 503", c)
		}
	}
	if rec := b.deliver(t, "issue_comment", "after-flood", withComment(t, "/keystone help"), nil); rec.Code != http.StatusAccepted {
		t.Fatalf("a signed delivery after the flood: %d %s", rec.Code, rec.Body)
	}
}
