package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/keystone-app/keystone"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/setup"
	"github.com/keystone-app/keystone/internal/users"
)

// credentials are the GitHub App's credentials in use: the App client
// (p.github), the webhook secret and the OAuth client. Each comes from the
// environment when set there, else from what the first-run setup stored, at
// start or while serving (SPEC §15).
type credentials struct {
	mu            sync.RWMutex
	webhookSecret []byte
	oauthID       string
	oauthSecret   string
	// envWebhook and envOAuth: the environment set them, and wins.
	envWebhook, envOAuth bool
}

func (c *credentials) WebhookSecret() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.webhookSecret
}

func (c *credentials) OAuth() (id, secret string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.oauthID, c.oauthSecret
}

// adopt takes stored credentials where the environment set none.
func (c *credentials) adopt(s github.AppCredentials) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.envWebhook {
		c.webhookSecret = []byte(s.WebhookSecret)
	}
	if !c.envOAuth {
		c.oauthID, c.oauthSecret = s.OAuthClientID, s.OAuthClientSecret
	}
}

// loadCredentials fills p.creds and p.github from the environment and the
// database, the environment winning; production refuses an App without a
// webhook secret.
func (p *parts) loadCredentials(ctx context.Context) error {
	cfg := p.cfg
	p.creds = &credentials{webhookSecret: cfg.WebhookSecret, oauthID: cfg.OAuthClientID, oauthSecret: cfg.OAuthClientSecret,
		envWebhook: len(cfg.WebhookSecret) > 0, envOAuth: cfg.OAuthClientID != ""}
	p.github = github.NewLive(nil)
	if cfg.GitHubAppConfigured() {
		app, err := p.newApp(cfg.GitHubAppID, cfg.GitHubPrivateKeyPEM)
		if err != nil {
			return err
		}
		p.github.Set(app)
	} else {
		stored, ok, err := setup.Load(ctx, p.store, p.keys)
		if err != nil {
			return err
		}
		if ok {
			app, err := p.newApp(stored.AppID, []byte(stored.PrivateKeyPEM))
			if err != nil {
				return err
			}
			p.github.Set(app)
			p.creds.adopt(stored)
			p.logger.Info("GitHub App credentials stored by setup in use", slog.Int64("github_app_id", stored.AppID))
		}
	}
	if cfg.Production() && p.github.Configured() && len(p.creds.WebhookSecret()) == 0 {
		return errors.New("KEYSTONE_GITHUB_WEBHOOK_SECRET: required in production")
	}
	return nil
}

// newApp builds the App client; it can be built only once per process with
// the metrics registry, so later ones (setup) get none.
func (p *parts) newApp(id int64, key []byte) (*github.App, error) {
	gc := github.Config{AppID: id, PrivateKeyPEM: key, APIURL: p.cfg.GitHubAPIURL, Logger: p.logger}
	if !p.githubMetrics {
		gc.Registerer = p.registry
		p.githubMetrics = true
	}
	return github.New(gc)
}

// addSetup mounts /setup (SPEC §15); at start, with no App configured, it
// logs the one-time setup link.
func (p *parts) addSetup() error {
	accounts, err := users.NewDirectory(p.store, users.DefaultParams())
	if err != nil {
		return err
	}
	svc, err := setup.New(setup.Config{
		Store: p.store, Keys: p.keys, Accounts: accounts, Logger: p.logger, PublicURL: p.cfg.PublicURL,
		GitHubWebURL: p.cfg.GitHubWebURL, GitHubAPIURL: p.cfg.GitHubAPIURL, AppYML: keystone.AppManifest,
		Configured: p.github.Configured, Prepare: p.prepareApp,
	})
	if err != nil {
		return err
	}
	p.mounts = append(p.mounts, svc.Mount)
	p.setup = svc
	return nil
}

// prepareApp checks the App setup received and returns what puts it in use.
func (p *parts) prepareApp(s github.AppCredentials) (func(), error) {
	p.setupMu.Lock()
	defer p.setupMu.Unlock()
	app, err := p.newApp(s.AppID, []byte(s.PrivateKeyPEM))
	if err != nil {
		return nil, err
	}
	return func() {
		p.creds.adopt(s)
		p.github.Set(app)
		if p.cfg.Production() && len(p.creds.WebhookSecret()) == 0 {
			p.logger.Error("the GitHub App has no webhook secret: every webhook will be refused")
		}
	}, nil
}

// logSetupLink logs the one-time setup link when no App is configured.
func (p *parts) logSetupLink(ctx context.Context) error {
	link, err := p.setup.IssueLink(ctx)
	if err != nil || link == "" {
		return err
	}
	// The link is a one-time grant, not a credential of the App: it is what
	// the operator needs from this log, and is useless once spent or an hour old.
	p.logger.Warn("no GitHub App configured: open this one-time link (valid 1 h) to create it in one click",
		slog.String("setup_url", link))
	return nil
}

// waitForApp runs run once the GitHub App is configured.
func (p *parts) waitForApp(run func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-p.github.Ready():
			return run(ctx)
		case <-ctx.Done():
			return nil
		}
	}
}
