// Package outboxtest runs the GitHub outbox for tests: a dispatcher with
// short waits sending to a fake GitHub, and a wait for it to fall idle.
package outboxtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/store"
)

// Config is a dispatcher config for tests: polls every 50 ms and waits a
// second (doubling to four) where production waits a minute.
func Config() outbox.Config {
	return outbox.Config{PollInterval: 50 * time.Millisecond, MinBackoff: time.Second, MaxBackoff: 4 * time.Second,
		SendTimeout: 10 * time.Second}
}

// Start runs a dispatcher over st until the test ends (or stop is called)
// and returns it.
func Start(t testing.TB, st *store.Store, gh outbox.GitHub, cfg outbox.Config) (d *outbox.Dispatcher, stop func()) {
	t.Helper()
	d, err := outbox.New(st, gh, cfg)
	if err != nil {
		t.Fatalf("outboxtest: %v", err)
	}
	return d, Run(t, d)
}

// Run runs d until the test ends or stop is called.
func Run(t testing.TB, d *outbox.Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// Pending returns how many entries are waiting to be sent.
func Pending(t testing.TB, st *store.Store) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM github_outbox WHERE state = 'pending'`).Scan(&n); err != nil {
		t.Fatalf("outboxtest: count pending: %v", err)
	}
	return n
}

// WaitIdle waits until no entry is pending, failing the test after timeout.
func WaitIdle(t testing.TB, st *store.Store, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := Pending(t, st)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outboxtest: %d entries still pending after %s", n, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling the awaited condition
	}
}

// States returns the state of every entry, in id order.
func States(t testing.TB, st *store.Store) []string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT state FROM github_outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("outboxtest: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("outboxtest: %v", err)
		}
		out = append(out, s)
	}
	return out
}
