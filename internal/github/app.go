package github

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/bradleyfalzon/ghinstallation/v2"
	jwt "github.com/golang-jwt/jwt/v4"
	gh "github.com/google/go-github/v66/github"
)

// userAgent identifies Keystone to GitHub.
const userAgent = "keystone-app"

// App is the GitHub App client. It is safe for concurrent use.
type App struct {
	cfg     Config
	key     *rsa.PrivateKey
	baseURL *url.URL          // REST base, with trailing slash (go-github)
	rt      http.RoundTripper // the retrying transport, shared by every client
	app     *gh.Client

	mu    sync.Mutex
	insts map[int64]*installation
}

// installation is one installation's cached token source and client.
type installation struct {
	tr     *ghinstallation.Transport
	client *gh.Client
}

// New validates cfg, applies its defaults and builds the App client. It makes
// no request.
func New(cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	key, err := jwt.ParseRSAPrivateKeyFromPEM(cfg.PrivateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("github config: PrivateKeyPEM: %w", err)
	}
	base, err := parseAPIURL(cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("github config: APIURL: %w", err)
	}
	counter, err := newRequestCounter(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("github client: %w", err)
	}
	policy := RetryPolicy{MaxWait: cfg.MaxWait, RateLimitWait: cfg.RateLimitWait}
	a := &App{
		cfg:     cfg,
		key:     key,
		baseURL: base,
		rt:      newRetryingTransport(cfg, policy, counter, key),
		insts:   make(map[int64]*installation),
	}
	a.app = a.newClient(a.appsTransport())
	return a, nil
}

// appsTransport returns a new App-JWT transport. Each installation gets its
// own: ghinstallation writes to the AppsTransport while refreshing a token,
// so sharing one between installations would race.
func (a *App) appsTransport() *ghinstallation.AppsTransport {
	atr := ghinstallation.NewAppsTransportFromPrivateKey(a.rt, a.cfg.AppID, a.key)
	// ghinstallation wants scheme, host and path prefix, without the slash.
	atr.BaseURL = strings.TrimSuffix(a.baseURL.String(), "/")
	return atr
}

// newClient returns a go-github client over rt, pointed at the API URL.
func (a *App) newClient(rt http.RoundTripper) *gh.Client {
	c := gh.NewClient(&http.Client{Transport: rt})
	base := *a.baseURL
	c.BaseURL = &base
	if base.String() != DefaultAPIURL {
		// GitHub Enterprise Server serves uploads beside the REST API.
		upload := base
		if p, ok := strings.CutSuffix(upload.Path, "/api/v3/"); ok {
			upload.Path = p + "/api/uploads/"
		}
		c.UploadURL = &upload
	}
	c.UserAgent = userAgent
	return c
}

// AppClient returns the client authenticated as the App itself (JWT): for
// /app endpoints such as the App's webhook deliveries.
func (a *App) AppClient() *gh.Client { return a.app }

// Installation returns the client authenticated as installation
// installationID. Clients and tokens are cached: one token transport per
// installation, whose token ghinstallation renews a minute before expiry.
func (a *App) Installation(installationID int64) *gh.Client {
	return a.installation(installationID).client
}

func (a *App) installation(id int64) *installation {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in, ok := a.insts[id]; ok {
		return in
	}
	itr := ghinstallation.NewFromAppsTransport(a.appsTransport(), id)
	in := &installation{tr: itr}
	in.client = a.newClient(&installationTransport{itr: itr})
	a.insts[id] = in
	return in
}

// InstallationToken returns installation installationID's current access
// token (the cached one while it has more than a minute left), e.g. for
// `git fetch` with basic auth x-access-token:<token>. Tokens are opaque: no
// assumption is made about their form. The error never contains a token.
func (a *App) InstallationToken(ctx context.Context, installationID int64) (string, error) {
	tok, err := a.installation(installationID).tr.Token(ctx)
	if err != nil {
		closeRefusedTokenBody(err)
		return "", fmt.Errorf("get access token of installation %d: %w", installationID, err)
	}
	return tok, nil
}

// AppSlug returns the App's slug (GET /app); its bot user is "<slug>[bot]".
func (a *App) AppSlug(ctx context.Context) (string, error) {
	app, _, err := a.app.Apps.Get(ctx, "")
	if err != nil {
		return "", fmt.Errorf("get app %d: %w", a.cfg.AppID, err)
	}
	if app.GetSlug() == "" {
		return "", fmt.Errorf("get app %d: GitHub returned no slug", a.cfg.AppID)
	}
	return app.GetSlug(), nil
}

// CollaboratorPermission returns user's permission on owner/repo as GitHub
// reports it to installation inst: "admin", "write", "read" or "none" (the
// maintain role reports "write", triage "read"). An unknown user is an error
// for which IsNotFound is true.
func (a *App) CollaboratorPermission(ctx context.Context, inst int64, owner, repo, user string) (string, error) {
	var lvl *gh.RepositoryPermissionLevel
	err := a.withInstallation(inst, func(c *gh.Client) error {
		var err error
		lvl, _, err = c.Repositories.GetPermissionLevel(ctx, owner, repo, user)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("get permission of %s on %s/%s: %w", user, owner, repo, err)
	}
	return lvl.GetPermission(), nil
}

// IsNotFound reports whether err is, or wraps, GitHub answering 404, to an
// API call or to the token request of an unknown installation.
func IsNotFound(err error) bool {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode == http.StatusNotFound
	}
	var he *ghinstallation.HTTPError
	return errors.As(err, &he) && he.Response != nil && he.Response.StatusCode == http.StatusNotFound
}

// Installations returns the accounts the App is installed on (GET
// /app/installations, as the App), at most 100.
func (a *App) Installations(ctx context.Context) ([]string, error) {
	list, _, err := a.app.Apps.ListInstallations(ctx, &gh.ListOptions{PerPage: 100})
	if err != nil {
		return nil, fmt.Errorf("list installations of app %d: %w", a.cfg.AppID, err)
	}
	out := make([]string, 0, len(list))
	for _, in := range list {
		out = append(out, in.GetAccount().GetLogin())
	}
	return out, nil
}
