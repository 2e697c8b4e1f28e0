package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestStatusPageInKeystone runs the real binary: a user added with
// `keystone user add` signs in to the page `keystone serve` serves, follows
// a running deployment's live log, and SIGTERM does not wait for that
// stream.
func TestStatusPageInKeystone(t *testing.T) {
	dbURL := storetest.Fresh(t)
	add := exec.Command(keystonetest.Binary(t), "user", "add", "olivia", "--role", "viewer")
	add.Env = []string{"DATABASE_URL=" + dbURL, "PATH=/usr/bin:/bin"}
	add.Stdin = strings.NewReader("olivia-password-1\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("keystone user add: %v\n%s", err, out)
	}
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := storetest.AddApp(t.Context(), st.Pool(), store.App{Owner: "acme", Repo: "shop", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := storetest.AddDeployment(t.Context(), st.Pool(), store.Deployment{AppID: a.ID, State: store.StateRunning})
	if err != nil {
		t.Fatal(err)
	}

	ks := keystonetest.Start(t, map[string]string{"DATABASE_URL": dbURL, "KEYSTONE_DATA_DIR": t.TempDir()})
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(ks.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("GET /login: %d %v", resp.StatusCode, resp.Header)
	}
	token := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(string(body))
	if token == nil {
		t.Fatal("no CSRF token on /login")
	}
	resp, err = hc.PostForm(ks.URL+"/login", url.Values{"csrf_token": {token[1]}, "name": {"olivia"}, "password": {"olivia-password-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: HTTP %d", resp.StatusCode)
	}
	resp, err = hc.Get(ks.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `href="/apps/acme/shop/web"`) {
		t.Fatalf("GET / signed in: %d\n%s", resp.StatusCode, body)
	}

	// A live log stream is open while Keystone is asked to stop.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/deployments/%d/events", ks.URL, d.ID), nil)
	resp, err = hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first event line %q, %v", line, err)
	}
	stopCtx, stopCancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer stopCancel()
	if err := ks.Stop(stopCtx); err != nil {
		t.Fatalf("keystone did not stop within 10s with a live log open (shutdown waits up to 20s for requests): %v", err)
	}
}
