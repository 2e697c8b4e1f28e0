package github

import (
	"context"
	"errors"
	"sync"
)

// ErrNotConfigured is returned by a Live whose App is not configured yet.
var ErrNotConfigured = errors.New("the GitHub App is not configured yet (open the setup link, or set KEYSTONE_GITHUB_APP_ID)")

// Live is the GitHub App client as Keystone runs: empty until an App is
// configured, from the environment at start or by the first-run setup while
// serving (SPEC §15), and then used at once by every capability holding it.
// Its methods are App's; they return ErrNotConfigured while it is empty.
type Live struct {
	mu    sync.RWMutex
	app   *App
	ready chan struct{}
}

// NewLive returns a Live holding app (nil: not configured yet).
func NewLive(app *App) *Live {
	l := &Live{ready: make(chan struct{})}
	if app != nil {
		l.Set(app)
	}
	return l
}

// Set configures the App. The first Set wakes every Ready waiter; a later
// one replaces the App (tokens of the old one are dropped with it).
func (l *Live) Set(app *App) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.app == nil {
		close(l.ready)
	}
	l.app = app
}

// Ready is closed once an App is configured.
func (l *Live) Ready() <-chan struct{} { return l.ready }

// Configured reports whether an App is configured.
func (l *Live) Configured() bool { return l.current() != nil }

// App returns the configured App, or nil.
func (l *Live) App() *App { return l.current() }

func (l *Live) current() *App {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.app
}

func (l *Live) get() (*App, error) {
	if a := l.current(); a != nil {
		return a, nil
	}
	return nil, ErrNotConfigured
}

// AppID is the App's id, 0 while none is configured.
func (l *Live) AppID() int64 {
	if a := l.current(); a != nil {
		return a.AppID()
	}
	return 0
}

func (l *Live) InstallationToken(ctx context.Context, installationID int64) (string, error) {
	a, err := l.get()
	if err != nil {
		return "", err
	}
	return a.InstallationToken(ctx, installationID)
}

func (l *Live) AppSlug(ctx context.Context) (string, error) {
	a, err := l.get()
	if err != nil {
		return "", err
	}
	return a.AppSlug(ctx)
}

func (l *Live) CollaboratorPermission(ctx context.Context, inst int64, owner, repo, user string) (string, error) {
	a, err := l.get()
	if err != nil {
		return "", err
	}
	return a.CollaboratorPermission(ctx, inst, owner, repo, user)
}

func (l *Live) CreateStatus(ctx context.Context, inst int64, owner, repo, sha string, s Status) error {
	a, err := l.get()
	if err != nil {
		return err
	}
	return a.CreateStatus(ctx, inst, owner, repo, sha, s)
}

func (l *Live) LatestStatus(ctx context.Context, inst int64, owner, repo, sha, context string) (Status, bool, error) {
	a, err := l.get()
	if err != nil {
		return Status{}, false, err
	}
	return a.LatestStatus(ctx, inst, owner, repo, sha, context)
}

func (l *Live) CreateComment(ctx context.Context, inst int64, owner, repo string, number int, body string) (Comment, error) {
	a, err := l.get()
	if err != nil {
		return Comment{}, err
	}
	return a.CreateComment(ctx, inst, owner, repo, number, body)
}

func (l *Live) EditComment(ctx context.Context, inst int64, owner, repo string, id int64, body string) error {
	a, err := l.get()
	if err != nil {
		return err
	}
	return a.EditComment(ctx, inst, owner, repo, id, body)
}

func (l *Live) FindComment(ctx context.Context, inst int64, owner, repo string, number int, match func(Comment) bool) (Comment, bool, error) {
	a, err := l.get()
	if err != nil {
		return Comment{}, false, err
	}
	return a.FindComment(ctx, inst, owner, repo, number, match)
}

func (l *Live) CreateReaction(ctx context.Context, inst int64, owner, repo string, commentID int64, content string) error {
	a, err := l.get()
	if err != nil {
		return err
	}
	return a.CreateReaction(ctx, inst, owner, repo, commentID, content)
}

func (l *Live) PullRequestsForCommit(ctx context.Context, inst int64, owner, repo, sha string) ([]PullRequest, error) {
	a, err := l.get()
	if err != nil {
		return nil, err
	}
	return a.PullRequestsForCommit(ctx, inst, owner, repo, sha)
}

func (l *Live) ListHookDeliveries(ctx context.Context, cursor string, perPage int) ([]HookDelivery, string, error) {
	a, err := l.get()
	if err != nil {
		return nil, "", err
	}
	return a.ListHookDeliveries(ctx, cursor, perPage)
}

func (l *Live) RedeliverHookDelivery(ctx context.Context, id int64) error {
	a, err := l.get()
	if err != nil {
		return err
	}
	return a.RedeliverHookDelivery(ctx, id)
}

func (l *Live) CreateDeployment(ctx context.Context, inst int64, owner, repo string, d NewDeployment) (int64, error) {
	a, err := l.get()
	if err != nil {
		return 0, err
	}
	return a.CreateDeployment(ctx, inst, owner, repo, d)
}

func (l *Live) FindDeployment(ctx context.Context, inst int64, owner, repo, sha, environment string, match func(Deployment) bool) (Deployment, bool, error) {
	a, err := l.get()
	if err != nil {
		return Deployment{}, false, err
	}
	return a.FindDeployment(ctx, inst, owner, repo, sha, environment, match)
}

func (l *Live) CreateDeploymentStatus(ctx context.Context, inst int64, owner, repo string, id int64, s DeploymentStatus) error {
	a, err := l.get()
	if err != nil {
		return err
	}
	return a.CreateDeploymentStatus(ctx, inst, owner, repo, id, s)
}

func (l *Live) LatestDeploymentStatus(ctx context.Context, inst int64, owner, repo string, id int64) (DeploymentStatus, bool, error) {
	a, err := l.get()
	if err != nil {
		return DeploymentStatus{}, false, err
	}
	return a.LatestDeploymentStatus(ctx, inst, owner, repo, id)
}

func (l *Live) PullRequest(ctx context.Context, inst int64, owner, repo string, number int) (PullRequest, error) {
	a, err := l.get()
	if err != nil {
		return PullRequest{}, err
	}
	return a.PullRequest(ctx, inst, owner, repo, number)
}
