package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// RequestError is a request Keystone refuses. Its message is written for
// the person who asked (a comment reply, a flash on the page).
type RequestError struct {
	Reason string
	// Busy: another deployment of the app is queued or running (HTTP 409).
	Busy bool
}

func (e *RequestError) Error() string { return e.Reason }

func refuse(format string, args ...any) error {
	return &RequestError{Reason: fmt.Sprintf(format, args...)}
}

// Requester handles deployments asked for by people: the comment commands
// and the status page call Request.
type Requester struct {
	e    *Engine
	jobs JobInserter
}

// Requester returns the requester enqueueing through jobs.
func (e *Engine) Requester(jobs JobInserter) *Requester { return &Requester{e: e, jobs: jobs} }

var shaPrefix = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// Request validates req and records the deployment with its job and an
// audit event, in one transaction. A refused request is a *RequestError:
//   - rollback: to TargetDeploymentID, to the newest successful deployment
//     at SHA (a prefix of 4 or more hex), or by default to the newest
//     successful deployment before the one serving now (before its target
//     when that is a rollback itself); the kept image runs, rebuilt only
//     if gone;
//   - redeploy: the serving deployment's SHA and config again;
//   - deploy: SHA, or the head of the app's branch; a SHA must be on one of
//     the repository's branches (never only on refs/pull/*, so a fork's
//     code is never deployed) and its .keystone.yml must list the app.
func (rq *Requester) Request(ctx context.Context, req Request) (store.Deployment, error) {
	switch {
	case req.Actor == "":
		return store.Deployment{}, refuse("a request needs the name of who asks")
	case req.Trigger != store.TriggerComment && req.Trigger != store.TriggerPage:
		return store.Deployment{}, refuse("unknown trigger %q", req.Trigger)
	}
	req.SHA = strings.ToLower(strings.TrimSpace(req.SHA))
	if req.SHA != "" && !shaPrefix.MatchString(req.SHA) {
		return store.Deployment{}, refuse("%q is not a commit SHA", req.SHA)
	}
	app, err := rq.e.store.App(ctx, req.AppID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Deployment{}, refuse("there is no app %d", req.AppID)
	}
	if err != nil {
		return store.Deployment{}, err
	}
	if app.RemovedAt != nil {
		return store.Deployment{}, refuse("%s is no longer in .keystone.yml", app.Name)
	}
	if req.PullRequest != 0 {
		return rq.preview(ctx, app, req)
	}
	var nd store.NewDeployment
	switch req.Kind {
	case store.KindRollback, store.KindRedeploy:
		nd, err = rq.fromKept(ctx, app, req)
	case store.KindDeploy, store.KindUpdate:
		nd, err = rq.fromBranch(ctx, app, req)
	default:
		err = refuse("unknown kind %q: rollback, redeploy or deploy", req.Kind)
	}
	if err != nil {
		return store.Deployment{}, err
	}
	nd.AppID, nd.Actor, nd.Trigger, nd.Description = app.ID, req.Actor, req.Trigger, descQueued
	return rq.record(ctx, app, nd)
}

// fromKept makes a rollback or a redeploy from a successful deployment.
func (rq *Requester) fromKept(ctx context.Context, app store.App, req Request) (store.NewDeployment, error) {
	var target store.Deployment
	var err error
	if req.Kind == store.KindRedeploy {
		if app.CurrentDeploymentID == 0 {
			return store.NewDeployment{}, refuse("nothing of %s serves yet: there is nothing to redeploy", app.Name)
		}
		target, err = rq.e.store.Deployment(ctx, app.CurrentDeploymentID)
	} else {
		target, err = rq.rollbackTarget(ctx, app, req)
	}
	if err != nil {
		return store.NewDeployment{}, err
	}
	config, err := rq.e.store.DeploymentConfig(ctx, target.ID)
	if err != nil {
		return store.NewDeployment{}, err
	}
	if _, err := keystoneyml.DecodeApp(config); err != nil {
		return store.NewDeployment{}, refuse("deployment #%d has no configuration to run again", target.ID)
	}
	return store.NewDeployment{Kind: req.Kind, SHA: target.SHA, Ref: target.Ref, TargetDeploymentID: target.ID, Config: config}, nil
}

func (rq *Requester) rollbackTarget(ctx context.Context, app store.App, req Request) (store.Deployment, error) {
	if req.TargetDeploymentID != 0 {
		d, err := rq.e.store.Deployment(ctx, req.TargetDeploymentID)
		if err != nil || d.AppID != app.ID || d.State != store.StateSucceeded {
			return store.Deployment{}, refuse("#%d is not a successful deployment of %s", req.TargetDeploymentID, app.Name)
		}
		return d, nil
	}
	succeeded, err := rq.e.store.SucceededDeployments(ctx, app.ID, 1000)
	if err != nil {
		return store.Deployment{}, err
	}
	if req.SHA != "" {
		for _, d := range succeeded {
			if strings.HasPrefix(d.SHA, req.SHA) {
				return d, nil
			}
		}
		return store.Deployment{}, refuse("no successful deployment of %s at %s to roll back to", app.Name, req.SHA)
	}
	if app.CurrentDeploymentID == 0 {
		return store.Deployment{}, refuse("nothing of %s serves yet: there is nothing to roll back", app.Name)
	}
	cur, err := rq.e.store.Deployment(ctx, app.CurrentDeploymentID)
	if err != nil {
		return store.Deployment{}, err
	}
	// After a rollback, "back" goes on from what it rolled back to, rather
	// than forward again to what it rolled back from.
	before := cur.ID
	if (cur.Kind == store.KindRollback || cur.Kind == store.KindRedeploy) && cur.TargetDeploymentID != 0 {
		before = cur.TargetDeploymentID
	}
	for _, d := range succeeded {
		if d.ID < before && d.SHA != cur.SHA {
			return d, nil
		}
	}
	return store.Deployment{}, refuse("%s has no earlier successful deployment to roll back to", app.Name)
}

// fromBranch makes a deploy of a SHA on a branch, or of the branch's head.
func (rq *Requester) fromBranch(ctx context.Context, app store.App, req Request) (store.NewDeployment, error) {
	e := rq.e
	if !e.hasTokens() {
		return store.NewDeployment{}, errNoTokens
	}
	repo := Repo{Owner: app.Owner, Name: app.Repo, CloneURL: app.CloneURL}
	token, err := e.tokens.InstallationToken(ctx, app.InstallationID)
	if err != nil {
		return store.NewDeployment{}, fmt.Errorf("get an installation token: %w", err)
	}
	if err := e.sources.FetchBranches(ctx, repo, token); err != nil {
		return store.NewDeployment{}, fmt.Errorf("fetch the branches of %s: %s", repo.FullName(), fetchProblem(err, ""))
	}
	rev := req.SHA
	if rev == "" {
		rev = app.Branch
	}
	sha, err := e.sources.Resolve(ctx, repo, rev)
	if err != nil {
		return store.NewDeployment{}, refuse("%s is not a commit on a branch of %s", rev, repo.FullName())
	}
	branches, err := e.sources.Branches(ctx, repo, sha)
	if err != nil {
		return store.NewDeployment{}, err
	}
	if len(branches) == 0 {
		return store.NewDeployment{}, refuse("%s is on no branch of %s: only commits on branches are deployed", shortSHA(sha), repo.FullName())
	}
	ref := branches[0]
	for _, b := range branches {
		if b == app.Branch {
			ref = b
		}
	}
	raw, found, err := e.sources.ReadFile(ctx, repo, sha, keystoneyml.FileName, keystoneyml.MaxSize)
	if err != nil {
		return store.NewDeployment{}, refuse("cannot read %s at %s: %v", keystoneyml.FileName, shortSHA(sha), err)
	}
	if !found {
		return store.NewDeployment{}, refuse("%s has no %s", shortSHA(sha), keystoneyml.FileName)
	}
	file, err := keystoneyml.ParseLimited(raw, "", rq.e.cfg.limits())
	if err != nil {
		return store.NewDeployment{}, refuse("%s", descInvalidConfig(err.Error()))
	}
	entry, ok := file.App(app.Name)
	if !ok {
		return store.NewDeployment{}, refuse("%s at %s does not list %s", keystoneyml.FileName, shortSHA(sha), app.Name)
	}
	config, err := json.Marshal(entry)
	if err != nil {
		return store.NewDeployment{}, err
	}
	kind := store.KindDeploy
	if app.CurrentDeploymentID != 0 {
		kind = store.KindUpdate
	}
	return store.NewDeployment{Kind: kind, SHA: sha, Ref: "refs/heads/" + ref, Config: config}, nil
}

// record queues nd with its job and audit event. With the app's row locked
// (so two requests cannot both pass): a redeploy or deploy is refused while
// another deployment of the app is queued or running (a double click queues
// one, not two); a rollback, the emergency exit, is always queued and
// supersedes the queued deployments that are not rollbacks, so it runs next.
func (rq *Requester) record(ctx context.Context, app store.App, nd store.NewDeployment) (store.Deployment, error) {
	var d store.Deployment
	err := rq.e.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		var err error
		d, err = rq.recordTx(ctx, tx, q, app, nd)
		return err
	})
	return d, err
}

// recordTx records nd of app with its job, audit event and notification in
// the caller's transaction.
func (rq *Requester) recordTx(ctx context.Context, tx pgx.Tx, q *store.Queries, app store.App, nd store.NewDeployment) (store.Deployment, error) {
	var d store.Deployment
	err := func() error {
		if _, err := q.LockAppRow(ctx, app.ID); err != nil {
			return err
		}
		unfinished, err := q.UnfinishedDeployments(ctx, app.ID)
		if err != nil {
			return err
		}
		if nd.Kind != store.KindRollback && len(unfinished) > 0 {
			return busy(app, unfinished[0])
		}
		if d, err = q.CreateDeployment(ctx, nd); err != nil {
			return err
		}
		if nd.Kind == store.KindRollback {
			if err := rq.supersedeQueued(ctx, tx, q, app, d, unfinished); err != nil {
				return err
			}
		}
		if _, err := rq.jobs.InsertTx(ctx, tx, queue.DeployArgs{DeploymentID: d.ID, AppID: app.ID}, nil); err != nil {
			return fmt.Errorf("enqueue the deploy of deployment %d: %w", d.ID, err)
		}
		details := map[string]any{"deployment_id": d.ID, "kind": d.Kind, "sha": d.SHA, "trigger": d.Trigger}
		if d.TargetDeploymentID != 0 {
			details["target_deployment_id"] = d.TargetDeploymentID
		}
		if err := q.AppendAudit(ctx, store.AuditEvent{Actor: nd.Actor, Action: store.AuditDeployRequested,
			Target: app.Key(), Details: details}); err != nil {
			return err
		}
		return rq.e.notify(ctx, tx, q, d)
	}()
	return d, err
}

// busy refuses a request while deployment u of app is unfinished.
func busy(app store.App, u store.Deployment) error {
	where := "queued"
	if u.State == store.StateRunning {
		where = "running, at step " + u.Step
	}
	return &RequestError{Busy: true, Reason: fmt.Sprintf(
		"deployment #%d (%s of %s) of %s is %s: wait for it to finish, or roll back",
		u.ID, u.Kind, shortSHA(u.SHA), app.Name, where)}
}

// supersedeQueued ends the queued (not yet running) deployments among
// unfinished that rollback d overtakes; their jobs then find them finished.
func (rq *Requester) supersedeQueued(ctx context.Context, tx pgx.Tx, q *store.Queries, app store.App, d store.Deployment, unfinished []store.Deployment) error {
	for _, u := range unfinished {
		if u.State != store.StateQueued || u.Kind == store.KindRollback {
			continue
		}
		o, err := q.FinishDeployment(ctx, u.ID, store.StateSuperseded, fmt.Sprintf("Not deployed: superseded by rollback #%d", d.ID))
		if err != nil {
			return err
		}
		if err := auditFinished(ctx, q, app, o); err != nil {
			return err
		}
		if err := rq.e.notify(ctx, tx, q, o); err != nil {
			return err
		}
	}
	return nil
}
