package github

import (
	"context"
	"errors"
	"net/http"
	"time"

	gh "github.com/google/go-github/v66/github"
)

// FailureKind says what a failed call to GitHub means for trying it again.
type FailureKind int

const (
	// Transient: a 5xx, a network error or a timeout. GitHub may or may not
	// have acted; trying again later may work.
	Transient FailureKind = iota
	// RateLimited: GitHub refused because of a primary or secondary rate
	// limit and did not act. The limit covers every call of the same
	// credential, not just this one.
	RateLimited
	// Permanent: any other 4xx (validation, not found, no access). The same
	// request will fail the same way.
	Permanent
)

func (k FailureKind) String() string {
	switch k {
	case RateLimited:
		return "rate_limited"
	case Permanent:
		return "permanent"
	}
	return "transient"
}

// Failure is the classification of an error returned by a call of this
// package.
type Failure struct {
	Kind FailureKind
	// Wait is how long GitHub asked to wait (Retry-After, rate-limit reset);
	// WaitKnown is false when it named no wait.
	Wait      time.Duration
	WaitKnown bool
	// Status is GitHub's HTTP status code, 0 when no answer came.
	Status int
}

// Classify tells what err, returned by a call of this package, means. A
// nil err classifies as Transient: callers check for nil first.
func Classify(err error) Failure {
	return classifyAt(err, time.Now())
}

func classifyAt(err error, now time.Time) Failure {
	policy := RetryPolicy{Now: func() time.Time { return now }}
	var rl *gh.RateLimitError
	if errors.As(err, &rl) {
		// Also what go-github answers without asking GitHub while a limit it
		// saw earlier has not reset.
		f := Failure{Kind: RateLimited, Status: statusOf(rl.Response)}
		if !rl.Rate.Reset.Time.IsZero() {
			f.Wait, f.WaitKnown = max(rl.Rate.Reset.Time.Sub(now), 0), true
		}
		return f
	}
	var abuse *gh.AbuseRateLimitError
	if errors.As(err, &abuse) {
		f := Failure{Kind: RateLimited, Status: statusOf(abuse.Response)}
		switch {
		case localRefusal(abuse.Response):
			// go-github's memory of a Retry-After GitHub gave earlier.
			if abuse.RetryAfter != nil {
				f.Wait, f.WaitKnown = max(*abuse.RetryAfter, 0), true
			}
		case abuse.Response != nil:
			// go-github reads x-ratelimit-reset as the wait even when
			// requests remain; GitHub's rule takes it only at 0 remaining,
			// and otherwise asks for at least a minute.
			f.Wait, f.WaitKnown = policy.ServerWait(abuse.Response)
		}
		return f
	}
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		resp := er.Response
		f := Failure{Status: resp.StatusCode}
		f.Wait, f.WaitKnown = policy.ServerWait(resp)
		switch {
		case IsRateLimited(resp):
			f.Kind = RateLimited
		case resp.StatusCode >= 500:
			f.Kind = Transient
		case resp.StatusCode == http.StatusRequestTimeout:
			f.Kind = Transient
		default:
			f.Kind, f.Wait, f.WaitKnown = Permanent, 0, false
		}
		return f
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Failure{Kind: Transient}
	}
	// Refused installation tokens: a 404 installation or a 401 JWT will not
	// mend by itself; a 5xx from the token endpoint may.
	if IsNotFound(err) {
		return Failure{Kind: Permanent, Status: http.StatusNotFound}
	}
	return Failure{Kind: Transient}
}

// localRefusal reports whether resp is the stand-in go-github builds when
// it refuses a call without sending it: GitHub's answers always carry headers.
func localRefusal(resp *http.Response) bool {
	return resp == nil || len(resp.Header) == 0
}

// secondaryLimitWithoutWait reports whether err is GitHub's secondary rate
// limit answered without Retry-After, which go-github wrongly remembers as
// lasting until x-ratelimit-reset (up to an hour).
func secondaryLimitWithoutWait(err error) bool {
	var abuse *gh.AbuseRateLimitError
	if !errors.As(err, &abuse) || localRefusal(abuse.Response) {
		return false
	}
	return abuse.Response.Header.Get("Retry-After") == ""
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}
