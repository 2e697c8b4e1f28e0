package web

import (
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
)

func TestRelative(t *testing.T) {
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		ago  time.Duration
		want string
	}{
		{0, "just now"},
		{9 * time.Second, "just now"},
		{45 * time.Second, "45 seconds ago"},
		{time.Minute, "1 minute ago"},
		{3*time.Minute + 59*time.Second, "3 minutes ago"},
		{time.Hour, "1 hour ago"},
		{23 * time.Hour, "23 hours ago"},
		{48 * time.Hour, "2 days ago"},
		{45 * 24 * time.Hour, "1 month ago"},
		{800 * 24 * time.Hour, "2 years ago"},
		{-5 * time.Minute, "in 5 minutes"},
	}
	for _, tc := range cases {
		if got := relative(now, now.Add(-tc.ago)); got != tc.want {
			t.Errorf("relative(%s ago) = %q, want %q", tc.ago, got, tc.want)
		}
	}
}

func TestAtIsAbsoluteUTC(t *testing.T) {
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	paris := time.FixedZone("CET", 3600)
	got := at(now, time.Date(2025, 3, 4, 12, 57, 3, 0, paris))
	want := Time{ISO: "2025-03-04T11:57:03Z", Abs: "2025-03-04 11:57:03 UTC", Rel: "2 minutes ago"}
	if got != want {
		t.Fatalf("at = %+v, want %+v", got, want)
	}
}

func TestDuration(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{400 * time.Millisecond, "0.4s"},
		{12300 * time.Millisecond, "12.3s"},
		{4*time.Minute + 5*time.Second, "4m 05s"},
		{time.Hour + 2*time.Minute, "1h 02m"},
		{-time.Second, ""},
	}
	for _, tc := range cases {
		if got := duration(tc.d); got != tc.want {
			t.Errorf("duration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestHealth(t *testing.T) {
	cases := []struct {
		d    store.Deployment
		want string
	}{
		{store.Deployment{HealthStatus: 200, HealthMS: 1200}, "healthy (HTTP 200 after 1.2s)"},
		{store.Deployment{HealthStatus: 500, HealthError: "GET /healthz 500 after 30s"}, "unhealthy (HTTP 500): GET /healthz 500 after 30s"},
		{store.Deployment{HealthError: "container exited"}, "unhealthy: container exited"},
		{store.Deployment{HealthMS: 5000}, "healthy (running after 5.0s)"},
		{store.Deployment{}, ""},
	}
	for _, tc := range cases {
		if got := health(tc.d); got != tc.want {
			t.Errorf("health(%+v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	cases := map[string]string{
		"/apps/o/r/a":       "/apps/o/r/a",
		"/audit?before=10":  "/audit?before=10",
		"//evil.example":    "/",
		"/\\evil.example":   "/",
		"http://evil":       "/",
		"evil":              "/",
		"/login?next=/x":    "/",
		"/x\r\nSet-Cookie:": "/",
		"":                  "/",
	}
	for in, want := range cases {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSwitched(t *testing.T) {
	n := func(v int) *int { return &v }
	cases := []struct {
		d    store.Deployment
		want string
	}{
		{store.Deployment{}, ""},
		{store.Deployment{RequestsDrained: n(0), RequestsFailed: n(0)}, "no downtime: 0 in-flight requests drained, 0 failed"},
		{store.Deployment{RequestsDrained: n(1), RequestsFailed: n(0)}, "no downtime: 1 in-flight request drained, 0 failed"},
		{store.Deployment{RequestsDrained: n(12), RequestsFailed: n(2)}, "no downtime: 12 in-flight requests drained, 2 failed"},
	}
	for _, tc := range cases {
		if got := switched(tc.d); got != tc.want {
			t.Errorf("switched(%v, %v) = %q, want %q", tc.d.RequestsDrained, tc.d.RequestsFailed, got, tc.want)
		}
	}
}
