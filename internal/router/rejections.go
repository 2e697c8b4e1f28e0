package router

import (
	"log"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Why the router refused a request or a TLS handshake itself.
const (
	RejectMalformedHost = "malformed_host" // 400: a Host no route could ever have
	RejectUnknownHost   = "unknown_host"   // 404: no route has this Host (or port)
	RejectTLSHandshake  = "tls_handshake"  // a failed handshake: an unknown server name (no certificate), garbage
)

// RejectReasons are every reason, for metrics.
var RejectReasons = []string{RejectMalformedHost, RejectUnknownHost, RejectTLSHandshake}

// exampleHostMax bounds the example name a summary line quotes.
const exampleHostMax = 80

// rejections counts what the router refuses and logs it as one summary line
// per reason and window: anyone can send any Host or SNI to an open port, so
// a line per request would let them fill the disk, while the counts still
// account for every refusal.
type rejections struct {
	log    *slog.Logger
	window time.Duration

	mu      sync.Mutex
	total   map[string]int64 // since start, for metrics
	pending map[string]int   // in the open window; nil when none is open
	example map[string]string
}

func newRejections(log *slog.Logger, window time.Duration) *rejections {
	if window <= 0 {
		window = time.Second
	}
	return &rejections{log: log, window: window, total: map[string]int64{}}
}

// note counts one refusal; the first of a window schedules its summary.
func (rj *rejections) note(reason, host string) {
	rj.mu.Lock()
	defer rj.mu.Unlock()
	rj.total[reason]++
	if rj.pending == nil {
		rj.pending, rj.example = map[string]int{}, map[string]string{}
		time.AfterFunc(rj.window, rj.flush)
	}
	rj.pending[reason]++
	if _, ok := rj.example[reason]; !ok {
		if len(host) > exampleHostMax {
			host = host[:exampleHostMax] + "…"
		}
		rj.example[reason] = host
	}
}

// flush logs the window's counts (the example is quoted by the handler, so
// control bytes in it cannot forge a line).
func (rj *rejections) flush() {
	rj.mu.Lock()
	pending, example := rj.pending, rj.example
	rj.pending, rj.example = nil, nil
	rj.mu.Unlock()
	reasons := make([]string, 0, len(pending))
	for r := range pending {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		rj.log.Warn("router: refused", "reason", r, "count", pending[r], "example", example[r], "window", rj.window.String())
	}
}

// Rejected returns how many requests and handshakes the router refused since
// it started, by reason (every reason of RejectReasons present).
func (r *Router) Rejected() map[string]int64 {
	r.rejects.mu.Lock()
	defer r.rejects.mu.Unlock()
	out := make(map[string]int64, len(RejectReasons))
	for _, reason := range RejectReasons {
		out[reason] = r.rejects.total[reason]
	}
	return out
}

// ServerErrorLog is the ErrorLog for a data-plane http.Server: each failed
// TLS handshake (net/http logs one line per handshake, which any client can
// repeat at will) is counted and summarised with the other refusals, the
// example being the error; every other line goes to logger as a warning.
func (r *Router) ServerErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(serverErrors{r: r, next: logger}, "", 0)
}

type serverErrors struct {
	r    *Router
	next *slog.Logger
}

func (s serverErrors) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	if rest, ok := strings.CutPrefix(line, "http: TLS handshake error from "); ok {
		if _, cause, found := strings.Cut(rest, ": "); found {
			rest = cause // the client's address is not the news
		}
		s.r.rejects.note(RejectTLSHandshake, rest)
		return len(p), nil
	}
	s.next.Warn(line)
	return len(p), nil
}
