package web

import (
	"context"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/store"
)

// What the status page asks of the rest of Keystone. Each may be nil: the
// page then hides what it would show (secrets), says it is not available
// (container state) or refuses the action (redeploy, rollback).

// Accounts signs people in. *users.Directory implements it.
type Accounts interface {
	// Authenticate returns the user if password is theirs, and
	// users.ErrBadCredentials (or any error) if not.
	Authenticate(ctx context.Context, name, password string) (store.User, error)
	// ByGitHubIdentity returns the user the GitHub account (numeric id and
	// current login) signs in as, or store.ErrNotFound.
	ByGitHubIdentity(ctx context.Context, id int64, login string) (store.User, error)
}

// Requester queues redeploys and rollbacks exactly as the comment commands
// do, and audits the request. (*deploy.Requester).Request implements it. Its
// errors are refusals written for the person asking (locked app, nothing to
// roll back to) and are shown to them.
type Requester interface {
	Request(ctx context.Context, req deploy.Request) (store.Deployment, error)
}

// Containers reads an app's container from the Docker engine.
type Containers interface {
	State(ctx context.Context, app store.App) (ContainerState, error)
}

// ContainerState is what the app page shows of the app's serving container.
type ContainerState struct {
	// State is Docker's (running, restarting, exited, …); "" when the app
	// has no container.
	State     string
	StartedAt time.Time
	Image     string
	// Output is the container's last lines of output (about 100), with
	// secret values already redacted.
	Output []string
	// Foreign describes containers that carry the app's labels but that
	// Keystone did not create (e.g. "3f2a1b9c0d4e mallory-x (evil:latest,
	// running)"): Keystone leaves them alone, and says so.
	Foreign []string
}

// Secrets manages an app's secret variables by name; values are write-only.
// *secrets.Service implements it; its *secrets.InputError refusals (which
// never hold a value) and not-found errors are shown to the admin.
type Secrets interface {
	List(ctx context.Context, owner, repo, app string) ([]string, error)
	Set(ctx context.Context, actor, owner, repo, app, key, value string) error
	Unset(ctx context.Context, actor, owner, repo, app, key string) error
	// The same for the secrets only the app's previews get.
	ListPreview(ctx context.Context, owner, repo, app string) ([]string, error)
	SetPreview(ctx context.Context, actor, owner, repo, app, key, value string) error
	UnsetPreview(ctx context.Context, actor, owner, repo, app, key string) error
}

// Certificates reads the router's HTTPS certificates (domain mode with
// KEYSTONE_TLS=acme). The server's adapter over `keystone proxy`'s admin API
// implements it.
type Certificates interface {
	Certificates(ctx context.Context) ([]Certificate, error)
}

// Certificate is the router's state of one host name's certificate: the
// issuer and expiry of the one it holds (zero when none yet), and the last
// failed attempt to get one.
type Certificate struct {
	Host        string
	Issuer      string
	NotAfter    time.Time
	LastError   string
	LastErrorAt time.Time
}
