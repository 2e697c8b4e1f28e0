package deploy_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestSecretsInjectedAndRedacted: the app's secrets reach the container's
// environment (over the config's env, under PORT), and every value is
// redacted from the stored log, build output and container output alike.
func TestSecretsInjectedAndRedacted(t *testing.T) {
	h := newHarness(t, "secrets")
	const secret = "s3cr3t-v@lue-8c1f"
	const multi = "line-one-of-key\nline-two-of-key"
	yml := ymlApp("web", "env:", "  API_KEY: from-config", "  MODE: plain")
	// The app must exist for its secrets to be set: deploy once without.
	sha := h.push(t, "main", deploytest.Files(t, yml, gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha), store.StateSucceeded)
	app := h.App(t, "web")
	h.secrets.set(app.ID, map[string]string{"API_KEY": secret, "PEM": multi})

	files := gittest.AppFiles(t, "", gittest.Behaviour{Version: "v2", BuildStep: true,
		BuildPrint: []string{"build sees " + secret}, PrintEnv: []string{"API_KEY", "MODE", "PEM"}})
	sha2 := h.push(t, "main", files)
	d := h.deployOf(t, "web", sha2)
	mustState(t, d, store.StateSucceeded)
	if _, body, err := deploytest.Get(app.HostPort, "/env/API_KEY"); err != nil || body != secret {
		t.Fatalf("API_KEY in the container = %q (%v), want the secret over the config's value", body, err)
	}
	if _, body, _ := deploytest.Get(app.HostPort, "/env/MODE"); body != "plain" {
		t.Errorf("MODE = %q, want the config's value", body)
	}
	if _, body, _ := deploytest.Get(app.HostPort, "/env/PORT"); body != "8080" {
		t.Errorf("PORT = %q", body)
	}
	log := strings.Join(h.Log(t, d.ID), "\n")
	for _, leak := range []string{secret, "line-one-of-key", "line-two-of-key"} {
		if strings.Contains(log, leak) {
			t.Errorf("the stored log holds a secret value %q:\n%s", leak, log)
		}
	}
	for _, want := range []string{"build sees [redacted]", "API_KEY=[redacted]", "MODE=plain"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(h.logs.String(), secret) {
		t.Error("Keystone's own log holds the secret")
	}
	// The status page's view of the container is redacted too.
	st, err := h.engine.ContainerState(context.Background(), h.App(t, "web"))
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Join(st.Output, "\n")
	if st.State != "running" || st.StartedAt.IsZero() || st.ImageID != d.ImageID ||
		!strings.Contains(out, "API_KEY=[redacted]") || strings.Contains(out, secret) {
		t.Errorf("container state %s since %v image %s, output:\n%s", st.State, st.StartedAt, st.ImageID, out)
	}
}

// TestTokenNeverLeaks: the installation token is in no argument list while
// git fetches, in no file under the data directory, in no log line (ours
// or the deployment's), in no stored error — also when the fetch fails.
func TestTokenNeverLeaks(t *testing.T) {
	h := newHarness(t, "tokens")
	var mu sync.Mutex
	var inArgs []string
	fetchesSeen := 0
	h.Git.OnRequest(func(r *http.Request) {
		// While git waits for this answer, its process and children exist.
		mu.Lock()
		defer mu.Unlock()
		fetchesSeen++
		for _, tok := range h.tokens.issued() {
			if pid := processWithArg(tok); pid != "" {
				inArgs = append(inArgs, pid)
			}
		}
	})
	sha := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha), store.StateSucceeded)

	// A fetch that fails: GitHub no longer accepts the token.
	h.GitHub.RevokeTokens()
	h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	var jobErrors string
	deploytest.Eventually(t, 30*time.Second, "the push job's failed fetch", func() (bool, error) {
		err := h.Store.Pool().QueryRow(context.Background(), `SELECT COALESCE(string_agg(e::text, ' '), '')
			FROM river_job, unnest(errors) e WHERE kind = 'push'`).Scan(&jobErrors)
		return strings.Contains(jobErrors, "GitHub refused") || strings.Contains(jobErrors, "401") ||
			strings.Contains(jobErrors, "git fetch"), err
	})
	_, reqErr := h.engine.Requester(h.jobs).Request(context.Background(), deploy.Request{
		AppID: h.App(t, "web").ID, Kind: store.KindDeploy, Actor: "bob", Trigger: store.TriggerComment})
	if reqErr == nil {
		t.Fatal("a deploy request needing a fetch succeeded with a revoked token")
	}

	tokens := h.tokens.issued()
	if len(tokens) == 0 || fetchesSeen == 0 {
		t.Fatalf("%d tokens issued, %d git requests seen: the test saw nothing", len(tokens), fetchesSeen)
	}
	mu.Lock()
	if len(inArgs) > 0 {
		t.Errorf("a token was in the argument list of processes %v", inArgs)
	}
	mu.Unlock()
	var logs strings.Builder
	rows, err := h.Store.Pool().Query(context.Background(), `SELECT line FROM deployment_log_lines
		UNION ALL SELECT description || health_error FROM deployments`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read the stored logs: %v", err)
	}
	if len(lines) == 0 {
		t.Fatal("no stored log line or description: nothing to search for tokens")
	}
	for _, l := range lines {
		logs.WriteString(l + "\n")
	}
	places := map[string]string{
		"Keystone's log": h.logs.String(), "stored logs and descriptions": logs.String(),
		"job errors": jobErrors, "the request's error": reqErr.Error(),
	}
	for _, tok := range tokens {
		for where, text := range places {
			if strings.Contains(text, tok) {
				t.Errorf("the token is in %s", where)
			}
		}
		if f := fileContaining(t, h.dataDir, tok); f != "" {
			t.Errorf("the token is written to %s", f)
		}
	}
}

// processWithArg returns the pid of a process whose argument list holds s.
func processWithArg(s string) string {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(s)) {
			return filepath.Base(filepath.Dir(f))
		}
	}
	return ""
}

// fileContaining returns a file under dir whose content holds s.
func fileContaining(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
