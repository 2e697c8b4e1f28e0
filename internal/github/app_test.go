package github_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
)

const (
	inst     = 42
	owner    = "acme"
	repoName = "web"
	fullRepo = owner + "/" + repoName
)

// newFake starts a fake GitHub with installation 42 on acme/web, where
// alice may write.
func newFake(t *testing.T, opts ...githubtest.Option) *githubtest.Server {
	t.Helper()
	srv := githubtest.New(t, opts...)
	srv.AddInstallation(inst, owner, repoName)
	srv.SetPermission(fullRepo, "alice", "write")
	return srv
}

// newApp returns a client of srv with short waits; edit adjusts the config.
func newApp(t *testing.T, srv *githubtest.Server, edit ...func(*github.Config)) *github.App {
	t.Helper()
	cfg := github.Config{
		AppID: srv.AppID, PrivateKeyPEM: srv.PrivateKeyPEM, APIURL: srv.URL,
		MaxAttempts: 4, MaxWait: 5 * time.Second, RetryWaitMin: 10 * time.Millisecond,
		RetryWaitMax: 50 * time.Millisecond, RateLimitWait: 100 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
	}
	for _, e := range edit {
		e(&cfg)
	}
	app, err := github.New(cfg)
	if err != nil {
		t.Fatalf("github.New: %v", err)
	}
	return app
}

func TestAppJWTAccepted(t *testing.T) {
	srv := newFake(t)
	slug, err := newApp(t, srv).AppSlug(context.Background())
	if err != nil {
		t.Fatalf("AppSlug: %v", err)
	}
	if slug != srv.Slug {
		t.Errorf("AppSlug = %q, want %q", slug, srv.Slug)
	}
	reqs := srv.RequestsTo("GET", "/app")
	if len(reqs) != 1 || reqs[0].Auth != githubtest.AuthJWT {
		t.Fatalf("GET /app requests = %+v, want one with a valid JWT", reqs)
	}
}

func TestFakeChecksJWTLikeGitHub(t *testing.T) {
	srv := newFake(t)
	appKey, err := jwt.ParseRSAPrivateKeyFromPEM(srv.PrivateKeyPEM)
	if err != nil {
		t.Fatalf("parse App key: %v", err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	now := time.Now().Unix()
	id := strconv.FormatInt(srv.AppID, 10)
	claims := func(iss any, iat, exp int64) jwt.MapClaims {
		return jwt.MapClaims{"iss": iss, "iat": now + iat, "exp": now + exp}
	}
	tests := []struct {
		name    string
		method  jwt.SigningMethod
		key     any
		claims  jwt.MapClaims
		scheme  string
		want    int
		message string
	}{
		{"valid, iss string", jwt.SigningMethodRS256, appKey, claims(id, -30, 90), "Bearer", 200, ""},
		{"valid, iss number", jwt.SigningMethodRS256, appKey, claims(srv.AppID, -30, 90), "Bearer", 200, ""},
		{"valid, token scheme", jwt.SigningMethodRS256, appKey, claims(id, -30, 90), "token", 200, ""},
		{"iat within clock skew", jwt.SigningMethodRS256, appKey, claims(id, 45, 300), "Bearer", 200, ""},
		{"signed by another key", jwt.SigningMethodRS256, otherKey, claims(id, -30, 90), "Bearer", 401, "could not be decoded"},
		{"HS256", jwt.SigningMethodHS256, []byte("secret"), claims(id, -30, 90), "Bearer", 401, "could not be decoded"},
		{"lifetime over 10 minutes", jwt.SigningMethodRS256, appKey, claims(id, -30, 600), "Bearer", 401, "too far in the future"},
		{"expired", jwt.SigningMethodRS256, appKey, claims(id, -300, -60), "Bearer", 401, "'exp'"},
		{"issued in the future", jwt.SigningMethodRS256, appKey, claims(id, 120, 300), "Bearer", 401, "'iat'"},
		{"another app", jwt.SigningMethodRS256, appKey, claims("999", -30, 90), "Bearer", 401, "'iss'"},
		{"fractional exp", jwt.SigningMethodRS256, appKey, jwt.MapClaims{"iss": id, "iat": now - 30, "exp": float64(now) + 90.5}, "Bearer", 401, "'exp'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signed, err := jwt.NewWithClaims(tt.method, tt.claims).SignedString(tt.key)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			status, body := get(t, srv.URL+"app", tt.scheme+" "+signed)
			if status != tt.want {
				t.Fatalf("GET /app = %d %s, want %d", status, body, tt.want)
			}
			if tt.message != "" && !strings.Contains(body, tt.message) {
				t.Errorf("body %s does not mention %q", body, tt.message)
			}
		})
	}
}

// get sends GET url with the Authorization header and returns the answer.
func get(t *testing.T, u, authorization string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestInstallationTokenIsCached(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv)
	ctx := context.Background()
	for i := range 5 {
		perm, err := app.CollaboratorPermission(ctx, inst, owner, repoName, "alice")
		if err != nil || perm != "write" {
			t.Fatalf("call %d: CollaboratorPermission = %q, %v; want write", i, perm, err)
		}
	}
	tok, err := app.InstallationToken(ctx, inst)
	if err != nil {
		t.Fatalf("InstallationToken: %v", err)
	}
	if n := srv.TokensIssued(inst); n != 1 {
		t.Errorf("tokens issued = %d, want 1 for six uses", n)
	}
	if got, ok := srv.ValidToken(tok); !ok || got != inst {
		t.Errorf("ValidToken(InstallationToken) = %d, %v; want %d, true", got, ok, inst)
	}
	for _, r := range srv.RequestsTo("GET", "/repos/") {
		if r.Header.Get("Authorization") != "token "+tok || r.Installation != inst {
			t.Fatalf("repository call not made with the cached token of installation %d: %+v", inst, r)
		}
	}
}

func TestInstallationTokenRenewedBeforeExpiry(t *testing.T) {
	// ghinstallation renews a minute before expiry: with a 62 s TTL that is
	// within two seconds.
	srv := newFake(t, githubtest.WithTokenTTL(62*time.Second))
	app := newApp(t, srv)
	ctx := context.Background()
	first, err := app.InstallationToken(ctx, inst)
	if err != nil {
		t.Fatalf("InstallationToken: %v", err)
	}
	if again, _ := app.InstallationToken(ctx, inst); again != first {
		t.Fatalf("token changed at once")
	}
	// ghinstallation reads the wall clock itself: await the renewal (a
	// condition, about two seconds away) rather than sleep a fixed time.
	var second string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := app.CollaboratorPermission(ctx, inst, owner, repoName, "alice"); err != nil {
			t.Fatalf("CollaboratorPermission: %v", err)
		}
		var err error
		if second, err = app.InstallationToken(ctx, inst); err != nil {
			t.Fatalf("InstallationToken: %v", err)
		}
		if second != first || time.Now().After(deadline) {
			break
		}
	}
	if second == first || srv.TokensIssued(inst) != 2 {
		t.Fatalf("after the refresh time: same token %v, tokens issued %d; want a second token", second == first, srv.TokensIssued(inst))
	}
	if _, ok := srv.ValidToken(first); !ok {
		t.Errorf("the first token had already expired: it was not renewed ahead of expiry")
	}
}

func TestInstallationsConcurrently(t *testing.T) {
	srv := newFake(t)
	srv.AddInstallation(43, "umbrella", "api")
	srv.SetPermission("umbrella/api", "alice", "admin")
	app := newApp(t, srv)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			id, o, r, want := int64(inst), owner, repoName, "write"
			if i%2 == 1 {
				id, o, r, want = 43, "umbrella", "api", "admin"
			}
			perm, err := app.CollaboratorPermission(context.Background(), id, o, r, "alice")
			if err != nil || perm != want {
				t.Errorf("installation %d: CollaboratorPermission = %q, %v; want %s", id, perm, err, want)
			}
		})
	}
	wg.Wait()
	if srv.TokensIssued(inst) != 1 || srv.TokensIssued(43) != 1 {
		t.Errorf("tokens issued = %d and %d, want one per installation", srv.TokensIssued(inst), srv.TokensIssued(43))
	}
}

func TestCollaboratorPermission(t *testing.T) {
	srv := newFake(t)
	srv.SetPermission(fullRepo, "mallory", "maintain")
	srv.SetPermission(fullRepo, "tri", "triage")
	srv.AddUser("bob")
	app := newApp(t, srv)
	for user, want := range map[string]string{"alice": "write", "mallory": "write", "tri": "read", "bob": "none"} {
		got, err := app.CollaboratorPermission(context.Background(), inst, owner, repoName, user)
		if err != nil || got != want {
			t.Errorf("CollaboratorPermission(%s) = %q, %v; want %q", user, got, err, want)
		}
	}
	_, err := app.CollaboratorPermission(context.Background(), inst, owner, repoName, "nobody")
	if !github.IsNotFound(err) || !strings.Contains(err.Error(), "get permission of nobody on acme/web") {
		t.Errorf("unknown user: err = %v, want a wrapped 404", err)
	}
}

func TestUnknownInstallation(t *testing.T) {
	srv := newFake(t)
	_, err := newApp(t, srv).InstallationToken(context.Background(), 999)
	if !github.IsNotFound(err) {
		t.Errorf("InstallationToken(999) = %v, want a 404", err)
	}
}

func TestEnterpriseBaseURLWithPath(t *testing.T) {
	srv := newFake(t)
	target, _ := url.Parse(srv.URL)
	ghes := httptest.NewServer(http.StripPrefix("/api/v3", httputil.NewSingleHostReverseProxy(target)))
	defer ghes.Close()
	app := newApp(t, srv, func(c *github.Config) { c.APIURL = ghes.URL + "/api/v3" })
	if _, err := app.AppSlug(context.Background()); err != nil {
		t.Fatalf("AppSlug via /api/v3: %v", err)
	}
	if _, err := app.CollaboratorPermission(context.Background(), inst, owner, repoName, "alice"); err != nil {
		t.Fatalf("CollaboratorPermission via /api/v3: %v", err)
	}
	if n := srv.TokensIssued(inst); n != 1 {
		t.Errorf("tokens issued through /api/v3 = %d, want 1", n)
	}
}

// TestSecretsNeverLeak drives successes, retries and failures with a debug
// logger and checks that no credential the fake saw appears in a log line
// or an error.
func TestSecretsNeverLeak(t *testing.T) {
	srv := newFake(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app := newApp(t, srv, func(c *github.Config) { c.Logger = logger })
	ctx := context.Background()
	var errs []error
	srv.Inject(githubtest.Fault{Method: "GET", PathPrefix: "/repos/", Status: 502, Times: 2})
	if _, err := app.CollaboratorPermission(ctx, inst, owner, repoName, "alice"); err != nil {
		t.Fatalf("CollaboratorPermission after two 502: %v", err)
	}
	srv.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 500})
	_, err := app.CollaboratorPermission(ctx, inst, owner, repoName, "alice")
	errs = append(errs, err)
	srv.ClearFaults()
	srv.RevokeTokens() // refreshed once and retried: a success
	if _, err := app.CollaboratorPermission(ctx, inst, owner, repoName, "alice"); err != nil {
		t.Fatalf("CollaboratorPermission after revocation: %v", err)
	}
	_, err = app.CollaboratorPermission(ctx, inst, owner, repoName, "nobody")
	errs = append(errs, err)
	_, err = app.InstallationToken(ctx, 999)
	errs = append(errs, err)

	var secrets []string
	for _, r := range srv.Requests() {
		if a := r.Header.Get("Authorization"); a != "" {
			_, cred, _ := strings.Cut(a, " ")
			secrets = append(secrets, cred)
		}
		if r.Path == "/app/installations/42/access_tokens" && r.Status == 201 {
			secrets = append(secrets, "ghs_") // token prefix of the fake
		}
	}
	if len(secrets) == 0 || logs.Len() == 0 {
		t.Fatalf("nothing to check: %d credentials, %d bytes of logs", len(secrets), logs.Len())
	}
	for i, err := range errs {
		if err == nil {
			t.Fatalf("error %d is nil", i)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains a credential", err)
			}
		}
	}
	for _, s := range append(secrets, "Authorization", "Bearer ") {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs contain %q:\n%s", s, logs.String())
		}
	}
}

func TestRevokedTokenIsRefused(t *testing.T) {
	// Tokens GitHub refuses from the start: the one refresh does not help.
	srv := newFake(t, githubtest.WithTokenTTL(-time.Minute))
	app := newApp(t, srv)
	_, err := app.CollaboratorPermission(context.Background(), inst, owner, repoName, "alice")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "Bad credentials") {
		t.Errorf("with refused tokens: err = %v, want 401 Bad credentials", err)
	}
}
