// Package testwait is the one way Keystone's tests await a condition: poll it
// with a deadline, never sleep a fixed time and hope.
package testwait

import (
	"testing"
	"time"
)

// Interval is how often Eventually asks its condition.
const Interval = 50 * time.Millisecond

// Eventually polls cond every Interval until it holds or timeout passes,
// then fails the test saying what was awaited and, if cond returned one, why
// not. cond runs on the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %v)", what, timeout, last)
		}
		time.Sleep(Interval) // polling the awaited condition
	}
}
