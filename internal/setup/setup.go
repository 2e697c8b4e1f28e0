// Package setup is Keystone's first run (SPEC §15): the one-time setup link
// logged at start, the /setup pages that create the GitHub App from its
// manifest in one click, the storage of the App's credentials (encrypted,
// in one transaction) and the first admin user.
//
// Every grant (the link, the manifest's state, the right to add the first
// admin) is a random value of which only the SHA-256 is stored, good once,
// for one hour. Nothing secret is ever shown on a page or written to a log.
package setup

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
)

// GrantTTL is how long the setup link, a manifest's state and the right to
// add the first admin last.
const GrantTTL = time.Hour

// Accounts adds the first admin user; *users.Directory implements it.
type Accounts interface {
	Add(ctx context.Context, actor string, nu users.NewUser) (store.User, error)
}

// Config is what the setup works with. Every field but HTTPClient and Now
// is required.
type Config struct {
	Store        *store.Store
	Keys         *secrets.Keyring
	Accounts     Accounts
	Logger       *slog.Logger
	PublicURL    *url.URL
	GitHubWebURL string // no trailing slash
	GitHubAPIURL string
	AppYML       []byte
	// Configured reports whether a GitHub App is configured now, from the
	// environment or stored: setup refuses to run then.
	Configured func() bool
	// Prepare checks new credentials and returns what starts using them. It
	// is called before they are stored; apply runs once they are committed.
	Prepare func(github.AppCredentials) (apply func(), err error)
	// HTTPClient converts manifest codes; default: 30 s timeout.
	HTTPClient *http.Client
	Now        func() time.Time
}

// Service runs the setup.
type Service struct {
	cfg      Config
	manifest Manifest
}

// New checks cfg and builds the manifest from app.yml.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Accounts == nil || cfg.Logger == nil || cfg.PublicURL == nil ||
		cfg.Configured == nil || cfg.Prepare == nil {
		return nil, errors.New("setup: Store, Keys, Accounts, Logger, PublicURL, Configured and Prepare are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.GitHubWebURL = strings.TrimSuffix(cfg.GitHubWebURL, "/")
	m, err := BuildManifest(cfg.AppYML, cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, manifest: m}, nil
}

// Manifest is what setup sends to GitHub.
func (s *Service) Manifest() Manifest { return s.manifest }

// IssueLink makes a one-time setup link and audits it; "" when an App is
// configured already (there is nothing to set up).
func (s *Service) IssueLink(ctx context.Context) (string, error) {
	if s.cfg.Configured() {
		return "", nil
	}
	token, hash := newGrant()
	err := s.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		now := s.cfg.Now()
		if err := q.PruneSetupGrants(ctx, now.Add(-24*time.Hour)); err != nil {
			return err
		}
		if err := q.InsertSetupGrant(ctx, hash, store.GrantLink, now.Add(GrantTTL)); err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: "keystone", Action: store.AuditSetupLinkIssued, Target: "setup",
			Details: map[string]any{"expires_in": GrantTTL.String()}})
	})
	if err != nil {
		return "", fmt.Errorf("issue the setup link: %w", err)
	}
	return s.base() + "/setup?token=" + url.QueryEscape(token), nil
}

func (s *Service) base() string { return strings.TrimSuffix(s.cfg.PublicURL.String(), "/") }

// newGrant returns a random token and its SHA-256.
func newGrant() (token string, hash []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails (Go ≥ 1.24)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, hashOf(token)
}

func hashOf(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// grantProblem says, for a person, why a grant was refused.
func grantProblem(err error, what string) string {
	switch {
	case errors.Is(err, store.ErrGrantUsed):
		return "This " + what + " was already used: each is good once."
	case errors.Is(err, store.ErrGrantExpired):
		return "This " + what + " has expired: each is good for one hour."
	default:
		return "This " + what + " is not one Keystone issued."
	}
}

// audit records a setup step; a failure to audit is logged, the step's own
// answer stands (refusals change nothing that the trail would miss).
func (s *Service) audit(ctx context.Context, action string, details map[string]any) {
	err := s.cfg.Store.AppendAudit(ctx, store.AuditEvent{Actor: "setup", Action: action, Target: "setup", Details: details})
	if err != nil {
		s.cfg.Logger.Error("setup step not audited", slog.String("action", action), slog.String("error", err.Error()))
	}
}

// complete converts code and stores the App, all or nothing: the state is
// used, the credentials stored, the admin grant made and the step audited in
// one transaction; then the App is used at once. It returns the App and the
// admin grant's token.
func (s *Service) complete(ctx context.Context, state, code string) (github.AppCredentials, string, error) {
	creds, err := github.CompleteManifest(ctx, s.cfg.GitHubAPIURL, s.cfg.HTTPClient, code)
	if err != nil {
		return github.AppCredentials{}, "", err
	}
	apply, err := s.cfg.Prepare(creds)
	if err != nil {
		return github.AppCredentials{}, "", fmt.Errorf("the App GitHub returned is not usable: %w", err)
	}
	row, err := seal(s.cfg.Keys, creds)
	if err != nil {
		return github.AppCredentials{}, "", err
	}
	row.CreatedBy = "setup"
	adminToken, adminHash := newGrant()
	err = s.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		now := s.cfg.Now()
		if err := q.CheckSetupGrant(ctx, hashOf(state), store.GrantState, now, true); err != nil {
			return &refusal{status: http.StatusForbidden, message: grantProblem(err, "setup state")}
		}
		if err := q.InsertAppCredentials(ctx, row); err != nil {
			return err
		}
		if err := q.InsertSetupGrant(ctx, adminHash, store.GrantAdmin, now.Add(GrantTTL)); err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: "setup", Action: store.AuditSetupAppCreated, Target: "github_app",
			Details: map[string]any{"app_id": creds.AppID, "slug": creds.Slug, "html_url": creds.HTMLURL}})
	})
	if err != nil {
		return github.AppCredentials{}, "", err
	}
	apply()
	s.cfg.Logger.Info("GitHub App created by setup and in use", slog.Int64("github_app_id", creds.AppID), slog.String("slug", creds.Slug))
	return creds, adminToken, nil
}

// refusal is a setup step refused, with what the person is told.
type refusal struct {
	status  int
	message string
}

func (r *refusal) Error() string { return r.message }
