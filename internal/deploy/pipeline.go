package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/docker/docker/client"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// deployWorker runs one deployment record per job (queue.DeployArgs).
type deployWorker struct {
	river.WorkerDefaults[queue.DeployArgs]
	e *Engine
}

// Timeout is queue.DeployTimeout.
func (w *deployWorker) Timeout(*river.Job[queue.DeployArgs]) time.Duration {
	return queue.DeployTimeout
}

// NextRetry retries an interrupted deploy soon: the previous version serves
// meanwhile, and a person is waiting for the outcome.
func (w *deployWorker) NextRetry(job *river.Job[queue.DeployArgs]) time.Time {
	return time.Now().Add(time.Duration(job.Attempt) * 3 * time.Second)
}

// Work runs the deployment. Before the job lets go of the app's lock, an
// app removed while it ran (a preview whose pull request closed) is torn
// down: the removal's own teardown could not take the lock meanwhile.
func (w *deployWorker) Work(ctx context.Context, job *river.Job[queue.DeployArgs]) error {
	attempt, maxAttempts := queue.Attempts(job.JobRow)
	err := w.e.work(ctx, job.ID, attempt, maxAttempts, job.Args.DeploymentID)
	if terr := w.e.teardownIfRemoved(ctx, job.Args.AppID); terr != nil {
		w.e.logger.WarnContext(ctx, "tear down an app removed while it deployed", slog.Int64("job_id", job.ID),
			slog.Int64("app_id", job.Args.AppID), slog.String("error", terr.Error()))
	}
	return err
}

// run is one attempt at one deployment.
type run struct {
	instance    string
	app         store.App
	d           store.Deployment
	cfg         keystoneyml.App
	repo        Repo
	secrets     map[string]string
	log         *deployLog
	logger      *slog.Logger
	attempt     int
	maxAttempts int
	stepPos     int    // position of the open step, 0 if none
	servingSHA  string // what served when the attempt began
	lastSaid    string // the last step's line in the log, said once
}

// permanent marks an error that another attempt cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// work runs attempt of the deployment. The app's lock is held (Exclusive):
// no other job of the app runs, and reconciliation leaves the app alone.
func (e *Engine) work(ctx context.Context, jobID int64, attempt, maxAttempts int, deploymentID int64) error {
	instance, err := e.instance(ctx)
	if err != nil {
		return err
	}
	d, err := e.store.Deployment(ctx, deploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil || d.Finished() {
		return err
	}
	app, err := e.store.App(ctx, d.AppID)
	if err != nil {
		return err
	}
	logger := e.logger.With(slog.Int64("job_id", jobID), slog.String("app", app.Key()), slog.Int64("deployment_id", d.ID))
	secrets, secretsErr := e.appSecrets(ctx, app.ID)
	r := &run{instance: instance, app: app, d: d, secrets: secrets, logger: logger, attempt: attempt, maxAttempts: maxAttempts,
		repo: Repo{Owner: app.Owner, Name: app.Repo, CloneURL: app.CloneURL},
		log:  newDeployLog(e.store, d.ID, newLogRedactor(secrets), e.cfg.LogLimit, logger)}
	defer r.log.Close()
	if cur, err := e.store.Deployment(ctx, app.CurrentDeploymentID); err == nil {
		r.servingSHA = cur.SHA
	}
	if secretsErr != nil {
		// Without its secrets the app cannot run as configured.
		return e.retry(ctx, r, secretsErr)
	}
	if d.State == store.StateRunning && d.Step == store.StateQueued {
		// An ordinary retry: the failed attempt said why and restored the app.
		r.log.Printf("Attempt %d of %d", attempt, maxAttempts)
	} else if d.State == store.StateRunning {
		r.log.Printf("Attempt %d of %d: the previous attempt was interrupted; starting again from a safe point", attempt, maxAttempts)
		if err := e.store.FinishOpenSteps(ctx, d.ID, "interrupted"); err != nil {
			return e.retry(ctx, r, err)
		}
		if err := e.reconcileApp(ctx, instance, app, logger); err != nil {
			return e.retry(ctx, r, err)
		}
	}
	if done, err := e.precheck(ctx, r); done || err != nil {
		return err
	}
	logger.InfoContext(ctx, "deploy started", slog.String("kind", d.Kind), slog.String("sha", d.SHA), slog.Int("attempt", attempt))
	err = e.pipeline(ctx, r)
	var f *failure
	switch {
	case err == nil:
		return nil
	case errors.As(err, &f):
		e.endStep(ctx, r, f.description)
		return e.finish(ctx, r, store.StateFailed, f.description)
	case errors.Is(err, store.ErrDeploymentFinished):
		// Finished between the precheck and its first step (a newer push
		// superseded it): nothing was started, nothing is left to do.
		logger.InfoContext(ctx, "deploy not started: finished meanwhile", slog.String("error", err.Error()))
		return nil
	default:
		return e.retry(ctx, r, err)
	}
}

// precheck ends a deployment that must not run: its app was removed, or a
// push overtaken by a newer push or made to a locked app (SPEC §6, §8).
func (e *Engine) precheck(ctx context.Context, r *run) (bool, error) {
	if r.app.RemovedAt != nil {
		return true, e.finish(ctx, r, store.StateErrored, descRemoved)
	}
	if r.d.Trigger != store.TriggerPush {
		return false, nil
	}
	newer, found, err := e.store.NewerPush(ctx, r.d)
	if err != nil {
		return false, err
	}
	if found {
		r.log.Printf("A newer push (%s, deployment #%d) overtook this one: not deploying %s", shortSHA(newer.SHA), newer.ID, shortSHA(r.d.SHA))
		return true, e.finish(ctx, r, store.StateSuperseded, descSuperseded(newer.SHA))
	}
	if r.app.Locked() {
		r.log.Printf("%s is locked by @%s: the push is recorded, not deployed", r.app.Name, r.app.LockedBy)
		return true, e.finish(ctx, r, store.StateErrored, descLocked(r.app.Name, r.app.LockedBy, r.app.LockedReason))
	}
	return false, nil
}

// pipeline takes the deployment from its config to a healthy container in
// service, or to a recorded failure. Every step can be run again after an
// interruption: the image built for the deployment is reused, and its
// leftover containers are removed before a new one is made.
func (e *Engine) pipeline(ctx context.Context, r *run) error {
	raw, err := e.store.DeploymentConfig(ctx, r.d.ID)
	if err != nil {
		return err
	}
	if r.cfg, err = keystoneyml.DecodeApp(raw); err != nil {
		return permanent{err}
	}
	hostPort, err := e.hostPort(ctx, r.app.ID)
	if errors.Is(err, store.ErrNoFreePort) {
		return permanent{fmt.Errorf("no free port in KEYSTONE_PORT_RANGE %s", e.cfg.PortRange)}
	}
	if err != nil {
		return err
	}
	if err := e.checkHosts(ctx, r); err != nil {
		return err
	}
	if done, err := e.rollbackToKept(ctx, r); done || err != nil {
		return err
	}
	imageID, err := e.image(ctx, r)
	if err != nil {
		return err
	}
	if r.d, err = e.store.SetDeploymentImage(ctx, r.d.ID, imageID); err != nil {
		return err
	}
	if err := e.step(ctx, r, StepStart, descStarting(r.d.SHA)); err != nil {
		return err
	}
	if err := e.removeContainersOf(ctx, r.instance, r.app, r.d); err != nil {
		return err
	}
	if e.routed() {
		hostPort = 0 // beside the serving one, on a loopback port the router reaches
	}
	next, err := e.createContainer(ctx, r.instance, r.app, r.d, r.cfg, r.secrets, imageID, hostPort)
	if err != nil {
		return err
	}
	if r.d, err = e.store.SetDeploymentContainer(ctx, r.d.ID, next); err != nil {
		return err
	}
	if hostPort == 0 {
		r.log.Printf("Container %s created from image %s, published on a loopback port", shortID(next), shortID(imageID))
	} else {
		r.log.Printf("Container %s created from image %s, published on port %d", shortID(next), shortID(imageID), hostPort)
	}
	return e.switchTo(ctx, r, next, hostPort)
}

// image returns the image to run: for a rollback or redeploy the target's
// kept image (no fetch, no build) unless it is gone; otherwise a new build.
func (e *Engine) image(ctx context.Context, r *run) (string, error) {
	if r.d.Kind == store.KindRollback || r.d.Kind == store.KindRedeploy {
		target, err := e.store.Deployment(ctx, r.d.TargetDeploymentID)
		if err != nil {
			return "", permanent{fmt.Errorf("target deployment #%d: %w", r.d.TargetDeploymentID, err)}
		}
		if target.ImageID != "" && e.imageKept(ctx, r.instance, target.ImageID) {
			r.log.Printf("Using the kept image %s of deployment #%d (%s): no fetch, no build", shortID(target.ImageID), target.ID, shortSHA(target.SHA))
			return target.ImageID, nil
		}
		r.log.Printf("The image of deployment #%d is no longer kept: fetching and building %s again", target.ID, shortSHA(r.d.SHA))
	}
	if err := e.step(ctx, r, StepFetch, descFetching(r.d.SHA)); err != nil {
		return "", err
	}
	if err := e.fetch(ctx, r); err != nil {
		return "", err
	}
	if err := e.step(ctx, r, StepBuild, descBuilding(r.d.SHA)); err != nil {
		return "", err
	}
	return e.buildImage(ctx, r)
}

// errNoTokens is returned when no GitHub App is configured to fetch with.
var errNoTokens = errors.New("the GitHub App is not configured (KEYSTONE_GITHUB_APP_ID): cannot fetch sources")

func (e *Engine) fetch(ctx context.Context, r *run) error {
	if e.sources.Has(ctx, r.repo, r.d.SHA) {
		r.log.Printf("%s is in the source cache: nothing to fetch", shortSHA(r.d.SHA))
		return nil
	}
	if !e.hasTokens() {
		return permanent{errNoTokens}
	}
	token, err := e.tokens.InstallationToken(ctx, r.app.InstallationID)
	if err != nil {
		return fmt.Errorf("get an installation token: %w", err)
	}
	start := time.Now()
	if _, err := e.sources.Fetch(ctx, r.repo, token, r.d.SHA); err != nil {
		return &fetchError{err: err, sha: r.d.SHA}
	}
	r.log.Printf("Fetched %s from %s in %s", shortSHA(r.d.SHA), redactURL(r.repo.CloneURL), seconds(time.Since(start)))
	return nil
}

// fetchError is a failed fetch; its description names the problem.
type fetchError struct {
	err error
	sha string
}

func (f *fetchError) Error() string { return f.err.Error() }
func (f *fetchError) Unwrap() error { return f.err }

// imageKept reports whether the engine still has this instance's image id.
func (e *Engine) imageKept(ctx context.Context, instance, id string) bool {
	info, err := e.docker.ImageInspect(ctx, id)
	return err == nil && info.Config != nil && ours(instance, info.Config.Labels)
}

// retry records a failed attempt, puts the app back as it was (previous
// version serving, nothing of this attempt left) and returns err for River
// to retry, or ends the deployment errored after the last attempt.
func (e *Engine) retry(ctx context.Context, r *run, err error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// Every text of err that leaves here (the description, the log, River's
	// record of the attempt, read again for a stranded deployment) is redacted.
	err = redactedError{msg: r.log.redactor.Redact(err.Error()), err: err}
	reason := r.log.redactor.Redact(errorSummary(err))
	r.logger.WarnContext(ctx, "deploy attempt failed", slog.Int("attempt", r.attempt), slog.String("error", err.Error()))
	r.log.Printf("Attempt %d of %d failed: %s", r.attempt, r.maxAttempts, err.Error())
	if e.awaitDocker(ctx, r) && !client.IsErrConnectionFailed(err) {
		// The engine went away mid-call: the error names only the cut call.
		reason = clipDescription("Docker unreachable (" + reason + ")")
	}
	e.endStep(cctx, r, reason)
	if app, aerr := e.store.App(cctx, r.app.ID); aerr == nil {
		if rerr := e.reconcileApp(cctx, r.instance, app, r.logger); rerr != nil {
			r.logger.WarnContext(ctx, "restore after a failed attempt", slog.String("error", rerr.Error()))
		}
	}
	var p permanent
	if r.attempt >= r.maxAttempts || errors.As(err, &p) {
		return e.finish(cctx, r, store.StateErrored, descErrored(reason, r.servingSHA))
	}
	if _, uerr := e.update(cctx, func(q *store.Queries) (store.Deployment, error) {
		return q.SetDeploymentStep(cctx, r.d.ID, store.StateQueued, clipDescription("Queued (retrying: "+reason+")"))
	}); uerr != nil {
		r.logger.WarnContext(ctx, "record retry", slog.String("error", uerr.Error()))
	}
	return err
}

// redactedError is err with its text redacted of the app's secrets; errors.Is
// and errors.As still see err.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// errorSummary says what went wrong in a few words, for a description.
func errorSummary(err error) string {
	var fe *fetchError
	switch {
	case errors.As(err, &fe):
		return "fetch failed: " + fetchProblem(fe.err, fe.sha)
	case client.IsErrConnectionFailed(err):
		return "Docker unreachable"
	case errors.Is(err, errNoTokens):
		return "GitHub App not configured"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	return clipDescription(firstLine(err.Error()))
}

// step records that the deployment entered step name, with the description
// a commit status shows, ending the previous step.
func (e *Engine) step(ctx context.Context, r *run, name, description string) error {
	e.endStep(ctx, r, "")
	var pos int
	d, err := e.update(ctx, func(q *store.Queries) (store.Deployment, error) {
		var d store.Deployment
		var err error
		if r.d.State == store.StateQueued {
			d, err = q.StartDeployment(ctx, r.d.ID, name, description)
		} else {
			d, err = q.SetDeploymentStep(ctx, r.d.ID, name, description)
		}
		if err != nil {
			return d, err
		}
		pos, err = q.StartStep(ctx, r.d.ID, name)
		return d, err
	})
	if err != nil {
		return err
	}
	r.d, r.stepPos = d, pos
	if description != r.lastSaid { // the switch step says "Starting" again: once in the log is enough
		r.lastSaid = description
		r.log.Printf("%s", description)
		r.log.Flush(ctx) // a step's start is worth reading at once, and survives a crash
	}
	return nil
}

// endStep closes the open step, with errText when it failed.
func (e *Engine) endStep(ctx context.Context, r *run, errText string) {
	if r.stepPos == 0 {
		return
	}
	if err := e.store.FinishStep(context.WithoutCancel(ctx), r.d.ID, r.stepPos, errText); err != nil {
		r.logger.Warn("record end of step", slog.String("error", err.Error()))
	}
	r.stepPos = 0
}

// finish ends the deployment in state with description, audited and
// notified in one transaction. The log is complete before the state is
// final, so that a reader following it until the deployment finishes
// misses no line.
func (e *Engine) finish(ctx context.Context, r *run, state, description string) error {
	description = r.log.redactor.Redact(description) // it reaches GitHub and the audit trail
	e.endStep(ctx, r, "")
	r.log.Printf("%s", description)
	r.log.Flush(ctx)
	d, err := e.update(ctx, func(q *store.Queries) (store.Deployment, error) {
		d, err := q.FinishDeployment(ctx, r.d.ID, state, description)
		if err != nil {
			return d, err
		}
		if state == store.StateSucceeded {
			if err := q.SetCurrentDeployment(ctx, r.app.ID, d.ID); err != nil {
				return d, err
			}
		}
		return d, auditFinished(ctx, q, r.app, d)
	})
	if err != nil {
		return err
	}
	r.d = d
	if d.StartedAt != nil {
		e.metrics.duration.WithLabelValues(d.Kind, d.State).Observe(time.Since(*d.StartedAt).Seconds())
	}
	r.logger.InfoContext(ctx, "deploy finished", slog.String("state", state), slog.String("description", description))
	e.routeAfterDeploy(ctx, r)
	return nil
}

func auditFinished(ctx context.Context, q *store.Queries, app store.App, d store.Deployment) error {
	return q.AppendAudit(ctx, store.AuditEvent{
		Actor: "keystone", Action: store.AuditDeployFinished, Target: app.Key(),
		Details: map[string]any{"deployment_id": d.ID, "kind": d.Kind, "sha": d.SHA, "state": d.State,
			"description": d.Description, "actor": d.Actor},
	})
}
