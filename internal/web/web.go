// Package web is Keystone's status page (SPEC §9): sign-in with a password
// or with GitHub, server-side sessions, CSRF tokens, the apps overview, app
// and deployment pages with the live log, the plain-text log, the audit log,
// and the redeploy, rollback and secret forms.
//
// Pages are rendered on the server from templates/html and work without
// JavaScript; the one script follows a running deployment's log over
// server-sent events.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/store"
)

// Defaults of Options.
const (
	DefaultSessionTTL   = 12 * time.Hour
	DefaultPollInterval = 300 * time.Millisecond
	// LoginFailureLimit failed sign-ins within LoginFailureWindow, for one
	// user name or from one address, make further attempts wait.
	LoginFailureLimit  = 5
	LoginFailureWindow = time.Minute
	housekeepingEvery  = 10 * time.Minute
)

// Options is what the status page is built from. Store, Accounts, Logger
// and PublicURL are required.
type Options struct {
	Store    *store.Store
	Accounts Accounts
	// Requester, Containers and Secrets may be nil (see seams.go).
	Requester  Requester
	Containers Containers
	Secrets    Secrets
	// Certificates may be nil: the app page then shows no HTTPS state.
	Certificates Certificates
	Logger       *slog.Logger
	// PublicURL is Keystone's base URL: cookies are Secure under https and
	// GitHub sends signed-in users back to it.
	PublicURL *url.URL
	// GitHubWebURL (no trailing slash) is where commits are linked and
	// OAuth sign-in happens; GitHubAPIURL (trailing slash) answers GET /user.
	GitHubWebURL string
	GitHubAPIURL string
	// Apps says where apps are served (KEYSTONE_APP_HOST, default the
	// public URL's host; the apps domain).
	Apps appurl.Config
	// OAuthClientID and OAuthClientSecret enable "Sign in with GitHub".
	OAuthClientID     string
	OAuthClientSecret string
	// OAuth, when set, is asked for the OAuth client at each sign-in instead
	// (a GitHub App created by the first-run setup while Keystone serves).
	OAuth func() (clientID, clientSecret string)
	// HTTPClient talks to GitHub for sign-in; default: 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock of relative times; default time.Now.
	Now func() time.Time
	// SessionTTL is how long a sign-in lasts (default 12 h).
	SessionTTL time.Duration
	// PollInterval is how often a live log asks the database for new lines.
	PollInterval time.Duration
}

// Handler serves the status page.
type Handler struct {
	opts     Options
	store    *store.Store
	log      *slog.Logger
	pages    *pages
	static   *staticFiles
	stopping chan struct{}
	streams  *streamSlots
}

// New checks opts, parses every template and hashes the static files: a
// broken template stops start-up here rather than failing a page later.
func New(opts Options) (*Handler, error) {
	switch {
	case opts.Store == nil:
		return nil, errors.New("web: Options.Store is required")
	case opts.Accounts == nil:
		return nil, errors.New("web: Options.Accounts is required")
	case opts.Logger == nil:
		return nil, errors.New("web: Options.Logger is required")
	case opts.PublicURL == nil:
		return nil, errors.New("web: Options.PublicURL is required")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	opts.GitHubWebURL = strings.TrimSuffix(opts.GitHubWebURL, "/")
	if opts.GitHubWebURL == "" {
		opts.GitHubWebURL = "https://github.com"
	}
	if opts.GitHubAPIURL == "" {
		opts.GitHubAPIURL = "https://api.github.com/"
	}
	if !strings.HasSuffix(opts.GitHubAPIURL, "/") {
		opts.GitHubAPIURL += "/"
	}
	if opts.Apps.AppHost == "" {
		opts.Apps.AppHost = opts.PublicURL.Hostname()
	}
	static, err := loadStatic()
	if err != nil {
		return nil, err
	}
	pg, err := parsePages(static)
	if err != nil {
		return nil, err
	}
	return &Handler{opts: opts, store: opts.Store, log: opts.Logger, pages: pg, static: static,
		stopping: make(chan struct{}), streams: newStreamSlots()}, nil
}

// oauthEnabled reports whether "Sign in with GitHub" is configured.
func (h *Handler) oauthEnabled() bool {
	id, secret := h.oauthClient()
	return id != "" && secret != ""
}

// oauthClient is the OAuth client id and secret in use now.
func (h *Handler) oauthClient() (id, secret string) {
	if h.opts.OAuth != nil {
		return h.opts.OAuth()
	}
	return h.opts.OAuthClientID, h.opts.OAuthClientSecret
}

// Mount registers the status page's routes on r. Every route but the sign-in
// pages and static files needs a session; every POST a CSRF token.
func (h *Handler) Mount(r *gin.Engine) {
	r.GET("/static/*file", h.serveStatic)
	r.GET("/login", h.loginForm)
	r.POST("/login", h.login)
	r.GET("/login/github", h.githubStart)
	r.GET("/login/github/callback", h.githubCallback)

	signed := r.Group("/", h.requireSession)
	signed.POST("/logout", h.checkCSRF, h.logout)
	signed.GET("/", h.overview)
	signed.GET("/apps/:owner/:repo/:app", h.appPage)
	signed.POST("/apps/:owner/:repo/:app/redeploy", h.checkCSRF, h.redeploy)
	signed.POST("/apps/:owner/:repo/:app/rollback", h.checkCSRF, h.rollback)
	signed.POST("/apps/:owner/:repo/:app/secrets", h.checkCSRF, h.requireRole(store.RoleAdmin), h.setSecret)
	signed.POST("/apps/:owner/:repo/:app/secrets/unset", h.checkCSRF, h.requireRole(store.RoleAdmin), h.unsetSecret)
	signed.GET("/deployments/:id", h.deploymentPage)
	signed.GET("/deployments/:id/log", h.plainLog)
	signed.GET("/deployments/:id/events", h.events)
	signed.GET("/audit", h.requireRole(store.RoleAdmin), h.audit)
	signed.GET("/users", h.requireRole(store.RoleAdmin), h.usersPage)
}

// Run removes expired sessions and old sign-in failures until ctx ends, then
// ends every live log stream so that shutdown does not wait for them (the
// browsers reconnect to the next Keystone).
func (h *Handler) Run(ctx context.Context) error {
	defer close(h.stopping)
	tick := time.NewTicker(housekeepingEvery)
	defer tick.Stop()
	for {
		h.housekeeping(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (h *Handler) housekeeping(ctx context.Context) {
	n, err := h.store.DeleteExpiredSessions(ctx)
	if err == nil {
		err = h.store.PruneLoginFailures(ctx, time.Hour)
	}
	if err != nil && ctx.Err() == nil {
		h.log.Warn("status page housekeeping failed", slog.String("error", err.Error()))
		return
	}
	if n > 0 {
		h.log.Info("expired sessions removed", slog.Int64("sessions", n))
	}
}

// appKey is owner/repo/app from a route's parameters.
func appKey(c *gin.Context) (owner, repo, app string) {
	return c.Param("owner"), c.Param("repo"), c.Param("app")
}

// appPath is the app page's path.
func appPath(a store.App) string {
	return "/apps/" + url.PathEscape(a.Owner) + "/" + url.PathEscape(a.Repo) + "/" + url.PathEscape(a.Name)
}

func deploymentPath(id int64) string { return fmt.Sprintf("/deployments/%d", id) }
