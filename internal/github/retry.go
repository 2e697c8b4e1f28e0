package github

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// RetryPolicy is the retry and backoff policy of the GitHub transport. Its
// CheckRetry and Backoff methods plug into retryablehttp.Client.
//
// What is retried:
//   - 429, and 403 that is a rate limit (x-ratelimit-remaining: 0, or a body
//     naming a secondary rate limit): every method, since GitHub did not act;
//   - 5xx (but 501) and connection errors: idempotent requests only (see
//     Idempotent). A POST that may have reached GitHub is never repeated: a
//     second try could post a second comment;
//   - connection errors that happened before anything was sent (dial, DNS):
//     every method.
//
// How long it waits: Retry-After (seconds or HTTP date), else the
// x-ratelimit-reset epoch when x-ratelimit-remaining is 0, else RateLimitWait
// for a rate limit that names no wait, else exponential backoff with jitter.
// A wait GitHub demands that is longer than MaxWait is not honoured inline:
// the answer is handed back instead, so go-github returns its typed error.
type RetryPolicy struct {
	MaxWait       time.Duration
	RateLimitWait time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// requestInfo is what CheckRetry needs to know of the request when there is
// no response to read it from.
type requestInfo struct {
	method, path string
}

type requestInfoKey struct{}

func withRequestInfo(ctx context.Context, method, path string) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, requestInfo{method: method, path: path})
}

// CheckRetry is a retryablehttp.CheckRetry. It never returns an error, so
// with retryablehttp.PassthroughErrorHandler the caller always gets GitHub's
// last answer, or the last transport error, unchanged.
func (p RetryPolicy) CheckRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, nil
	}
	info, _ := ctx.Value(requestInfoKey{}).(requestInfo)
	if resp != nil && resp.Request != nil {
		info = requestInfo{method: resp.Request.Method, path: resp.Request.URL.Path}
	}
	if !Retryable(Idempotent(info.method, info.path), resp, err) {
		return false, nil
	}
	if resp == nil {
		return true, nil
	}
	wait, ok := p.ServerWait(resp)
	if !ok && IsRateLimited(resp) {
		wait = p.RateLimitWait
	}
	return wait <= p.MaxWait, nil
}

// Backoff is a retryablehttp.Backoff: the wait before retry attemptNum+1
// (attemptNum counts from 0), never above MaxWait.
func (p RetryPolicy) Backoff(minWait, maxWait time.Duration, attemptNum int, resp *http.Response) time.Duration {
	wait := jitteredExponential(minWait, maxWait, attemptNum)
	if resp != nil {
		if w, ok := p.ServerWait(resp); ok {
			wait = w
		} else if IsRateLimited(resp) {
			wait = max(wait, p.RateLimitWait)
		}
	}
	return min(wait, p.MaxWait)
}

// ServerWait is the wait GitHub's answer asks for: Retry-After, or the
// x-ratelimit-reset time when x-ratelimit-remaining is 0. ok is false when
// the answer names no wait. A time in the past gives 0.
func (p RetryPolicy) ServerWait(resp *http.Response) (wait time.Duration, ok bool) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	if v := strings.TrimSpace(resp.Header.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if at, err := http.ParseTime(v); err == nil {
			return max(at.Sub(now()), 0), true
		}
	}
	if resp.Header.Get("X-Ratelimit-Remaining") == "0" {
		if epoch, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(epoch, 0).Sub(now()), 0), true
		}
	}
	return 0, false
}

// Idempotent reports whether sending the request twice has the effect of
// sending it once. Every method but POST is; so is the POST that mints an
// installation token (a second token is harmless).
func Idempotent(method, path string) bool {
	if method != http.MethodPost {
		return true
	}
	return strings.HasPrefix(path, "/") && strings.HasSuffix(path, "/access_tokens") &&
		strings.Contains(path, "/app/installations/")
}

// Retryable reports whether a request that ended with resp or err may be
// sent again, ignoring how long GitHub asks to wait. idempotent comes from
// Idempotent. A 403 response's body is peeked and left readable.
func Retryable(idempotent bool, resp *http.Response, err error) bool {
	if err != nil {
		if !idempotent && !notSent(err) {
			return false
		}
		// retryablehttp's own classification: no retry on TLS certificate,
		// redirect-loop or bad-scheme errors.
		retry, _ := retryablehttp.DefaultRetryPolicy(context.Background(), nil, err)
		return retry
	}
	if resp == nil {
		return false
	}
	switch {
	case IsRateLimited(resp):
		return true
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		return idempotent
	}
	return false
}

// notSent reports whether err certainly happened before any byte of the
// request was sent: the connection could not be opened.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// peekLimit bounds how much of a 403 body is read to classify it.
const peekLimit = 64 << 10

// IsRateLimited reports whether resp is GitHub refusing because of a rate
// limit: 429, or 403 with x-ratelimit-remaining: 0 or a body that names a
// secondary rate limit (or the older "abuse detection"). The body stays
// readable from its start.
func IsRateLimited(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		return true
	case http.StatusForbidden:
	default:
		return false
	}
	if resp.Header.Get("X-Ratelimit-Remaining") == "0" {
		return true
	}
	body := strings.ToLower(string(peekBody(resp)))
	return strings.Contains(body, "secondary rate limit") || strings.Contains(body, "abuse detection")
}

// peekBody returns the first peekLimit bytes of resp.Body and puts them
// back in front of the rest.
func peekBody(resp *http.Response) []byte {
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, peekLimit))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	return head
}

// jitteredExponential is minWait·2^attempt capped at maxWait, then drawn
// uniformly from its upper half so that clients spread out.
func jitteredExponential(minWait, maxWait time.Duration, attempt int) time.Duration {
	wait := maxWait
	if attempt >= 0 && attempt < 63 {
		if w := minWait << attempt; w>>attempt == minWait && w < maxWait {
			wait = w
		}
	}
	if wait <= 1 {
		return max(wait, 0)
	}
	half := wait / 2
	return half + rand.N(wait-half+1)
}
