// Package storetest gives tests real, migrated PostgreSQL databases.
//
// The server is the one DATABASE_URL points at (`make test` starts a throwaway
// one). Each package gets its own database, created on first use and dropped
// by Main; Fresh gives a test one of its own. With CI=true a missing or
// unreachable server fails the test; elsewhere an unset DATABASE_URL skips it.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
)

// harness tracks the databases this test binary created.
type harness struct {
	mu      sync.Mutex
	created []string
	shared  string // URL of the package's shared database
}

// The one piece of package state: test binaries are single-package processes,
// and Main must find what New and Fresh created.
var h harness

// Main runs the package's tests, then drops every database they created.
// Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it runs the tests, drops their databases and
// returns the exit code, for a TestMain with more to do afterwards.
func Run(m *testing.M) int {
	code := m.Run()
	h.dropAll()
	return code
}

// New returns a store on the package's shared, migrated database. Tests using
// it must not assume it is empty: use unique names, or Tx, or Fresh.
func New(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), SharedURL(t))
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// SharedURL returns the connection string of the package's shared database,
// creating and migrating it on first use.
func SharedURL(t testing.TB) string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shared == "" {
		h.shared = h.create(t)
	}
	return h.shared
}

// Fresh returns the URL of a new migrated database for this test alone, for
// tests that need an empty database or run Keystone as a subprocess.
func Fresh(t testing.TB) string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.create(t)
}

// Tx returns queries inside a transaction that is rolled back when the test
// ends, so the test leaves nothing behind.
func Tx(t testing.TB) (*store.Queries, pgx.Tx) {
	t.Helper()
	st := New(t)
	tx, err := st.Pool().Begin(t.Context())
	if err != nil {
		t.Fatalf("storetest: begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return store.NewQueries(tx), tx
}

// ServerURL returns DATABASE_URL, or fails or skips the test as described above.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("storetest: DATABASE_URL is not set and CI=true: PostgreSQL is required")
		}
		t.Skip("storetest: DATABASE_URL is not set (make test starts a PostgreSQL)")
	}
	return u
}

func (h *harness) create(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("storetest: cannot reach PostgreSQL at DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	name := "keystone_test_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	h.created = append(h.created, name)
	dbURL, err := withDatabase(server, name)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return dbURL
}

func (h *harness) dropAll() {
	server := os.Getenv("DATABASE_URL")
	if server == "" || len(h.created) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		fmt.Fprintf(os.Stderr, "storetest: drop test databases: %v\n", err)
		return
	}
	defer conn.Close(ctx)
	for _, name := range h.created {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "storetest: drop %s: %v\n", name, err)
		}
	}
}

// withDatabase returns server's URL pointing at database name instead.
func withDatabase(server, name string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL is not a URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
