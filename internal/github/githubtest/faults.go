package githubtest

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GitHub's bodies for rate-limited and failed requests.
const (
	msgSecondaryRateLimit = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. " +
		"If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000."
	docsSecondaryRateLimit = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
	docsPrimaryRateLimit   = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
	msgServerError         = "Server Error"
)

// Fault makes the fake fail matching requests the way GitHub does.
//
// Status picks the failure:
//   - 5xx: {"message":"Server Error"}, nothing is done;
//   - 403 or 429 without ResetAt: a secondary rate limit, GitHub's message,
//     with Retry-After when RetryAfter is set;
//   - 403 or 429 with ResetAt: the primary rate limit, x-ratelimit-remaining: 0
//     and x-ratelimit-reset = ResetAt (rounded up to the second); the fault
//     then lasts until that reset unless Times or Until say otherwise;
//   - with Apply, the request first takes effect (as when GitHub acts and
//     then fails to answer), then the failure is answered;
//   - 0 with Stall: no failure: the request takes effect and is answered
//     normally, but only after Stall (or when the client gives up), which is
//     how a client times out on a request GitHub did carry out.
type Fault struct {
	// Method matches the request method; empty matches all.
	Method string
	// PathPrefix matches the start of the URL path ("/repos/o/r/statuses/");
	// empty matches all, including the token endpoint.
	PathPrefix string
	Status     int
	// Times is how many requests the fault hits; 0 means until Until, the
	// rate-limit reset or removal.
	Times int
	// Until ends the fault; zero means no end time.
	Until      time.Time
	RetryAfter time.Duration
	ResetAt    time.Time
	// Apply carries the request out before answering the failure.
	Apply bool
	// Stall delays the answer; the fake stops waiting when the client hangs up.
	Stall time.Duration
}

// fault is an injected Fault and how many hits it has left (-1: unbounded).
type fault struct {
	Fault
	left int
}

// Inject adds f; the returned func removes it. The oldest matching fault
// applies first.
func (s *Server) Inject(f Fault) (remove func()) {
	if f.Status != 0 && f.Status != http.StatusForbidden && f.Status != http.StatusTooManyRequests && f.Status/100 != 5 {
		panic(fmt.Sprintf("githubtest: cannot inject status %d", f.Status))
	}
	if !f.ResetAt.IsZero() {
		f.ResetAt = ceilSecond(f.ResetAt)
		if f.Until.IsZero() && f.Times == 0 {
			f.Until = f.ResetAt
		}
	}
	ft := &fault{Fault: f, left: f.Times}
	if f.Times == 0 {
		ft.left = -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, ft)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.faults = slices.DeleteFunc(s.faults, func(x *fault) bool { return x == ft })
	}
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the fault that applies to a request (zero Fault when
// none), counting the hit and dropping used-up or expired faults.
func (s *Server) takeFault(method, path string, now time.Time) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = slices.DeleteFunc(s.faults, func(f *fault) bool {
		return !f.Until.IsZero() && !now.Before(f.Until)
	})
	for i, f := range s.faults {
		if (f.Method != "" && f.Method != method) || !strings.HasPrefix(path, f.PathPrefix) {
			continue
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return f.Fault
	}
	return Fault{}
}

// writeFault answers as GitHub does when f.Status happens.
func (s *Server) writeFault(w http.ResponseWriter, f Fault, a authResult) {
	h := w.Header()
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(f.RetryAfter.Seconds())), 10))
	}
	if f.Status/100 == 5 {
		writeError(w, f.Status, msgServerError)
		return
	}
	if f.ResetAt.IsZero() {
		writeJSON(w, f.Status, map[string]any{"message": msgSecondaryRateLimit, "documentation_url": docsSecondaryRateLimit})
		return
	}
	h.Set("X-Ratelimit-Limit", "5000")
	h.Set("X-Ratelimit-Remaining", "0")
	h.Set("X-Ratelimit-Used", "5000")
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(f.ResetAt.Unix(), 10))
	h.Set("X-Ratelimit-Resource", "core")
	msg := "API rate limit exceeded for installation ID " + strconv.FormatInt(a.inst, 10) + "."
	if a.kind != AuthToken {
		msg = "API rate limit exceeded for app ID " + strconv.FormatInt(s.AppID, 10) + "."
	}
	writeJSON(w, f.Status, map[string]any{"message": msg, "documentation_url": docsPrimaryRateLimit})
}

// ceilSecond rounds t up to a whole second: x-ratelimit-reset has no
// fraction, and the limit must not lift before the announced reset.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}
