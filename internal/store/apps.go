package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// App is one app of a repository's .keystone.yml, as Keystone last saw it.
type App struct {
	ID                  int64
	InstallationID      int64
	Owner, Repo, Name   string
	Branch              string
	CloneURL            string
	Config              json.RawMessage // the app's parsed .keystone.yml entry
	HostPort            int             // 0 until allocated
	CurrentDeploymentID int64           // 0 when nothing serves
	LockedBy            string          // "" when not locked
	LockedReason        string
	LockedAt            *time.Time
	CreatedAt           time.Time
	UpdatedAt           time.Time
	RemovedAt           *time.Time
	// A preview (SPEC §14) is an app row of its own, named <app>-pr-<N>:
	// PRNumber and ParentAppID are set, and HeadRef is the pull request's
	// head branch (empty for a fork's). Zero for a production app.
	PRNumber    int
	ParentAppID int64
	HeadRef     string
	// Hosts are the app's host names in domain mode (SPEC §13): its domain
	// names in .keystone.yml order, then its default; empty until its
	// first deploy allocates them.
	Hosts []string
}

// Preview reports whether the app is a pull request's preview.
func (a App) Preview() bool { return a.PRNumber != 0 }

// PreviewName is the app row name of app's preview of pull request pr.
func PreviewName(app string, pr int) string { return fmt.Sprintf("%s-pr-%d", app, pr) }

// Key is owner/repo/app, the value of the io.keystone.app label.
func (a App) Key() string { return a.Owner + "/" + a.Repo + "/" + a.Name }

// FullName is owner/repo.
func (a App) FullName() string { return a.Owner + "/" + a.Repo }

// Locked reports whether pushes are recorded but not deployed.
func (a App) Locked() bool { return a.LockedBy != "" }

const appColumns = `id, installation_id, owner, repo, name, branch, clone_url, config,
	COALESCE(host_port, 0), COALESCE(current_deployment_id, 0), COALESCE(locked_by, ''),
	COALESCE(locked_reason, ''), locked_at, created_at, updated_at, removed_at,
	COALESCE(pr_number, 0), COALESCE(parent_app_id, 0), head_ref, ` + hostsColumn

func scanApp(row interface{ Scan(...any) error }) (App, error) {
	var a App
	err := row.Scan(&a.ID, &a.InstallationID, &a.Owner, &a.Repo, &a.Name, &a.Branch, &a.CloneURL, &a.Config,
		&a.HostPort, &a.CurrentDeploymentID, &a.LockedBy, &a.LockedReason, &a.LockedAt,
		&a.CreatedAt, &a.UpdatedAt, &a.RemovedAt, &a.PRNumber, &a.ParentAppID, &a.HeadRef, &a.Hosts)
	return a, err
}

// App returns the app with the given id.
func (q *Queries) App(ctx context.Context, id int64) (App, error) {
	a, err := scanApp(q.db.QueryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE id = $1`, id))
	if err != nil {
		return App{}, notFound(err, fmt.Sprintf("app %d", id))
	}
	return a, nil
}

// AppByName returns the app owner/repo/name.
func (q *Queries) AppByName(ctx context.Context, owner, repo, name string) (App, error) {
	a, err := scanApp(q.db.QueryRow(ctx, `SELECT `+appColumns+` FROM apps
		WHERE owner = $1 AND repo = $2 AND name = $3`, owner, repo, name))
	if err != nil {
		return App{}, notFound(err, fmt.Sprintf("app %s/%s/%s", owner, repo, name))
	}
	return a, nil
}
