package testwait_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/testwait"
)

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	testwait.Eventually(t, 5*time.Second, "the third call", func() (bool, error) { n++; return n == 3, nil })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

// fakeT records a Fatalf instead of ending the test.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f) // as FailNow ends the goroutine
}

func TestEventuallyFailsAtTheDeadlineWithTheLastReason(t *testing.T) {
	f := &fakeT{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("recovered %v, want the fake's failure", r)
			}
		}()
		testwait.Eventually(f, 100*time.Millisecond, "never", func() (bool, error) { return false, errors.New("still no") })
	}()
	if !strings.Contains(f.msg, "never: not within 100ms (last: still no)") {
		t.Fatalf("failure %q, want the deadline named", f.msg)
	}
}
