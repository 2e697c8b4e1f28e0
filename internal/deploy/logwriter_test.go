package deploy

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
)

// gatedAppender stores appended lines; its first append waits for release,
// as a slow database would while the ticker's flush is storing lines.
type gatedAppender struct {
	entered, second, release chan struct{}
	mu                       sync.Mutex
	calls                    int
	lines                    []string
}

func (g *gatedAppender) AppendDeploymentLog(_ context.Context, _ int64, lines []string, _ store.LogLimit) (int, error) {
	g.mu.Lock()
	g.calls++
	call := g.calls
	g.mu.Unlock()
	switch call {
	case 1:
		close(g.entered)
		<-g.release
	case 2:
		close(g.second)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lines = append(g.lines, lines...)
	return len(lines), nil
}

func (g *gatedAppender) stored() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.lines)
}

// TestFlushWaitsForEarlierLines: a Flush (before a deployment is marked
// finished) returns only once every earlier line is stored, even while the
// ticker's flush is still storing some. Seen failing in CI before the fix:
// "Attempt 3 of 3 failed" was stored after the deployment read as errored.
func TestFlushWaitsForEarlierLines(t *testing.T) {
	app := &gatedAppender{entered: make(chan struct{}), second: make(chan struct{}), release: make(chan struct{})}
	l := &deployLog{store: app, id: 1, redactor: newLogRedactor(nil), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	l.Printf("Attempt 3 of 3 failed")
	ticker := make(chan struct{})
	go func() { defer close(ticker); l.Flush(context.Background()) }() // the ticker's flush
	<-app.entered

	l.Printf("Deploy errored")
	var atReturn []string
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		l.Flush(context.Background())
		atReturn = app.stored()
	}()
	// Release the first append once the second Flush stores its line beside
	// it (the fault), or after a while in which it did not (it waits, as it
	// must: a goroutine waiting on a mutex cannot be observed, so this one
	// wait is on the clock).
	select {
	case <-app.second:
	case <-time.After(200 * time.Millisecond):
	}
	close(app.release)
	<-finished
	<-ticker

	want := []string{"==> Attempt 3 of 3 failed", "==> Deploy errored"}
	if !slices.Equal(atReturn, want) {
		t.Fatalf("stored when Flush returned = %q, want %q", atReturn, want)
	}
}
