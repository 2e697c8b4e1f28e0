// Package github is Keystone's GitHub App client: it authenticates as the App
// (JWT) and as its installations (ghinstallation tokens, cached per
// installation), over a transport that retries what GitHub asks to retry and
// never repeats a request that may already have created something.
//
// Import go-github as gh in this package: the package itself is named github.
package github

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAPIURL is GitHub.com's REST base URL.
const DefaultAPIURL = "https://api.github.com/"

// Defaults of the retry knobs of Config.
const (
	DefaultMaxAttempts    = 4
	DefaultMaxWait        = 60 * time.Second
	DefaultRetryWaitMin   = 1 * time.Second
	DefaultRetryWaitMax   = 30 * time.Second
	DefaultRateLimitWait  = 60 * time.Second
	DefaultRequestTimeout = 30 * time.Second
)

// Config describes the GitHub App and how its client talks to GitHub. Zero
// values of the optional fields take the defaults above; negative values are
// invalid.
//
// One call may take up to MaxAttempts × (RequestTimeout + MaxWait); callers
// that need a tighter bound pass a context with a deadline, which also cuts
// a wait short.
type Config struct {
	// AppID is the GitHub App's numeric id (required).
	AppID int64
	// PrivateKeyPEM is the App's RSA private key, PKCS#1 or PKCS#8 PEM (required).
	PrivateKeyPEM []byte
	// APIURL is the REST base URL, DefaultAPIURL when empty. GitHub
	// Enterprise Server uses https://HOST/api/v3/.
	APIURL string

	// Logger receives retry decisions at debug level and request failures.
	// Nothing it receives carries a token or an Authorization header.
	Logger *slog.Logger
	// Registerer, when set, gets keystone_github_api_requests_total.
	Registerer prometheus.Registerer

	// MaxAttempts bounds how many times one request is sent (first try included).
	MaxAttempts int
	// MaxWait is the longest wait honoured inline before a retry. When GitHub
	// asks for longer (Retry-After, rate-limit reset), the client gives up and
	// hands GitHub's answer back, so go-github returns its typed error.
	MaxWait time.Duration
	// RetryWaitMin and RetryWaitMax bound the exponential backoff used when
	// GitHub gives no wait.
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// RateLimitWait is the wait after a rate-limit answer that names no wait;
	// GitHub's guidance is at least one minute.
	RateLimitWait time.Duration
	// RequestTimeout bounds each attempt (connect, send, headers and body).
	RequestTimeout time.Duration

	// Transport is the base HTTP transport (a pooled cleanhttp transport when nil).
	Transport http.RoundTripper
}

// withDefaults returns cfg with every unset optional field defaulted.
func (cfg Config) withDefaults() Config {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	setDefault(&cfg.MaxAttempts, DefaultMaxAttempts)
	setDefault(&cfg.MaxWait, DefaultMaxWait)
	setDefault(&cfg.RetryWaitMin, DefaultRetryWaitMin)
	setDefault(&cfg.RetryWaitMax, DefaultRetryWaitMax)
	setDefault(&cfg.RateLimitWait, DefaultRateLimitWait)
	setDefault(&cfg.RequestTimeout, DefaultRequestTimeout)
	return cfg
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports the first invalid field of cfg, naming it. Unset optional
// fields are valid (they take defaults).
func (cfg Config) Validate() error {
	if cfg.AppID <= 0 {
		return errors.New("github config: AppID must be a positive GitHub App id")
	}
	if len(cfg.PrivateKeyPEM) == 0 {
		return errors.New("github config: PrivateKeyPEM is empty")
	}
	if _, err := jwt.ParseRSAPrivateKeyFromPEM(cfg.PrivateKeyPEM); err != nil {
		return fmt.Errorf("github config: PrivateKeyPEM is not an RSA private key in PEM form: %w", err)
	}
	if cfg.APIURL != "" {
		if _, err := parseAPIURL(cfg.APIURL); err != nil {
			return fmt.Errorf("github config: APIURL: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxAttempts", int64(cfg.MaxAttempts)},
		{"MaxWait", int64(cfg.MaxWait)},
		{"RetryWaitMin", int64(cfg.RetryWaitMin)},
		{"RetryWaitMax", int64(cfg.RetryWaitMax)},
		{"RateLimitWait", int64(cfg.RateLimitWait)},
		{"RequestTimeout", int64(cfg.RequestTimeout)},
	} {
		if f.v < 0 {
			return fmt.Errorf("github config: %s must not be negative", f.name)
		}
	}
	d := cfg.withDefaults()
	if d.RetryWaitMin > d.RetryWaitMax {
		return fmt.Errorf("github config: RetryWaitMin (%s) is above RetryWaitMax (%s)", d.RetryWaitMin, d.RetryWaitMax)
	}
	return nil
}

// parseAPIURL parses an absolute http(s) URL and gives it the trailing slash
// go-github requires of a BaseURL.
func parseAPIURL(raw string) (*url.URL, error) {
	// Errors never echo raw: it could hold credentials.
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("must not carry a query, a fragment or credentials")
	}
	if len(u.Path) == 0 || u.Path[len(u.Path)-1] != '/' {
		u.Path += "/"
	}
	return u, nil
}
