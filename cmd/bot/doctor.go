package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/setup"
	"github.com/keystone-app/keystone/internal/store"
)

// doctorTimeout bounds each check: a hung dependency is a failure, not a hang.
const doctorTimeout = 10 * time.Second

// check is one line of `keystone doctor`. run returns what it found; an
// error fails the check. Neither may hold a secret.
type check struct {
	name string
	run  func(ctx context.Context) (string, error)
}

// doctor is `keystone doctor` (SPEC §15): one line per check, non-zero when
// any fails. Checks that need the database or the App run only once those
// are known.
func doctor(ctx context.Context, e env) error {
	if err := noArgs(e, "doctor"); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	d := &doctorState{cfg: cfg, lookup: e.lookup}
	defer d.close()
	checks := []check{
		{"database", d.database},
		{"docker", d.docker},
		{"buildkit", d.buildkit},
		{"router", d.router},
		{"github app", d.githubApp},
		{"installations", d.installations},
		{"webhook", d.webhook},
		{"public url", d.publicURL},
	}
	failed := 0
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, doctorTimeout)
		detail, err := c.run(cctx)
		cancel()
		if err != nil {
			failed++
			fmt.Fprintf(e.stdout, "FAIL %-14s %s\n", c.name, oneLine(err.Error()))
			continue
		}
		fmt.Fprintf(e.stdout, "ok   %-14s %s\n", c.name, oneLine(detail))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(checks))
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// errSkipped fails a check whose prerequisite failed.
var errSkipped = errors.New("not checked: an earlier check failed")

// doctorState carries what one check finds to the next.
type doctorState struct {
	cfg    config.Config
	lookup func(string) (string, bool)
	st     *store.Store
	app    *github.App
	secret []byte
	ping   *buildPing
}

type buildPing struct{ osType, apiVersion string }

func (d *doctorState) close() {
	if d.st != nil {
		d.st.Close()
	}
}

func (d *doctorState) database(ctx context.Context) (string, error) {
	if d.cfg.DatabaseURL == "" {
		return "", errors.New("DATABASE_URL is not set")
	}
	st, err := store.Open(ctx, d.cfg.DatabaseURL)
	if err != nil {
		return "", err
	}
	d.st = st
	var version string
	if err := st.Pool().QueryRow(ctx, `SHOW server_version`).Scan(&version); err != nil {
		return "", fmt.Errorf("query the database: %w", err)
	}
	return "PostgreSQL " + version + " reachable", nil
}

func (d *doctorState) docker(ctx context.Context) (string, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host, ok := d.lookup("DOCKER_HOST"); ok && host != "" {
		opts = append(opts, client.WithHost(host)) // the command's environment, as serve sees it
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return "", fmt.Errorf("docker client: %w", err)
	}
	defer c.Close()
	p, err := c.Ping(ctx)
	if err != nil {
		return "", fmt.Errorf("the Docker engine does not answer (DOCKER_HOST %s): %w", c.DaemonHost(), err)
	}
	v, err := c.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("docker version: %w", err)
	}
	d.ping = &buildPing{osType: p.OSType, apiVersion: p.APIVersion}
	return fmt.Sprintf("Engine %s (API %s) at %s", v.Version, v.APIVersion, c.DaemonHost()), nil
}

// buildkit reports whether Keystone's builds get BuildKit, by the rule the
// deploy engine applies (a Linux engine of API 1.39 or later). Without it
// builds fall back to the legacy builder, which works but cannot serve
// build_secrets or RUN --mount, so that is said, not failed.
func (d *doctorState) buildkit(context.Context) (string, error) {
	if d.ping == nil {
		return "", errSkipped
	}
	if d.ping.osType != "windows" && versions.GreaterThanOrEqualTo(d.ping.apiVersion, "1.39") {
		return "the engine serves BuildKit (API " + d.ping.apiVersion + "): builds use it", nil
	}
	return "no BuildKit on this engine (" + d.ping.osType + ", API " + d.ping.apiVersion + "): builds fall back to the legacy builder; build_secrets and RUN --mount will fail", nil
}

// router asks the router's admin API for its health when KEYSTONE_PROXY_ADMIN
// is set. Unset is not a failure: apps are then served on their host ports.
func (d *doctorState) router(ctx context.Context) (string, error) {
	if raw, ok := d.lookup("KEYSTONE_PROXY_ADMIN"); !ok || strings.TrimSpace(raw) == "" {
		return "not configured (KEYSTONE_PROXY_ADMIN unset): apps are served on their host ports", nil
	}
	socket := d.cfg.Router.AdminSocket
	if err := routerapi.NewClient(socket).Health(ctx); err != nil {
		return "", fmt.Errorf("the router's admin socket %s does not answer: is keystone proxy running? (%v)", socket, err)
	}
	return "admin socket unix://" + socket + " answers", nil
}

// githubApp builds the App client from the environment or what setup
// stored, and has GitHub accept its JWT (GET /app).
func (d *doctorState) githubApp(ctx context.Context) (string, error) {
	id, key, source := d.cfg.GitHubAppID, d.cfg.GitHubPrivateKeyPEM, "environment"
	d.secret = d.cfg.WebhookSecret
	if !d.cfg.GitHubAppConfigured() {
		if d.st == nil {
			return "", errSkipped
		}
		keys, err := secrets.NewKeyring(d.cfg.EncryptionKeys)
		if err != nil {
			return "", err
		}
		stored, ok, err := setup.Load(ctx, d.st, keys)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", errors.New("no GitHub App configured: keystone serve logs a one-time setup link that creates it")
		}
		id, key, source = stored.AppID, []byte(stored.PrivateKeyPEM), "stored by setup"
		if len(d.secret) == 0 {
			d.secret = []byte(stored.WebhookSecret)
		}
	}
	app, err := github.New(github.Config{AppID: id, PrivateKeyPEM: key, APIURL: d.cfg.GitHubAPIURL, MaxAttempts: 1})
	if err != nil {
		return "", err
	}
	slug, err := app.AppSlug(ctx)
	if err != nil {
		return "", fmt.Errorf("GitHub refused the App's JWT (App %d, %s): %w", id, source, err)
	}
	d.app = app
	return fmt.Sprintf("App %s (id %d, %s): GitHub accepts its JWT", slug, id, source), nil
}

func (d *doctorState) installations(ctx context.Context) (string, error) {
	if d.app == nil {
		return "", errSkipped
	}
	accounts, err := d.app.Installations(ctx)
	if err != nil {
		return "", err
	}
	if len(accounts) == 0 {
		return "", errors.New("the App is installed nowhere yet: install it on the repositories to deploy")
	}
	return fmt.Sprintf("%d: %s", len(accounts), strings.Join(accounts, ", ")), nil
}

// webhook compares the secret with GitHub's recent deliveries: a refused
// one (401) means GitHub signs with another secret. It fails only when the
// most recent delivery failed (SPEC §15); earlier failures are listed.
func (d *doctorState) webhook(ctx context.Context) (string, error) {
	if d.app == nil {
		return "", errSkipped
	}
	if len(d.secret) == 0 {
		return "", errors.New("no webhook secret (KEYSTONE_GITHUB_WEBHOOK_SECRET or setup): every webhook is refused")
	}
	list, _, err := d.app.ListHookDeliveries(ctx, "", 30)
	if err != nil {
		return "", err
	}
	if len(list) == 0 {
		return "secret set; GitHub has sent no delivery yet", nil
	}
	var failed []string
	for _, dl := range list {
		if !dl.Succeeded() {
			failed = append(failed, fmt.Sprintf("%s %s → %s", dl.Event, dl.DeliveredAt.UTC().Format("15:04:05"), statusText(dl.StatusCode)))
		}
	}
	last := list[0]
	summary := fmt.Sprintf("%d recent deliveries, %d failed", len(list), len(failed))
	if len(failed) > 0 {
		summary += ": " + strings.Join(failed[:min(len(failed), 5)], "; ")
	}
	if !last.Succeeded() {
		why := "Keystone did not accept it"
		switch last.StatusCode {
		case http.StatusUnauthorized:
			why = "Keystone refused its signature: the webhook secret differs from the App's"
		case 0:
			why = "GitHub could not reach Keystone: check the public URL"
		}
		return "", fmt.Errorf("the most recent delivery failed (%s); %s. %s", statusText(last.StatusCode), why, summary)
	}
	return summary, nil
}

func statusText(code int) string {
	if code == 0 {
		return "no answer"
	}
	return fmt.Sprintf("HTTP %d", code)
}

// publicURL fetches KEYSTONE_PUBLIC_URL/healthz from this host.
func (d *doctorState) publicURL(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(d.cfg.PublicURL.String(), "/") + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("not reachable from this host (is keystone serve running, and the tunnel up?): %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered HTTP %d, want 200 from Keystone", u, resp.StatusCode)
	}
	return u + " answers", nil
}
