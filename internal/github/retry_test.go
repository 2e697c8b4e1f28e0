package github

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

// response builds a response to method path with status, headers and body.
func response(method, path string, status int, body string, header ...string) *http.Response {
	h := make(http.Header)
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{
		StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)),
		Request: &http.Request{Method: method, URL: &url.URL{Path: path}},
	}
}

// dialError is what the transport returns when nothing listens.
func dialError(t *testing.T) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = http.Get("http://" + addr + "/")
	if err == nil {
		t.Fatalf("GET %s on a closed port succeeded", addr)
	}
	return err
}

const secondaryBody = `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`

func TestRetryable(t *testing.T) {
	timeout := &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "read", Err: errors.New("i/o timeout")}}
	reset := &net.OpError{Op: "write", Err: errors.New("connection reset by peer")}
	dial := dialError(t)
	tests := []struct {
		name       string
		idempotent bool
		resp       *http.Response
		err        error
		want       bool
	}{
		{"GET 500", true, response("GET", "/x", 500, ""), nil, true},
		{"GET 502", true, response("GET", "/x", 502, ""), nil, true},
		{"GET 501 is permanent", true, response("GET", "/x", 501, ""), nil, false},
		{"PATCH 503", true, response("PATCH", "/x", 503, ""), nil, true},
		{"POST 500 may have acted", false, response("POST", "/x", 500, ""), nil, false},
		{"POST 502 may have acted", false, response("POST", "/x", 502, ""), nil, false},
		{"POST 429", false, response("POST", "/x", 429, ""), nil, true},
		{"GET 429", true, response("GET", "/x", 429, ""), nil, true},
		{"POST 403 secondary", false, response("POST", "/x", 403, secondaryBody), nil, true},
		{"GET 403 abuse", true, response("GET", "/x", 403, `{"message":"You have triggered an abuse detection mechanism."}`), nil, true},
		{"POST 403 primary", false, response("POST", "/x", 403, `{"message":"API rate limit exceeded"}`, "X-Ratelimit-Remaining", "0"), nil, true},
		{"GET 403 forbidden", true, response("GET", "/x", 403, `{"message":"Resource not accessible by integration"}`), nil, false},
		{"GET 404", true, response("GET", "/x", 404, ""), nil, false},
		{"GET 422", true, response("GET", "/x", 422, ""), nil, false},
		{"POST 201", false, response("POST", "/x", 201, ""), nil, false},
		{"GET 200", true, response("GET", "/x", 200, ""), nil, false},
		{"GET timeout", true, nil, timeout, true},
		{"POST timeout after sending", false, nil, timeout, false},
		{"POST connection reset", false, nil, reset, false},
		{"POST connection refused", false, nil, dial, true},
		{"POST DNS failure", false, nil, &net.DNSError{Err: "no such host", Name: "x"}, true},
		{"GET connection refused", true, nil, dial, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Retryable(tt.idempotent, tt.resp, tt.err); got != tt.want {
				t.Errorf("Retryable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRetryableLeavesBodyReadable(t *testing.T) {
	resp := response("GET", "/x", 403, secondaryBody)
	if !Retryable(true, resp, nil) {
		t.Fatalf("secondary rate limit not retryable")
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != secondaryBody {
		t.Errorf("body after peek = %q, %v; want %q", b, err, secondaryBody)
	}
}

func TestIdempotent(t *testing.T) {
	tests := []struct {
		method, path string
		want         bool
	}{
		{"GET", "/repos/o/r/issues/1/comments", true},
		{"PATCH", "/repos/o/r/issues/comments/5", true},
		{"PUT", "/x", true},
		{"DELETE", "/x", true},
		{"POST", "/repos/o/r/issues/1/comments", false},
		{"POST", "/repos/o/r/statuses/abc", false},
		{"POST", "/app/hook/deliveries/1/attempts", false},
		{"POST", "/app/installations/42/access_tokens", true},
		{"POST", "/api/v3/app/installations/42/access_tokens", true},
	}
	for _, tt := range tests {
		if got := Idempotent(tt.method, tt.path); got != tt.want {
			t.Errorf("Idempotent(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestCheckRetryAndBackoff(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := RetryPolicy{MaxWait: 60 * time.Second, RateLimitWait: 30 * time.Second, Now: func() time.Time { return now }}
	epoch := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	tests := []struct {
		name      string
		resp      *http.Response
		wantRetry bool
		wantWait  time.Duration // -1: exponential backoff, within [0.5s, 1s] for attempt 0
	}{
		{"429 Retry-After 1", response("POST", "/x", 429, "", "Retry-After", "1"), true, time.Second},
		{"429 Retry-After date", response("GET", "/x", 429, "", "Retry-After", now.Add(5*time.Second).UTC().Format(http.TimeFormat)), true, 5 * time.Second},
		{"429 Retry-After over MaxWait", response("GET", "/x", 429, "", "Retry-After", "61"), false, 0},
		{"403 secondary Retry-After 60", response("POST", "/x", 403, secondaryBody, "Retry-After", "60"), true, 60 * time.Second},
		{"403 secondary without wait", response("GET", "/x", 403, secondaryBody), true, 30 * time.Second},
		{"403 primary reset in 10s", response("GET", "/x", 403, "", "X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", epoch(10*time.Second)), true, 10 * time.Second},
		{"403 primary reset passed", response("GET", "/x", 403, "", "X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", epoch(-time.Second)), true, 0},
		{"403 primary reset in 1h", response("GET", "/x", 403, "", "X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", epoch(time.Hour)), false, 0},
		{"503 Retry-After 2", response("GET", "/x", 503, "", "Retry-After", "2"), true, 2 * time.Second},
		{"500 backoff", response("GET", "/x", 500, ""), true, -1},
		{"500 on POST", response("POST", "/x", 500, ""), false, 0},
		{"remaining 0 on success is no reason", response("GET", "/x", 200, "", "X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", epoch(time.Hour)), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			retry, err := p.CheckRetry(context.Background(), tt.resp, nil)
			if err != nil || retry != tt.wantRetry {
				t.Fatalf("CheckRetry = %v, %v; want %v, nil", retry, err, tt.wantRetry)
			}
			if !retry {
				return
			}
			wait := p.Backoff(500*time.Millisecond, 10*time.Second, 0, tt.resp)
			if tt.wantWait >= 0 && wait != tt.wantWait {
				t.Errorf("Backoff = %s, want %s", wait, tt.wantWait)
			}
			if tt.wantWait < 0 && (wait < 250*time.Millisecond || wait > 500*time.Millisecond) {
				t.Errorf("Backoff = %s, want within [250ms, 500ms]", wait)
			}
		})
	}
}

func TestCheckRetryTransportErrors(t *testing.T) {
	p := RetryPolicy{MaxWait: time.Minute}
	dial := dialError(t)
	timeout := &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "read", Err: errors.New("i/o timeout")}}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		method string
		err    error
		want   bool
	}{
		{"POST refused", context.Background(), "POST", dial, true},
		{"POST timeout", context.Background(), "POST", timeout, false},
		{"GET timeout", context.Background(), "GET", timeout, true},
		{"GET after caller gave up", canceled, "GET", dial, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := withRequestInfo(tt.ctx, tt.method, "/repos/o/r/issues/1/comments")
			got, err := p.CheckRetry(ctx, nil, tt.err)
			if err != nil || got != tt.want {
				t.Errorf("CheckRetry = %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	p := RetryPolicy{MaxWait: time.Hour}
	for attempt, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		for range 50 {
			w := p.Backoff(100*time.Millisecond, time.Second, attempt, nil)
			if w < ceiling/2 || w > ceiling {
				t.Fatalf("attempt %d: Backoff = %s, want within [%s, %s]", attempt, w, ceiling/2, ceiling)
			}
		}
	}
	if w := p.Backoff(time.Second, 30*time.Second, 100, nil); w < 15*time.Second || w > 30*time.Second {
		t.Errorf("attempt 100: Backoff = %s, want within [15s, 30s]", w)
	}
	if w := (RetryPolicy{MaxWait: time.Second}).Backoff(time.Second, time.Minute, 10, nil); w != time.Second {
		t.Errorf("Backoff above MaxWait = %s, want MaxWait", w)
	}
}

func TestReauthorizerRenewsAppJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	old, err := signAppJWT(7, key, time.Now().Add(-10*time.Minute))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	req, _ := http.NewRequest("GET", "https://api.github.com/app", nil)
	req.Header.Set("Authorization", "Bearer "+old)
	shared := req.Header
	if err := reauthorizer(7, key, nil)(req); err != nil {
		t.Fatalf("reauthorize: %v", err)
	}
	if shared.Get("Authorization") != "Bearer "+old {
		t.Errorf("the previous attempt's headers were changed")
	}
	raw := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil }); err != nil {
		t.Fatalf("renewed JWT does not verify (or is expired): %v", err)
	}
	if claims["iss"] != "7" {
		t.Errorf("iss = %v, want \"7\"", claims["iss"])
	}
}

func TestConfigValidate(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	good := Config{AppID: 1, PrivateKeyPEM: pemKey}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" when valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"enterprise URL", func(c *Config) { c.APIURL = "https://ghe.example.com/api/v3" }, ""},
		{"no app id", func(c *Config) { c.AppID = 0 }, "AppID"},
		{"no key", func(c *Config) { c.PrivateKeyPEM = nil }, "PrivateKeyPEM"},
		{"garbage key", func(c *Config) { c.PrivateKeyPEM = []byte("not a key") }, "PrivateKeyPEM"},
		{"relative URL", func(c *Config) { c.APIURL = "api.github.com" }, "APIURL"},
		{"URL with credentials", func(c *Config) { c.APIURL = "https://u:secret@ghe.example.com/" }, "APIURL"},
		{"negative attempts", func(c *Config) { c.MaxAttempts = -1 }, "MaxAttempts"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"min above max", func(c *Config) { c.RetryWaitMin = time.Minute }, "RetryWaitMin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.field)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("Validate error %q leaks the URL's password", err)
			}
		})
	}
}

func TestParseAPIURLAddsTrailingSlash(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.github.com":          "https://api.github.com/",
		"https://api.github.com/":         "https://api.github.com/",
		"https://ghe.example.com/api/v3":  "https://ghe.example.com/api/v3/",
		"http://127.0.0.1:8080/":          "http://127.0.0.1:8080/",
		"https://ghe.example.com/api/v3/": "https://ghe.example.com/api/v3/",
	} {
		u, err := parseAPIURL(in)
		if err != nil || u.String() != want {
			t.Errorf("parseAPIURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}
