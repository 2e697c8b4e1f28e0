// Package conversation is Keystone's side of the conversation on GitHub
// (SPEC §7, §8): the commit statuses and pull-request comments that follow
// each deployment, and the /keystone commands read from comments, with
// their permission checks, reactions and replies. Everything it says goes
// through the durable outbox, in the transaction of the change it reports.
package conversation

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/store"
)

// StatusContext is the commit status context of an app (SPEC §7).
func StatusContext(app string) string { return "keystone/" + app }

// Notifier is the deploy engine's deploy.Notifier: every creation and
// state or step change of a deployment becomes, in the same transaction,
// the commit status of its SHA, its GitHub Deployment's status, an edit of the reply to the command that
// asked for it, and for pushes an edit of the app's comment on the pull
// request the commit came from.
type Notifier struct {
	links Links
	r     *renderer
}

// NewNotifier returns the notifier writing links under links.
func NewNotifier(links Links) (*Notifier, error) {
	r, err := newRenderer(links)
	if err != nil {
		return nil, err
	}
	return &Notifier{links: links, r: r}, nil
}

type commandKey struct{}

// WithCommand marks ctx as carrying out command id: a deployment created
// under it (Requester.Request) is linked to the command in the transaction
// that creates it, so its reply follows it from the first state on.
func WithCommand(ctx context.Context, id int64) context.Context {
	return context.WithValue(ctx, commandKey{}, id)
}

func commandOf(ctx context.Context) (int64, bool) {
	id, ok := ctx.Value(commandKey{}).(int64)
	return id, ok && id > 0
}

// DeploymentChanged implements deploy.Notifier.
func (n *Notifier) DeploymentChanged(ctx context.Context, tx pgx.Tx, app store.App, d store.Deployment) error {
	q := store.NewQueries(tx)
	t := outbox.Target{InstallationID: app.InstallationID, Owner: app.Owner, Repo: app.Repo}
	if _, err := outbox.EnqueueStatus(ctx, q, t, n.Status(app, d)); err != nil {
		return fmt.Errorf("status of deployment %d: %w", d.ID, err)
	}
	if err := n.gitHubDeployment(ctx, q, t, app, d); err != nil {
		return err
	}
	if id, ok := commandOf(ctx); ok {
		if _, err := q.LinkCommandDeployment(ctx, id, d.ID); err != nil {
			return err
		}
	}
	cmds, err := q.CommandsOfDeployment(ctx, d.ID)
	if err != nil {
		return err
	}
	if len(cmds) == 0 && d.Trigger != store.TriggerPush {
		return nil
	}
	body, err := n.r.deployment(app, d)
	if err != nil {
		return err
	}
	for _, c := range cmds {
		ct := outbox.Target{InstallationID: c.InstallationID, Owner: c.Owner, Repo: c.Repo}
		if _, err := outbox.EnqueueComment(ctx, q, ct, replyThread(c.IssueNumber, c.CommentID), body); err != nil {
			return fmt.Errorf("reply to command %d about deployment %d: %w", c.ID, d.ID, err)
		}
	}
	if d.Trigger == store.TriggerPush {
		th := outbox.Thread{PullOfSHA: d.SHA, Key: "deploy:" + app.Name}
		if app.Preview() {
			// The preview's own pull request, known by number: its one
			// Keystone comment shows the preview's URL and state.
			th = outbox.Thread{Issue: app.PRNumber, Key: "preview:" + app.Name}
		}
		if _, err := outbox.EnqueueComment(ctx, q, t, th, body); err != nil {
			return fmt.Errorf("pull request comment of deployment %d: %w", d.ID, err)
		}
	}
	return nil
}

// PushRefused implements deploy.Notifier: the failure status of an app a
// push may not create or re-point from its branch. It links to Keystone's
// front page: there is no deployment.
func (n *Notifier) PushRefused(ctx context.Context, tx pgx.Tx, app store.App, sha, description string) error {
	t := outbox.Target{InstallationID: app.InstallationID, Owner: app.Owner, Repo: app.Repo}
	s := outbox.Status{SHA: sha, State: "failure", Description: description,
		TargetURL: strings.TrimSuffix(n.links.PublicURL, "/") + "/", Context: StatusContext(app.Name)}
	if _, err := outbox.EnqueueStatus(ctx, store.NewQueries(tx), t, s); err != nil {
		return fmt.Errorf("refusal status of %s: %w", app.Name, err)
	}
	return nil
}

// replyThread is Keystone's one reply to the comment commentID.
func replyThread(issue int, commentID int64) outbox.Thread {
	return outbox.Thread{Issue: issue, Key: fmt.Sprintf("reply:%d", commentID)}
}

// Status is the commit status of deployment d of app (SPEC §7).
func (n *Notifier) Status(app store.App, d store.Deployment) outbox.Status {
	return outbox.Status{SHA: d.SHA, State: githubState(d.State), Description: describe(d),
		TargetURL: n.links.DeploymentURL(d.ID), Context: StatusContext(app.Name)}
}

// githubState maps a deployment state to a commit status state: the app's
// fault is failure; Keystone's, the infrastructure's, a newer push's or a
// lock's is error.
func githubState(state string) string {
	switch state {
	case store.StateQueued, store.StateRunning:
		return "pending"
	case store.StateSucceeded:
		return "success"
	case store.StateFailed:
		return "failure"
	}
	return "error"
}

// stepWords are the pending descriptions of SPEC §7, for a deployment whose
// description the engine left empty.
var stepWords = map[string]string{
	"fetch": "Fetching", "build": "Building", "start": "Starting", "switch": "Switching to",
}

// describe is the deployment's description as the engine wrote it, or one
// made from its state and step when it is empty.
func describe(d store.Deployment) string {
	if s := strings.TrimSpace(d.Description); s != "" {
		return s
	}
	switch d.State {
	case store.StateQueued:
		return "Queued"
	case store.StateRunning:
		if w, ok := stepWords[d.Step]; ok {
			return w + " " + short(d.SHA)
		}
		if d.Step == "health" {
			return "Checking health"
		}
		return "Running"
	case store.StateSucceeded:
		return "Deployed " + short(d.SHA)
	case store.StateFailed:
		return "Failed"
	case store.StateSuperseded:
		return "Not deployed: superseded"
	}
	return "Not deployed"
}
