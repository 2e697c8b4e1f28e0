package github

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	jwt "github.com/golang-jwt/jwt/v4"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
)

// newRequestCounter returns keystone_github_api_requests_total, registered on
// reg when reg is not nil (an already registered one is reused).
func newRequestCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keystone_github_api_requests_total",
		Help: "GitHub API requests sent (each attempt), by method and HTTP status code (\"error\" when no answer came).",
	}, []string{"method", "code"})
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register keystone_github_api_requests_total: %w", err)
	}
	return c, nil
}

// countingTransport counts every attempt that goes out.
type countingTransport struct {
	next    http.RoundTripper
	counter *prometheus.CounterVec
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.counter.WithLabelValues(req.Method, code).Inc()
	return resp, err
}

// annotatingTransport records the method and path in the request context,
// for RetryPolicy.CheckRetry to read when a transport error left no response.
type annotatingTransport struct {
	next http.RoundTripper
}

func (t *annotatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := withRequestInfo(req.Context(), req.Method, req.URL.Path)
	return t.next.RoundTrip(req.WithContext(ctx))
}

type installationKey struct{}

// installationTransport puts its installation's token source in the request
// context, so that a retry long after the first attempt can renew the token.
type installationTransport struct {
	itr *ghinstallation.Transport
}

func (t *installationTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := context.WithValue(req.Context(), installationKey{}, t.itr)
	resp, err := t.itr.RoundTrip(req.WithContext(ctx))
	closeRefusedTokenBody(err)
	return resp, err
}

// closeRefusedTokenBody closes the body of GitHub's refusal to issue a
// token, which ghinstallation leaves open (holding a connection).
func closeRefusedTokenBody(err error) {
	var he *ghinstallation.HTTPError
	if errors.As(err, &he) && he.Response != nil && he.Response.Body != nil {
		he.Response.Body.Close()
	}
}

// newRetryingTransport builds the transport under ghinstallation:
// annotate → retryablehttp (policy, passthrough errors) → count → base.
func newRetryingTransport(cfg Config, policy RetryPolicy, counter *prometheus.CounterVec, key *rsa.PrivateKey) http.RoundTripper {
	base := cfg.Transport
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	rc := &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: &countingTransport{next: base, counter: counter},
			Timeout:   cfg.RequestTimeout,
		},
		RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax,
		RetryMax:     cfg.MaxAttempts - 1,
		CheckRetry:   policy.CheckRetry,
		Backoff:      policy.Backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		PrepareRetry: reauthorizer(cfg.AppID, key, cfg.Logger),
	}
	if cfg.Logger != nil {
		rc.Logger = cfg.Logger // *slog.Logger is a retryablehttp.LeveledLogger
	}
	return &annotatingTransport{next: &retryablehttp.RoundTripper{Client: rc}}
}

// reauthorizer returns a retryablehttp.PrepareRetry that refreshes the
// credential of a request about to be retried: waits may outlast an App JWT
// (ghinstallation signs them for 90 s) or an installation token. On failure
// it keeps the old credential (GitHub then answers 401) and logs why,
// without the credential.
func reauthorizer(appID int64, key *rsa.PrivateKey, logger *slog.Logger) retryablehttp.PrepareRetry {
	return func(req *http.Request) error {
		auth := req.Header.Get("Authorization")
		var fresh string
		var err error
		switch {
		case strings.HasPrefix(auth, "Bearer "):
			var signed string
			signed, err = signAppJWT(appID, key, time.Now())
			fresh = "Bearer " + signed
		case strings.HasPrefix(auth, "token "):
			itr, ok := req.Context().Value(installationKey{}).(*ghinstallation.Transport)
			if !ok {
				return nil
			}
			var tok string
			tok, err = itr.Token(req.Context())
			fresh = "token " + tok
		default:
			return nil
		}
		if err != nil {
			if logger != nil {
				logger.Warn("github: could not renew credentials before retry", "method", req.Method, "path", req.URL.Path, "error", err)
			}
			return nil
		}
		// The header map may be shared with the previous attempt's request.
		req.Header = req.Header.Clone()
		req.Header.Set("Authorization", fresh)
		return nil
	}
}

// signAppJWT signs an App JWT the way ghinstallation does: issued 30 s in
// the past (clock skew), valid for two minutes from then, whole seconds.
func signAppJWT(appID int64, key *rsa.PrivateKey, now time.Time) (string, error) {
	iat := now.Add(-30 * time.Second).Truncate(time.Second)
	claims := &jwt.RegisteredClaims{
		IssuedAt:  jwt.NewNumericDate(iat),
		ExpiresAt: jwt.NewNumericDate(iat.Add(2 * time.Minute)),
		Issuer:    strconv.FormatInt(appID, 10),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("sign app JWT: %w", err)
	}
	return s, nil
}
