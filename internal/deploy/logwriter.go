package deploy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
)

// Log limits of one deployment (lines, bytes). The tail of a failed
// container is written with tailReserve on top, so that its last lines are
// kept even after a build filled the log.
var (
	DefaultLogLimit = store.LogLimit{Lines: 5000, Bytes: 2 << 20}
	tailReserve     = store.LogLimit{Lines: 210, Bytes: 256 << 10}
)

const (
	maxLineBytes  = 8 << 10
	flushLines    = 200
	flushInterval = 150 * time.Millisecond
)

// LogAppender stores lines of a deployment's log; *store.Store implements it.
type LogAppender interface {
	AppendDeploymentLog(ctx context.Context, deploymentID int64, lines []string, limit store.LogLimit) (int, error)
}

// newLogRedactor is the one redactor of everything Keystone stores or says
// about a deployment: secrets.Redactor, fuzzed, which masks overlapping
// values whole and lines of a multi-line value only when long enough not to
// give the value away.
func newLogRedactor(values map[string]string) *secrets.Redactor { return secrets.NewRedactor(values) }

// deployLog buffers a deployment's log and stores it in batches, at least
// every flushInterval, so readers following it see lines as they come. Every
// line is redacted first. It is safe for concurrent use.
type deployLog struct {
	store    LogAppender
	id       int64
	redactor *secrets.Redactor
	limit    store.LogLimit
	logger   *slog.Logger

	// flushing is held from taking the pending lines until they are stored,
	// so a Flush returns only after every earlier line is stored, in order
	// (the ticker's flush may be storing older lines at that moment).
	flushing sync.Mutex
	mu       sync.Mutex
	pending  []string
	partial  bytes.Buffer
	done     chan struct{}
	stopped  sync.WaitGroup
	closed   bool
}

func newDeployLog(st LogAppender, id int64, r *secrets.Redactor, limit store.LogLimit, logger *slog.Logger) *deployLog {
	l := &deployLog{store: st, id: id, redactor: r, limit: limit, logger: logger, done: make(chan struct{})}
	l.stopped.Add(1)
	go l.flushLoop()
	return l
}

func (l *deployLog) flushLoop() {
	defer l.stopped.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			l.flush(context.Background(), l.limit)
		}
	}
}

// Printf adds one line written by Keystone, marked "==> ".
func (l *deployLog) Printf(format string, args ...any) {
	l.add("==> " + fmt.Sprintf(format, args...))
}

// Write takes output (a build's, a container's) and adds it line by line;
// a trailing partial line waits for its end or for Close. A line longer than
// maxLineBytes is stored in pieces, each cut only once the bytes after it
// are known well enough (the longest secret) that no secret is cut in two.
func (l *deployLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.partial.Write(p)
	type piece struct {
		text     string
		redacted bool
	}
	var lines []piece
	for {
		b := l.partial.Bytes()
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			if len(b) > maxLineBytes+l.redactor.MaxLen() {
				text, used := l.redactor.RedactCut(string(b), maxLineBytes)
				lines = append(lines, piece{text, true})
				l.partial.Next(used)
				continue
			}
			break
		}
		end := i + 1
		if b[i] == '\r' {
			if i+1 == len(b) {
				break // "\r\n" may be split across writes: wait for the next byte
			}
			if b[i+1] == '\n' {
				end = i + 2
			}
		}
		lines = append(lines, piece{string(b[:i]), false})
		l.partial.Next(end)
	}
	l.mu.Unlock()
	for _, p := range lines {
		if p.redacted {
			l.addRedacted(p.text)
		} else {
			l.add(p.text)
		}
	}
	return len(p), nil
}

// add redacts a whole line, then stores it in pieces of at most
// maxLineBytes: a cut after redaction cannot split a secret.
func (l *deployLog) add(line string) { l.addRedacted(l.redactor.Redact(line)) }

func (l *deployLog) addRedacted(line string) {
	for len(line) > maxLineBytes {
		l.append(line[:maxLineBytes])
		line = line[maxLineBytes:]
	}
	l.append(line)
}

func (l *deployLog) append(line string) {
	l.mu.Lock()
	l.pending = append(l.pending, line)
	full := len(l.pending) >= flushLines
	l.mu.Unlock()
	if full {
		l.flush(context.Background(), l.limit)
	}
}

// Tail stores lines (a failed container's last output) with the reserve on
// top of the limit, after flushing what is pending.
func (l *deployLog) Tail(ctx context.Context, header string, lines []string) {
	l.Flush(ctx)
	out := []string{"==> " + header}
	for _, line := range lines {
		out = append(out, l.redactor.Redact(line))
	}
	limit := store.LogLimit{Lines: l.limit.Lines + tailReserve.Lines, Bytes: l.limit.Bytes + tailReserve.Bytes}
	if _, err := l.store.AppendDeploymentLog(ctx, l.id, out, limit); err != nil {
		l.logger.Warn("store deployment log", slog.Int64("deployment_id", l.id), slog.String("error", err.Error()))
	}
}

// Flush stores every complete pending line now.
func (l *deployLog) Flush(ctx context.Context) { l.flush(ctx, l.limit) }

func (l *deployLog) flush(ctx context.Context, limit store.LogLimit) {
	l.flushing.Lock()
	defer l.flushing.Unlock()
	l.mu.Lock()
	lines := l.pending
	l.pending = nil
	l.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := l.store.AppendDeploymentLog(ctx, l.id, lines, limit); err != nil {
		l.logger.Warn("store deployment log", slog.Int64("deployment_id", l.id), slog.String("error", err.Error()))
	}
}

// Close stores the partial line and everything pending, and stops flushing.
func (l *deployLog) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	rest := strings.TrimRight(l.partial.String(), "\r\n")
	l.partial.Reset()
	l.mu.Unlock()
	if rest != "" {
		l.add(rest)
	}
	close(l.done)
	l.stopped.Wait()
	l.Flush(context.Background())
}
