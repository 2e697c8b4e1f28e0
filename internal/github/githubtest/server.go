// Package githubtest is a fake GitHub REST API for tests: an httptest server
// speaking the subset Keystone uses, checking credentials and inputs the way
// GitHub does, keeping state, recording every request and injecting faults.
//
// Repositories are named "owner/name" and matched case-insensitively, like
// GitHub. Everything is safe for concurrent use.
package githubtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults of a new Server.
const (
	DefaultAppID    int64 = 1001
	DefaultSlug           = "keystone-test"
	DefaultTokenTTL       = time.Hour
)

// maxBody bounds the request bodies the fake reads.
const maxBody = 32 << 20

// Server is the fake GitHub. Its exported fields are set by New and must not
// be changed.
type Server struct {
	// URL is the REST API base URL, with a trailing slash.
	URL string
	// AppID, PrivateKeyPEM and Slug describe the one GitHub App the fake knows.
	AppID         int64
	PrivateKeyPEM []byte
	Slug          string

	srv      *httptest.Server
	key      *rsa.PrivateKey
	tokenTTL time.Duration
	now      func() time.Time // the fake's clock: token lifetimes, faults' ends
	mux      *http.ServeMux
	done     chan struct{}
	closeMu  sync.Once

	mu            sync.Mutex
	nextID        int64
	installations map[int64]*installation
	repos         map[string]*repo // by lower-case full name
	userIDs       map[string]int64 // known users, by lower-case login
	tokens        map[string]*token
	issued        map[int64]int
	requests      []Request
	faults        []*fault
	deliveries    []Delivery
	redelivered   []Delivery
	onRedeliver   func(Delivery)
	oauth         oauthState
	manifests     manifestState
}

// Option configures a Server.
type Option func(*Server)

// WithTokenTTL sets the lifetime of installation tokens (default one hour).
// ghinstallation renews a token a minute before it expires, so a TTL under a
// minute makes it ask for a new token on every call.
func WithTokenTTL(d time.Duration) Option { return func(s *Server) { s.tokenTTL = d } }

// WithClock makes the fake read the time from now (default time.Now) for
// what it decides by the clock: when tokens expire, when a fault's Until
// passes, the rate-limit headers. A test advances it instead of sleeping.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// Clock is a settable clock for WithClock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock showing start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// WithAppID sets the App's id (default DefaultAppID).
func WithAppID(id int64) Option { return func(s *Server) { s.AppID = id } }

// WithSlug sets the App's slug (default DefaultSlug).
func WithSlug(slug string) Option { return func(s *Server) { s.Slug = slug } }

// New starts a fake GitHub with a fresh 2048-bit App key and stops it when
// the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("githubtest: generate App key: %v", err)
	}
	s := &Server{
		AppID:         DefaultAppID,
		Slug:          DefaultSlug,
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		key:           key,
		tokenTTL:      DefaultTokenTTL,
		now:           time.Now,
		done:          make(chan struct{}),
		nextID:        1000,
		installations: make(map[int64]*installation),
		repos:         make(map[string]*repo),
		userIDs:       make(map[string]int64),
		tokens:        make(map[string]*token),
		issued:        make(map[int64]int),
	}
	for _, o := range opts {
		o(s)
	}
	s.routes()
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL + "/"
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, cutting short stalled requests. New registers it
// with t.Cleanup; calling it again is harmless.
func (s *Server) Close() {
	s.closeMu.Do(func() {
		close(s.done)
		s.srv.Close()
	})
}

// AuthKind is how a request authenticated.
type AuthKind string

// Authentication kinds recorded in Request.Auth.
const (
	AuthNone    AuthKind = "none"    // no Authorization header
	AuthJWT     AuthKind = "jwt"     // a valid App JWT
	AuthToken   AuthKind = "token"   // a valid installation token
	AuthInvalid AuthKind = "invalid" // a credential GitHub would refuse
)

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	// Auth is how it authenticated; Installation is the token's installation.
	Auth         AuthKind
	Installation int64
	// Status is the status code the fake answered.
	Status int
	// At is when the request arrived.
	At time.Time
}

type ctxKey int

const (
	authCtxKey ctxKey = iota
	afterCtxKey
)

// after holds functions a handler wants run once its answer is sent.
type after struct{ fns []func() }

func runAfter(r *http.Request, fn func()) {
	if a, ok := r.Context().Value(afterCtxKey).(*after); ok {
		a.fns = append(a.fns, fn)
	}
}

// ServeHTTP authenticates, applies any injected fault, routes, records the
// exchange, then sends the answer (after a stall, if a fault asks for one).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := s.now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	r.Body = io.NopCloser(bytes.NewReader(body))
	auth := s.authenticate(r.Header.Get("Authorization"), at)
	aft := &after{}
	ctx := context.WithValue(context.WithValue(r.Context(), authCtxKey, auth), afterCtxKey, aft)
	r = r.WithContext(ctx)

	buf := &bufferedWriter{header: make(http.Header)}
	setRateHeaders(buf.Header(), at)
	f := s.takeFault(r.Method, r.URL.Path, at)
	if f.Status != 0 {
		if f.Apply {
			s.mux.ServeHTTP(&bufferedWriter{header: make(http.Header)}, r)
		}
		s.writeFault(buf, f, auth)
	} else {
		s.mux.ServeHTTP(buf, r)
	}
	s.record(Request{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(),
		Body: body, Auth: auth.kind, Installation: auth.inst, Status: buf.code(), At: at,
	})
	if f.Stall > 0 {
		stall := time.NewTimer(f.Stall)
		defer stall.Stop()
		select {
		case <-stall.C:
		case <-r.Context().Done():
		case <-s.done:
		}
	}
	buf.sendTo(w)
	for _, fn := range aft.fns {
		fn()
	}
}

func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
}

// Requests returns every request received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RequestsTo returns the requests with the method (any when empty) whose path
// starts with pathPrefix.
func (s *Server) RequestsTo(method, pathPrefix string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if (method == "" || r.Method == method) && strings.HasPrefix(r.Path, pathPrefix) {
			out = append(out, r)
		}
	}
	return out
}

// bufferedWriter holds an answer until the fake decides when to send it.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedWriter) code() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

func (b *bufferedWriter) sendTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(b.body.Len()))
	w.WriteHeader(b.code())
	_, _ = w.Write(b.body.Bytes())
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// setRateHeaders adds the rate-limit headers GitHub sends with every answer.
func setRateHeaders(h http.Header, now time.Time) {
	h.Set("X-Ratelimit-Limit", "5000")
	h.Set("X-Ratelimit-Remaining", "4999")
	h.Set("X-Ratelimit-Used", "1")
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(now.Add(time.Hour).Unix(), 10))
	h.Set("X-Ratelimit-Resource", "core")
}

// docsURL is the documentation_url of the fake's error answers.
const docsURL = "https://docs.github.com/rest"

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers GitHub's error shape.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{
		"message": message, "documentation_url": docsURL, "status": strconv.Itoa(status),
	})
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusNotFound, "Not Found")
}

// fieldError is one entry of a 422 "Validation Failed" answer.
type fieldError struct {
	Resource string `json:"resource"`
	Field    string `json:"field,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message,omitempty"`
}

// writeValidation answers 422 with GitHub's validation error shape.
func writeValidation(w http.ResponseWriter, errs ...fieldError) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
		"message": "Validation Failed", "errors": errs, "documentation_url": docsURL, "status": "422",
	})
}

// decodeBody decodes the JSON request body into v, answering 400 like
// GitHub when it is not JSON.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return false
	}
	return true
}

// paginate picks the page of n items the request asks for (per_page default
// 30, at most 100; page from 1) and sets GitHub's Link header.
func (s *Server) paginate(w http.ResponseWriter, r *http.Request, n int) (lo, hi int) {
	q := r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 30
	}
	per = min(per, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	last := max((n+per-1)/per, 1)
	link := func(p int, rel string) string {
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(per))
		return "<" + s.srv.URL + r.URL.Path + "?" + q.Encode() + `>; rel="` + rel + `"`
	}
	var links []string
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	lo = min((page-1)*per, n)
	return lo, min(lo+per, n)
}

// newID returns a fresh id for any object. Callers hold s.mu.
func (s *Server) newID() int64 {
	s.nextID++
	return s.nextID
}

// timestamp formats t the way GitHub does.
func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
