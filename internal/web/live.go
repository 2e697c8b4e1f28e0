package web

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// The live log: /deployments/{id}/events is a server-sent event stream of
// the deployment's new log lines ("line", id = the line's number), its state
// changes ("state") and its end ("end", after the last line). It polls the
// database, so it follows a deployment run by any Keystone process. A
// reconnecting browser sends Last-Event-ID and gets only what it missed.

const (
	eventBatch     = 500
	heartbeatEvery = 15 * time.Second
	// streamWriteWindow is how long one write of a live log may take.
	streamWriteWindow = 4 * heartbeatEvery
	plainLogBatch     = 5000
)

// Live-log streams are long requests that poll the database: each session
// may hold MaxStreamsPerSession, all together MaxStreams.
const (
	MaxStreamsPerSession = 8
	MaxStreams           = 256
)

// streamSlots counts the open live-log streams per session and in total.
type streamSlots struct {
	mu        sync.Mutex
	bySession map[string]int
	total     int
}

func newStreamSlots() *streamSlots { return &streamSlots{bySession: map[string]int{}} }

// take reserves a stream for session; ok is false when a cap is reached.
func (s *streamSlots) take(session string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= MaxStreams || s.bySession[session] >= MaxStreamsPerSession {
		return nil, false
	}
	s.total++
	s.bySession[session]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.total--
		if s.bySession[session]--; s.bySession[session] <= 0 {
			delete(s.bySession, session)
		}
	}, true
}

// stateEvent is the data of "state" and "end" events.
type stateEvent struct {
	State       string `json:"state"`
	Label       string `json:"label"`
	Class       string `json:"class"`
	Step        string `json:"step"`
	Description string `json:"description"`
}

// lineEvent is the data of a "line" event.
type lineEvent struct {
	Seq  int       `json:"seq"`
	Segs []Segment `json:"segs"`
}

// events streams a deployment's log and state until it has finished and its
// log is drained, the browser leaves, or Keystone stops.
func (h *Handler) events(c *gin.Context) {
	d, _, ok := h.lookupDeployment(c)
	if !ok {
		return
	}
	session := ""
	if si := current(c); si != nil {
		session = string(si.session.TokenHash)
	}
	release, ok := h.streams.take(session)
	if !ok {
		c.Header("Retry-After", "10")
		c.String(http.StatusTooManyRequests, "Too many live logs open: close some and reload.\n")
		return
	}
	defer release()
	after := resumePoint(c)
	ctx := c.Request.Context()
	// The server's ReadTimeout (and any WriteTimeout) bounds ordinary
	// requests; a live log stays open. Reading is not timed (the stream
	// slots bound how many are open); each write gets streamWriteWindow,
	// so a browser that stops reading still lets go of the handler.
	rc := http.NewResponseController(c.Writer)
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		h.log.Warn("live log: clear the read deadline", slog.String("error", err.Error()))
	}
	extend := func() {
		if err := rc.SetWriteDeadline(time.Now().Add(streamWriteWindow)); err != nil {
			h.log.Warn("live log: extend the write deadline", slog.String("error", err.Error()))
		}
	}
	extend()
	c.Header("Content-Type", "text/event-stream")
	c.Header("X-Accel-Buffering", "no") // proxies must not hold events back
	c.Status(http.StatusOK)
	w := bufio.NewWriter(c.Writer)
	fmt.Fprint(w, "retry: 2000\n\n")
	lastState := ""
	lastWrite := time.Now()
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.stopping:
			return
		case <-wait.C:
		}
		cur, err := h.store.Deployment(ctx, d.ID)
		if err != nil {
			h.streamFailed(ctx.Err(), d.ID, err)
			return
		}
		if key := cur.State + "\x00" + cur.Step + "\x00" + cur.Description; key != lastState {
			lastState = key
			b := stateBadge(cur.State)
			writeEvent(w, "state", "", stateEvent{cur.State, b.Text, b.Class, cur.Step, cur.Description})
		}
		for {
			lines, err := h.store.DeploymentLog(ctx, d.ID, after, eventBatch)
			if err != nil {
				h.streamFailed(ctx.Err(), d.ID, err)
				return
			}
			for _, l := range lines {
				writeEvent(w, "line", strconv.Itoa(l.Seq), lineEvent{Seq: l.Seq, Segs: parseANSI(l.Text)})
				after = l.Seq
			}
			if len(lines) < eventBatch {
				break
			}
		}
		// The state was read before the lines: a deployment finished then
		// had written all its lines, so the log is drained.
		if cur.Finished() {
			b := stateBadge(cur.State)
			writeEvent(w, "end", "", stateEvent{cur.State, b.Text, b.Class, cur.Step, cur.Description})
		}
		if w.Buffered() > 0 {
			lastWrite = time.Now()
		} else if time.Since(lastWrite) >= heartbeatEvery {
			fmt.Fprint(w, ": keep-alive\n\n")
			lastWrite = time.Now()
		}
		extend()
		if err := w.Flush(); err != nil {
			return
		}
		c.Writer.Flush()
		if cur.Finished() {
			return
		}
		wait.Reset(h.opts.PollInterval)
	}
}

func (h *Handler) streamFailed(ctxErr error, id int64, err error) {
	if ctxErr == nil {
		h.log.Warn("live log stream failed", slog.Int64("deployment_id", id), slog.String("error", err.Error()))
	}
}

// resumePoint is the last line number the browser has: Last-Event-ID on a
// reconnection, the page's ?after= on the first connection.
func resumePoint(c *gin.Context) int {
	for _, v := range []string{c.GetHeader("Last-Event-ID"), c.Query("after")} {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return n
		}
	}
	return 0
}

// writeEvent writes one server-sent event whose data is v as JSON (one line).
func writeEvent(w io.Writer, event, id string, v any) {
	data, _ := json.Marshal(v) // plain structs of strings and ints
	if id != "" {
		fmt.Fprintf(w, "id: %s\n", id)
	}
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
}

// plainLog is /deployments/{id}/log: the whole log as UTF-8 text, escape
// sequences removed.
func (h *Handler) plainLog(c *gin.Context) {
	d, _, ok := h.lookupDeployment(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("Content-Disposition", fmt.Sprintf(`inline; filename="deployment-%d.log"`, d.ID))
	c.Status(http.StatusOK)
	w := bufio.NewWriterSize(c.Writer, 64<<10)
	after := 0
	for {
		lines, err := h.store.DeploymentLog(ctx, d.ID, after, plainLogBatch)
		if err != nil {
			// The status is sent: say so in the text rather than cut silently.
			h.streamFailed(ctx.Err(), d.ID, err)
			fmt.Fprintf(w, "\n[keystone: the rest of the log could not be read]\n")
			break
		}
		for _, l := range lines {
			w.WriteString(plainLine(l.Text))
			w.WriteByte('\n')
			after = l.Seq
		}
		if len(lines) < plainLogBatch {
			break
		}
	}
	if d.LogTruncated {
		fmt.Fprintf(w, "[keystone: some output was dropped to keep this log within its size limit]\n")
	}
	_ = w.Flush()
}
