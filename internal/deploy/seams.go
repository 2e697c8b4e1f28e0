// Package deploy runs Keystone's pipeline against the Docker engine (SPEC §5,
// §6): it reads .keystone.yml, fetches the exact commit, builds, runs, checks
// health, switches and cleans up, and keeps each deployment's record.
package deploy

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
)

// The seams below are how the rest of Keystone meets the engine. Their
// method sets are a contract between capabilities: change them only together
// with their users.

// Request asks for a deployment of an app by a person (a comment command or
// a button on the status page). Pushes do not use it: the push job creates
// their deployments.
type Request struct {
	AppID int64
	// Kind is store.KindRollback, store.KindRedeploy or store.KindDeploy
	// (`/keystone deploy`: deploy or update as the app's state says).
	Kind string
	// SHA, for a rollback "to SHA" or a deploy of a given SHA; empty for
	// the default (rollback: the newest successful deployment before the one
	// serving now; deploy: the head of the app's branch).
	SHA string
	// TargetDeploymentID, for a rollback to "#DEPLOYMENT"; 0 otherwise.
	TargetDeploymentID int64
	Actor              string // GitHub login or Keystone user name
	Trigger            string // store.TriggerComment or store.TriggerPage
	// PullRequest, for `/keystone preview`: deploy SHA (the pull request's
	// head as GitHub gave it, a fork's included) once as the app's preview
	// of this pull request (SPEC §14). Kind is then store.KindDeploy.
	PullRequest int
}

// Notifier hears of every deployment created and of every change of its state
// or step, inside the transaction that makes the change, so that what it
// writes (the GitHub outbox) commits or rolls back with it.
type Notifier interface {
	DeploymentChanged(ctx context.Context, tx pgx.Tx, app store.App, d store.Deployment) error
	// PushRefused reports that a push may not create or re-point app (which
	// may not be stored: it carries the installation, repository and name)
	// from its branch: a failure status on sha with description.
	PushRefused(ctx context.Context, tx pgx.Tx, app store.App, sha, description string) error
}

// Secrets supplies an app's secret variables, decrypted. They are set in the
// container after the config's env and before PORT, and every value is
// redacted from the build and container output Keystone stores.
type Secrets interface {
	AppSecrets(ctx context.Context, appID int64) (map[string]string, error)
}
