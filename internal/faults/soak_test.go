//go:build faults

package faults_test

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/gittest"
)

// sample is `keystone serve`'s resource use at one moment, from its
// /metrics (served to loopback clients without a token).
type sample struct {
	RSS, Goroutines, FDs float64
}

func (w *world) sample() sample {
	w.t.Helper()
	resp, err := http.Get(w.ks.URL + "/metrics")
	if err != nil {
		w.t.Fatalf("read /metrics: %v", err)
	}
	defer resp.Body.Close()
	var s sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			s.RSS = v
		case "go_goroutines":
			s.Goroutines = v
		case "process_open_fds":
			s.FDs = v
		}
	}
	if s.RSS == 0 || s.Goroutines == 0 || s.FDs == 0 {
		w.t.Fatalf("/metrics lacks the process's RSS, goroutines or open fds: %+v", s)
	}
	return s
}

func mean(ss []sample) sample {
	var m sample
	for _, s := range ss {
		m.RSS += s.RSS / float64(len(ss))
		m.Goroutines += s.Goroutines / float64(len(ss))
		m.FDs += s.FDs / float64(len(ss))
	}
	return m
}

// TestSoak pushes an update every few seconds with traffic through the
// router for KEYSTONE_FAULTS_SOAK (default 2m; `KEYSTONE_FAULTS_SOAK=30m
// make faults` for the long one): every update deploys, no request fails,
// and `keystone serve`'s RSS, goroutines and open file descriptors stay
// flat: the last samples against the first ones after a warm-up deploy,
// and the trend of the second half, which over the whole soak must stay
// within the noise allowance (so a longer soak catches a slower leak).
func TestSoak(t *testing.T) {
	span := 2 * time.Minute
	if v := os.Getenv("KEYSTONE_FAULTS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("KEYSTONE_FAULTS_SOAK: %v", err)
		}
		span = d
	}
	w := newWorld(t, "soak", "")
	v := w.push(gittest.Behaviour{Version: "v0"})
	if st := w.finalStatus(v, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v0: %s", st)
	}
	host := w.host()
	w.routed(host, "v0", time.Minute)
	l := w.startLoad(host, 40)
	// Warm-up: one update, then the baseline.
	v = w.push(gittest.Behaviour{Version: "v1"})
	if st := w.finalStatus(v, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v1: %s", st)
	}
	var first []sample
	for range 3 {
		first = append(first, w.sample())
		time.Sleep(time.Second) // samples a second apart
	}
	start := time.Now()
	end := start.Add(span)
	n := 1
	var during []timed
	for time.Now().Before(end) {
		n++
		v = w.push(gittest.Behaviour{Version: fmt.Sprintf("v%d", n)})
		if st := w.finalStatus(v, 5*time.Minute); !strings.HasPrefix(st, "success") {
			t.Fatalf("v%d: %s", n, st)
		}
		s := w.sample()
		during = append(during, timed{time.Since(start), s})
		t.Logf("v%d deployed: %+v", n, s)
	}
	w.routed(host, fmt.Sprintf("v%d", n), time.Minute)
	w.settled()
	var last []sample
	for range 3 {
		last = append(last, w.sample())
		time.Sleep(time.Second) // samples a second apart
	}
	l.finishWithoutFailures(t, "")
	a, b := mean(first), mean(last)
	const mib = 1 << 20
	if b.RSS > 1.5*a.RSS+32*mib {
		t.Errorf("RSS grew from %.0f to %.0f MiB over %d updates", a.RSS/mib, b.RSS/mib, n-1)
	}
	if b.Goroutines > 1.25*a.Goroutines+20 {
		t.Errorf("goroutines grew from %.0f to %.0f over %d updates", a.Goroutines, b.Goroutines, n-1)
	}
	if b.FDs > a.FDs+10 {
		t.Errorf("open fds grew from %.0f to %.0f over %d updates", a.FDs, b.FDs, n-1)
	}
	trend := soakTrend(t, during, span)
	w.row.Faults = fmt.Sprintf("%s of pushes and traffic, %d updates: RSS %.0f→%.0f MiB, goroutines %.0f→%.0f, fds %.0f→%.0f",
		span, n-1, a.RSS/mib, b.RSS/mib, a.Goroutines, b.Goroutines, a.FDs, b.FDs)
	if trend != "" {
		w.row.Faults += "; second half's trend over the soak:" + strings.TrimPrefix(trend, ",")
	}
}

// soakTrend checks the least-squares trend of the samples of the second
// half of a soak of length span (warm-up over): taken over the whole soak,
// it must stay within the same allowance as the first-to-last growth, or
// within three standard errors of the samples' noise. It returns the
// trends for the report.
func soakTrend(t *testing.T, during []timed, span time.Duration) string {
	t.Helper()
	const mib = 1 << 20
	var second []timed
	for _, s := range during {
		if s.at >= span/2 {
			second = append(second, s)
		}
	}
	if len(second) < 5 {
		return ""
	}
	trend := ""
	for _, c := range []struct {
		what      string
		of        func(sample) float64
		allowance float64
	}{
		{"RSS (MiB)", func(s sample) float64 { return s.RSS / mib }, 32},
		{"goroutines", func(s sample) float64 { return s.Goroutines }, 20},
		{"open fds", func(s sample) float64 { return s.FDs }, 10},
	} {
		perMinute, se := slope(second, c.of)
		growth := perMinute * span.Minutes()
		trend += fmt.Sprintf(", %s %+.1f", c.what, growth)
		if growth > c.allowance && perMinute > 3*se {
			t.Errorf("%s trend in the second half: %+.2f a minute, %+.1f over the %s soak (allowed %.0f)",
				c.what, perMinute, growth, span, c.allowance)
		}
	}
	return trend
}

// timed is a sample and when, since the soak began, it was taken.
type timed struct {
	at time.Duration
	s  sample
}

// slope is the least-squares trend of of(sample) per minute, and its
// standard error.
func slope(ts []timed, of func(sample) float64) (perMinute, se float64) {
	var mx, my float64
	for _, t := range ts {
		mx += t.at.Minutes() / float64(len(ts))
		my += of(t.s) / float64(len(ts))
	}
	var sxy, sxx float64
	for _, t := range ts {
		dx := t.at.Minutes() - mx
		sxy += dx * (of(t.s) - my)
		sxx += dx * dx
	}
	if sxx == 0 || len(ts) < 3 {
		return 0, 0
	}
	perMinute = sxy / sxx
	var rss float64
	for _, t := range ts {
		r := of(t.s) - my - perMinute*(t.at.Minutes()-mx)
		rss += r * r
	}
	return perMinute, math.Sqrt(rss / float64(len(ts)-2) / sxx)
}
