package main

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestDoctor runs `keystone doctor` against a healthy stack (the real
// binary serving, real PostgreSQL and Docker, the fake GitHub), then with
// Docker unreachable and with GitHub's last delivery refused for its
// signature: each problem is named on its line, the exit status says it,
// and no secret is printed.
func TestDoctor(t *testing.T) {
	gh := githubtest.New(t)
	gh.AddInstallation(7, "octo", "shop")
	gh.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: http.StatusAccepted})
	const hookSecret = "doctor-webhook-secret"
	vars := map[string]string{
		"DATABASE_URL": storetest.Fresh(t), "KEYSTONE_DATA_DIR": t.TempDir(),
		"KEYSTONE_GITHUB_APP_ID": "1001", "KEYSTONE_GITHUB_PRIVATE_KEY": string(gh.PrivateKeyPEM),
		"KEYSTONE_GITHUB_WEBHOOK_SECRET": hookSecret, "KEYSTONE_GITHUB_API_URL": gh.URL,
	}
	ks := keystonetest.Start(t, vars)
	vars["KEYSTONE_PUBLIC_URL"] = ks.URL
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		vars["DOCKER_HOST"] = h
	}
	c := cli{t: t, env: vars}
	noSecret := func(r result) {
		t.Helper()
		for _, s := range []string{hookSecret, "PRIVATE KEY", "BEGIN"} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Fatalf("doctor printed a secret:\n%v", r)
			}
		}
	}
	r := c.run("", "doctor")
	t.Logf("keystone doctor:\n%s", r.stdout)
	noSecret(r)
	if r.exit != 0 || strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("healthy stack:\n%v", r)
	}
	for _, want := range []string{"ok   database", "ok   docker", "ok   buildkit", "ok   router         not configured",
		"ok   github app     App keystone-test (id 1001", "ok   installations  1: octo", "ok   webhook        1 recent deliveries, 0 failed", "ok   public url"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("healthy stack: no line %q in\n%s", want, r.stdout)
		}
	}

	t.Run("docker unreachable", func(t *testing.T) {
		c := cli{t: t, env: map[string]string{}}
		for k, v := range vars {
			c.env[k] = v
		}
		c.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
		r := c.run("", "doctor")
		if r.exit != 1 || !strings.Contains(r.stdout, "FAIL docker         the Docker engine does not answer") ||
			!strings.Contains(r.stderr, "checks failed") {
			t.Fatalf("docker unreachable:\n%v", r)
		}
	})
	t.Run("wrong webhook secret", func(t *testing.T) {
		gh.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: http.StatusUnauthorized})
		r := c.run("", "doctor")
		noSecret(r)
		if r.exit != 1 || !strings.Contains(r.stdout, "FAIL webhook") || !strings.Contains(r.stdout, "HTTP 401") ||
			!strings.Contains(r.stdout, "the webhook secret differs") {
			t.Fatalf("wrong secret:\n%v", r)
		}
	})
}
