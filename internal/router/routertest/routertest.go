// Package routertest has helpers for tests of the router: versioned backends.
package routertest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Backend is an app version on a real loopback port: GET / answers its
// name, /up answers 200, /slow?ms=N answers after N ms, /hold answers once
// Release is called, /headers echoes the
// X-Forwarded-* headers and Host it received.
type Backend struct {
	Name string
	*httptest.Server
	slow    atomic.Int64
	release chan struct{}
	once    sync.Once
}

// Release lets every /hold request, now and later, answer.
func (b *Backend) Release() { b.once.Do(func() { close(b.release) }) }

// SlowInFlight is how many /slow requests the backend is answering now.
func (b *Backend) SlowInFlight() int64 { return b.slow.Load() }

// Addr is the backend's host:port.
func (b *Backend) Addr() string { return strings.TrimPrefix(b.URL, "http://") }

// NewBackend starts a backend answering name; it is closed at cleanup.
func NewBackend(t testing.TB, name string) *Backend {
	t.Helper()
	b := &Backend{Name: name, release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) })
	mux.HandleFunc("/up", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		b.slow.Add(1)
		defer b.slow.Add(-1)
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, name)
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		b.slow.Add(1)
		defer b.slow.Add(-1)
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, name)
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s xff=%s proto=%s xfh=%s", r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	})
	b.Server = httptest.NewServer(mux)
	t.Cleanup(b.Close)
	t.Cleanup(b.Release) // runs first: held requests end before Close waits for them
	return b
}

// Eventually polls cond every 10 ms until it is true or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// GetVia asks the proxy at addr (host:port) for / with Host host ("" for
// addr itself) and returns the status and the trimmed body.
func GetVia(addr, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}
