package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/webhook"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const secret = "serve-test-secret"

func pushFixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "webhook", "testdata", "github-webhooks", "push", "with-new-branch.payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func postDelivery(url, guid string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/webhooks/github", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-Hub-Signature-256", webhook.Sign([]byte(secret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestAcknowledgedDeliverySurvivesSIGKILL: every delivery answered 202 is in
// the database with its job even when Keystone is killed right after, and the
// next Keystone works those jobs.
func TestAcknowledgedDeliverySurvivesSIGKILL(t *testing.T) {
	dbURL := storetest.Fresh(t)
	env := map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_GITHUB_WEBHOOK_SECRET": secret, "KEYSTONE_DATA_DIR": t.TempDir()}
	ks := keystonetest.Start(t, env)
	body := pushFixture(t)

	const deliveries = 40
	var wg sync.WaitGroup
	acked := make([]bool, deliveries)
	for i := range deliveries {
		wg.Go(func() {
			code, err := postDelivery(ks.URL, fmt.Sprintf("kill-%d", i), body)
			acked[i] = err == nil && code == http.StatusAccepted
		})
	}
	wg.Wait()
	ks.Kill()

	pool, err := pgxpool.New(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i, ok := range acked {
		if !ok {
			t.Fatalf("delivery %d was not acknowledged", i)
		}
		var jobs int
		err := pool.QueryRow(t.Context(), `
			SELECT count(j.id) FROM webhook_deliveries d
			JOIN river_job j ON j.kind = 'push' AND (j.args->>'delivery_id')::bigint = d.id
			WHERE d.guid = $1`, fmt.Sprintf("kill-%d", i)).Scan(&jobs)
		if err != nil || jobs != 1 {
			t.Fatalf("delivery kill-%d after SIGKILL: %d jobs, err %v", i, jobs, err)
		}
	}

	keystonetest.Start(t, env)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var unprocessed int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL`).Scan(&unprocessed); err != nil {
			t.Fatal(err)
		}
		if unprocessed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still unprocessed after restart", unprocessed)
		}
		time.Sleep(50 * time.Millisecond) // polling the awaited condition
	}
}

func TestServeStopsOnSIGTERM(t *testing.T) {
	ks := keystonetest.Start(t, map[string]string{"DATABASE_URL": storetest.Fresh(t), "KEYSTONE_DATA_DIR": t.TempDir()})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := ks.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ks.Output(), "keystone stopping") {
		t.Fatalf("no clean stop in the log:\n%s", ks.Output())
	}
}

func TestCommands(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		exit     int
		contains string
	}{
		{"version", []string{"version"}, nil, 0, "keystone "},
		{"no command", nil, nil, 2, "usage: keystone"},
		{"unknown command", []string{"deploy-everything"}, nil, 2, `unknown command "deploy-everything"`},
		{"extra argument", []string{"version", "now"}, nil, 2, "version takes no arguments"},
		{"bad config", []string{"migrate"}, map[string]string{"KEYSTONE_WORKERS": "lots"}, 1, "KEYSTONE_WORKERS"},
		{"migrate without database", []string{"migrate"}, nil, 1, "DATABASE_URL is not set"},
		{"proxy with a TCP admin address", []string{"proxy"}, map[string]string{"KEYSTONE_PROXY_ADMIN": "tcp://0.0.0.0:9000"}, 1, "KEYSTONE_PROXY_ADMIN"},
		{"proxy with Keystone under the apps domain", []string{"proxy"}, map[string]string{
			"KEYSTONE_APPS_DOMAIN": "example.com", "KEYSTONE_PUBLIC_URL": "https://keystone.example.com"}, 1, "KEYSTONE_PUBLIC_URL"},
		{"proxy with an argument", []string{"proxy", "now"}, nil, 2, "proxy takes no arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			e := env{args: c.args, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
				lookup: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }}
			err := dispatch(t.Context(), e)
			if got := exitCode(err); got != c.exit {
				t.Fatalf("exit %d, want %d (err %v)", got, c.exit, err)
			}
			if all := out.String() + errOut.String(); !strings.Contains(all, c.contains) {
				t.Fatalf("output %q lacks %q", all, c.contains)
			}
		})
	}
}

func TestMigrateCommand(t *testing.T) {
	dbURL := storetest.Fresh(t)
	var out bytes.Buffer
	e := env{args: []string{"migrate"}, stdin: strings.NewReader(""), stdout: &out, stderr: &out,
		lookup: func(k string) (string, bool) {
			if k == "DATABASE_URL" {
				return dbURL, true
			}
			return "", false
		}}
	if err := dispatch(t.Context(), e); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "migrations applied") {
		t.Fatalf("output %q", out.String())
	}
}
