package keystoneyml_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
)

// TestSwitchKeys: drain_timeout and keep_previous, as SPEC §5's example
// writes them, are read, bounded and kept in the stored form; a bad value is
// a Problem naming its line.
func TestSwitchKeys(t *testing.T) {
	const head = "apps:\n  - name: web\n    branch: main\n    port: 80\n"
	valid := []struct {
		name, extra   string
		drain, keep   time.Duration
		drainDefaults bool
	}{
		{"spec example", "    drain_timeout: 30s        # in-flight requests of the old version may finish (section 13)\n" +
			"    keep_previous: 10m        # optional: keep the replaced version running for an instant rollback\n", 30 * time.Second, 10 * time.Minute, false},
		{"defaults", "", keystoneyml.DefaultDrainTimeout, 0, true},
		{"bounds", "    drain_timeout: 10m\n    keep_previous: 24h\n", 10 * time.Minute, 24 * time.Hour, false},
		{"short drain, keep off", "    drain_timeout: 1s\n    keep_previous: 0s\n", time.Second, 0, false},
	}
	for _, c := range valid {
		t.Run(c.name, func(t *testing.T) {
			f, err := keystoneyml.Parse([]byte(head+c.extra), "")
			if err != nil {
				t.Fatal(err)
			}
			a := f.Apps[0]
			if a.Drain() != c.drain || a.KeepPrevious != c.keep || (a.DrainTimeout == 0) != c.drainDefaults {
				t.Fatalf("drain %s (field %s), keep %s; want %s, %s", a.Drain(), a.DrainTimeout, a.KeepPrevious, c.drain, c.keep)
			}
			raw, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			back, err := keystoneyml.DecodeApp(raw)
			if err != nil || back.Drain() != c.drain || back.KeepPrevious != c.keep {
				t.Fatalf("stored form %s decodes to drain %s keep %s (%v)", raw, back.Drain(), back.KeepPrevious, err)
			}
		})
	}
	invalid := []struct{ name, extra, want string }{
		{"drain a number", "    drain_timeout: 30\n", `line 5: drain_timeout must be a duration like 30s or 10m, got the number 30`},
		{"drain zero", "    drain_timeout: 0s\n", `line 5: drain_timeout must be from 1s to 10m0s, got 0s`},
		{"drain too long", "    drain_timeout: 11m\n", `line 5: drain_timeout must be from 1s to 10m0s, got 11m`},
		{"drain negative", "    drain_timeout: -5s\n", `line 5: drain_timeout must be from 1s to 10m0s, got -5s`},
		{"drain a list", "    drain_timeout: [30s]\n", `line 5: drain_timeout must be a duration like 30s, got a list`},
		{"keep not a duration", "    keep_previous: yes\n", `line 5: keep_previous must be a duration like 30s or 10m, got the string "yes"`},
		{"keep too long", "    keep_previous: 25h\n", `line 5: keep_previous must be 0s (off) or from 1s to 24h0m0s, got 25h`},
		{"keep under a second", "    keep_previous: 10ms\n", `line 5: keep_previous must be 0s (off) or from 1s to 24h0m0s, got 10ms`},
		{"keep empty", "    keep_previous:\n", `line 5: keep_previous must be a duration like 30s, got nothing`},
		{"keep twice", "    keep_previous: 1m\n    keep_previous: 2m\n", `line 6: duplicate key "keep_previous" (first at line 5)`},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			f, err := keystoneyml.Parse([]byte(head+c.extra), "")
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v (%+v), want %q", err, f, c.want)
			}
		})
	}
}

// TestKeepPreviousCountsAgainstMemoryCap: a kept container runs beside the
// serving one, so 2 × memory must fit under KEYSTONE_MAX_MEMORY; the Problem
// names the keep_previous line, wherever memory is written.
func TestKeepPreviousCountsAgainstMemoryCap(t *testing.T) {
	cases := []struct {
		name, extra string
		capMemory   int64
		want        string
	}{
		{"fits", "    memory: 512m\n    keep_previous: 10m\n", 1 << 30, ""},
		{"too big, memory after", "    keep_previous: 10m\n    memory: 768m\n", 1 << 30,
			`line 5: keep_previous keeps a second container: 2 × memory 768m is above the operator's cap KEYSTONE_MAX_MEMORY=1g (lower memory or drop keep_previous)`},
		{"default memory lowered to the cap", "    keep_previous: 1m\n", 256 << 20,
			`line 5: keep_previous keeps a second container: 2 × memory 256m is above the operator's cap KEYSTONE_MAX_MEMORY=256m (lower memory or drop keep_previous)`},
		{"keep off", "    memory: 1g\n    keep_previous: 0s\n", 1 << 30, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lim := keystoneyml.Limits{Memory: c.capMemory, CPUs: 2}
			f, err := keystoneyml.ParseLimited([]byte("apps:\n  - name: web\n    branch: main\n    port: 80\n"+c.extra), "", lim)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Fatalf("got %v (%+v), want %q", err, f, c.want)
			}
		})
	}
}
