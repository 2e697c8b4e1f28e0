package webhook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// countedBody is a request body of zero bytes, not held in memory by the
// test, that counts how many bodies are being read at the same moment.
type countedBody struct {
	left    int
	started bool
	reading *readingCount
}

type readingCount struct {
	mu       sync.Mutex
	now, top int
	started  int
	all      chan struct{} // closed once every body of the flood started
	flood    int
}

func (c *readingCount) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
	c.top = max(c.top, c.now)
	if d > 0 {
		if c.started++; c.started == c.flood {
			close(c.all)
		}
	}
}

// hold keeps a body that began being read waiting until the whole flood is
// being read, or a while: a handler without a budget then reads every body
// at once, while one with a budget leaves the rest waiting on it (a wait on
// a semaphore cannot be observed, hence the clock).
func (c *readingCount) hold() {
	select {
	case <-c.all:
	case <-time.After(300 * time.Millisecond):
	}
}

func (b *countedBody) Read(p []byte) (int, error) {
	if !b.started {
		b.started = true
		b.reading.add(1)
		b.reading.hold()
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), b.left)
	clear(p[:n])
	b.left -= n
	if b.left == 0 {
		b.reading.add(-1)
	}
	return n, nil
}

// TestUnsignedBodyFloodIsBoundedInMemory performs the flood of issue 12
// item 2: bodies of 20 MiB posted at once with no valid signature. The
// handler must not buffer them all before checking the signature: the bodies
// it reads at once fit its budget (64 MiB by default: three of 20 MiB), so
// what it holds unverified is bounded whatever the flood. (Counted, not
// measured on the heap: how much garbage the collector leaves depends on
// the machine's load, which made a heap bound flaky.) A signed delivery
// still gets in afterwards.
func TestUnsignedBodyFloodIsBoundedInMemory(t *testing.T) {
	b := setup(t)
	const flood, size, budget = 8, 20 << 20, 64 << 20
	reading := readingCount{flood: flood, all: make(chan struct{})}
	codes := make([]int, flood)
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/webhooks/github", &countedBody{left: size, reading: &reading})
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
	t.Logf("%d unsigned bodies of %d MiB posted at once: at most %d read at the same time; answers %v", flood, size>>20, reading.top, codes)
	if reading.top > budget/size {
		t.Fatalf("%d bodies were read at once, want at most %d (the 64 MiB budget)", reading.top, budget/size)
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
