package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	gh "github.com/google/go-github/v66/github"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// Pull-request previews (SPEC §14). A preview is an app row of its own
// (store.UpsertPreview), so that the deploy pipeline, the per-app lock, the
// host port and container ownership by stored ids apply to it unchanged;
// this file only decides when such an app gets a deployment and when it is
// removed.

// PreviewNotifier is told, in the transaction that removes a preview, that
// it no longer serves: its GitHub deployment becomes inactive. The engine's
// Notifier implements it if it can.
type PreviewNotifier interface {
	PreviewRemoved(ctx context.Context, tx pgx.Tx, preview store.App, why string) error
}

// pullRequest is what Keystone uses of a pull_request event; the embedded
// push is its head, as a push to the head branch would be.
type pullRequest struct {
	push
	action string
	number int
	base   string
	// fork: the head is not a branch of this repository. It is never built
	// on its own (SPEC §14).
	fork bool
}

func parsePullRequest(d store.Delivery) (pullRequest, error) {
	var ev gh.PullRequestEvent
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return pullRequest{}, fmt.Errorf("pull_request delivery %s: %w", d.GUID, err)
	}
	pr := ev.GetPullRequest()
	r := pullRequest{action: ev.GetAction(), number: ev.GetNumber(), base: pr.GetBase().GetRef()}
	r.push = push{
		deliveryID: d.ID, guid: d.GUID, installation: ev.GetInstallation().GetID(),
		repo:   Repo{CloneURL: ev.GetRepo().GetCloneURL()},
		branch: pr.GetHead().GetRef(), sha: pr.GetHead().GetSHA(), actor: ev.GetSender().GetLogin(),
		defaultBranch: ev.GetRepo().GetDefaultBranch(), pushedAt: pr.GetUpdatedAt().Time,
	}
	r.repo.Owner, r.repo.Name, _ = strings.Cut(ev.GetRepo().GetFullName(), "/")
	// Same repository by GitHub's id, not by a name the fork's owner chose.
	head := pr.GetHead().GetRepo()
	r.fork = head == nil || head.GetID() == 0 || head.GetID() != ev.GetRepo().GetID()
	if r.pushedAt.IsZero() {
		r.pushedAt = d.ReceivedAt
	}
	if r.number <= 0 || !shaPattern.MatchString(r.sha) || r.repo.Owner == "" || r.repo.Name == "" ||
		r.repo.CloneURL == "" || r.installation == 0 || r.base == "" {
		return pullRequest{}, fmt.Errorf("pull_request delivery %s lacks a number, head, base, repository, clone_url or installation", d.GUID)
	}
	return r, nil
}

// PullRequestWorker returns the worker of pull_request jobs.
func (e *Engine) PullRequestWorker() river.Worker[queue.PullRequestArgs] {
	return &pullRequestWorker{e: e}
}

type pullRequestWorker struct {
	river.WorkerDefaults[queue.PullRequestArgs]
	e *Engine
}

// Timeout is queue.PushTimeout: the head may need a first fetch.
func (w *pullRequestWorker) Timeout(*river.Job[queue.PullRequestArgs]) time.Duration {
	return queue.PushTimeout
}

// NextRetry retries a failed fetch soon.
func (w *pullRequestWorker) NextRetry(job *river.Job[queue.PullRequestArgs]) time.Time {
	return time.Now().Add(time.Duration(job.Attempt) * 5 * time.Second)
}

// Work deploys the pull request's head as the preview of each app that has
// previews on its base branch, or removes its previews when it closed.
func (w *pullRequestWorker) Work(ctx context.Context, job *river.Job[queue.PullRequestArgs]) error {
	e := w.e
	delivery, err := e.store.Delivery(ctx, job.Args.DeliveryID)
	if err != nil || delivery.ProcessedAt != nil {
		return err
	}
	logger := e.logger.With(slog.String("delivery_id", delivery.GUID), slog.Int64("job_id", job.ID))
	pr, err := parsePullRequest(delivery)
	if err != nil {
		logger.WarnContext(ctx, "pull request not usable: ignored", slog.String("error", err.Error()))
		return e.store.MarkDeliveryProcessed(ctx, delivery.ID)
	}
	logger = logger.With(slog.String("repository", pr.repo.FullName()), slog.Int("pull_request", pr.number),
		slog.String("sha", pr.sha))
	if pr.action == "closed" {
		return e.ClosePreviews(ctx, pr.repo.Owner, pr.repo.Name, pr.number, pr.deliveryID, "pull request closed")
	}
	apps, err := e.previewApps(ctx, pr.repo, pr.base)
	if err != nil {
		return err
	}
	switch {
	case len(apps) == 0:
		logger.InfoContext(ctx, "no app has previews on the base branch", slog.String("base", pr.base))
		return e.store.MarkDeliveryProcessed(ctx, delivery.ID)
	case pr.fork:
		logger.InfoContext(ctx, "pull request from a fork: no preview until a writer comments /keystone preview")
		return e.store.MarkDeliveryProcessed(ctx, delivery.ID)
	}
	file, invalid, err := e.readConfig(ctx, pr.push)
	if err != nil {
		if job.Attempt < job.MaxAttempts && !errors.Is(err, errNoTokens) {
			logger.WarnContext(ctx, "pull request: fetch failed, will retry", slog.String("error", err.Error()))
			return err
		}
		return e.recordPreviews(ctx, pr, apps, nil, descErrored(errorSummary(err), ""), store.StateErrored, logger)
	}
	if invalid != nil {
		return e.recordPreviews(ctx, pr, apps, nil, descInvalidConfig(invalid.Error()), store.StateFailed, logger)
	}
	return e.recordPreviews(ctx, pr, apps, file, "", "", logger)
}

// previewApps returns the production apps of repo that track base and say
// preview: true in the config of their own branch (as last deployed): a
// pull request never creates an app nor turns previews on.
func (e *Engine) previewApps(ctx context.Context, repo Repo, base string) ([]store.App, error) {
	all, err := e.store.AppsOfRepository(ctx, repo.Owner, repo.Name)
	if err != nil {
		return nil, err
	}
	var out []store.App
	for _, a := range all {
		var cfg keystoneyml.App
		if a.Branch != base || json.Unmarshal(a.Config, &cfg) != nil || !cfg.Preview {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// recordPreviews records, with marking the delivery processed, a preview
// deployment of pr's head per app: queued with its job when file has the
// app's settings; otherwise finished in state with description. Beyond
// Config.MaxPreviews open previews a new one is refused (SPEC §14).
func (e *Engine) recordPreviews(ctx context.Context, pr pullRequest, apps []store.App, file *keystoneyml.File,
	description, state string, logger *slog.Logger) error {
	var created []store.Deployment
	err := e.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		if d, err := q.Delivery(ctx, pr.deliveryID); err != nil || d.ProcessedAt != nil {
			return err
		}
		if err := q.LockPreviews(ctx); err != nil {
			return err
		}
		for _, app := range apps {
			d, err := e.recordPreview(ctx, tx, q, pr, app, file, description, state)
			if err != nil {
				return err
			}
			created = append(created, d)
		}
		return q.MarkDeliveryProcessed(ctx, pr.deliveryID)
	})
	if err != nil {
		return err
	}
	for _, d := range created {
		logger.InfoContext(ctx, "preview recorded", slog.Int64("deployment_id", d.ID), slog.Int64("app_id", d.AppID),
			slog.String("state", d.State), slog.String("description", d.Description))
	}
	return nil
}

func (e *Engine) recordPreview(ctx context.Context, tx pgx.Tx, q *store.Queries, pr pullRequest, app store.App,
	file *keystoneyml.File, description, state string) (store.Deployment, error) {
	config := app.Config // only for a deployment that is not run
	if file != nil {
		entry, listed := file.App(app.Name)
		if listed {
			// The head's build settings, on the base's app and branch.
			entry.Name, entry.Branch, entry.Preview = app.Name, app.Branch, true
			raw, err := json.Marshal(entry)
			if err != nil {
				return store.Deployment{}, err
			}
			config = raw
		} else {
			description, state = descInvalidConfig(fmt.Sprintf("the pull request's file has no app %q", app.Name)), store.StateFailed
		}
	}
	open, err := q.OpenPreviews(ctx)
	if err != nil {
		return store.Deployment{}, err
	}
	isOpen := false
	for _, p := range open {
		isOpen = isOpen || (p.ParentAppID == app.ID && p.PRNumber == pr.number)
	}
	refused := !isOpen && len(open) >= max(e.cfg.MaxPreviews, 0)
	if refused && state == "" {
		description, state = descTooManyPreviews(max(e.cfg.MaxPreviews, 0)), store.StateErrored
	}
	preview, err := q.UpsertPreview(ctx, app, pr.number, pr.branch, config)
	if err != nil {
		return store.Deployment{}, err
	}
	d, err := e.createPushDeployment(ctx, tx, q, preview, pr.push, config, state, description)
	if err != nil || !refused {
		return d, err
	}
	// A refused preview holds no port and counts for nothing (nor secrets:
	// preview secrets belong to the parent app).
	_, err = q.RemoveApp(ctx, preview.ID)
	return d, err
}

func descTooManyPreviews(limit int) string {
	return fmt.Sprintf("Not deployed: %d previews are open, the most KEYSTONE_MAX_PREVIEWS allows; close one", limit)
}

// ClosePreviews removes the previews of pull request number of owner/repo
// (SPEC §14): in one transaction (with marking delivery processed, when not
// 0) their apps are removed, which releases their ports, and their GitHub
// deployments are marked inactive; then their containers and images are
// removed. A preview whose deploy is running is left to that deploy's end
// and the next reconciliation, which removes what a removed app has.
func (e *Engine) ClosePreviews(ctx context.Context, owner, repo string, number int, delivery int64, why string) error {
	var removed []store.App
	err := e.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		if delivery != 0 {
			if d, err := q.Delivery(ctx, delivery); err != nil || d.ProcessedAt != nil {
				return err
			}
		}
		previews, err := q.PreviewsOfPullRequest(ctx, owner, repo, number)
		if err != nil {
			return err
		}
		for _, p := range previews {
			if _, err := q.RemoveApp(ctx, p.ID); err != nil {
				return err
			}
			if err := q.AppendAudit(ctx, store.AuditEvent{Actor: "keystone", Action: store.AuditAppRemoved,
				Target: p.Key(), Details: map[string]any{"preview": true, "pull_request": number, "why": why}}); err != nil {
				return err
			}
			if pn, ok := e.notifier.(PreviewNotifier); ok {
				if err := pn.PreviewRemoved(ctx, tx, p, why); err != nil {
					return fmt.Errorf("preview %s removed: %w", p.Key(), err)
				}
			}
			removed = append(removed, p)
		}
		if delivery == 0 {
			return nil
		}
		return q.MarkDeliveryProcessed(ctx, delivery)
	})
	if err != nil {
		return err
	}
	return e.teardown(ctx, removed)
}

// teardown removes the containers and images of removed previews now,
// rather than at the next reconciliation.
func (e *Engine) teardown(ctx context.Context, removed []store.App) error {
	if len(removed) == 0 {
		return nil
	}
	instance, err := e.instance(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range removed {
		errs = append(errs, e.waitAppLock(ctx, p.ID, teardownLockWait, func(ctx context.Context) error {
			return e.tearDown(ctx, instance, p.ID)
		}))
	}
	return errors.Join(errs...)
}

// teardownLockWait is how long a removal waits for a job of the app to let
// go of it. A deploy that runs longer tears the app down itself at its end
// (teardownIfRemoved), and reconciliation is the last resort.
const teardownLockWait = 20 * time.Second

// teardownIfRemoved tears app down if it was removed; the caller holds the
// app's lock.
func (e *Engine) teardownIfRemoved(ctx context.Context, appID int64) error {
	app, err := e.store.App(ctx, appID)
	if err != nil || app.RemovedAt == nil {
		return err
	}
	instance, err := e.instance(ctx)
	if err != nil {
		return err
	}
	return e.tearDown(ctx, instance, appID)
}

// tearDown removes a removed app's route, containers and images; the caller
// holds the app's lock.
func (e *Engine) tearDown(ctx context.Context, instance string, appID int64) error {
	app, err := e.store.App(ctx, appID)
	if err != nil {
		return err
	}
	e.logger.InfoContext(ctx, "preview removed", slog.String("app", app.Key()))
	if err := e.dropRoute(ctx, app); err != nil {
		return err
	}
	return e.reconcileApp(ctx, instance, app, e.logger.With(slog.String("app", app.Key())))
}

// preview records, for `/keystone preview`, the deployment of req.SHA as
// app's preview of pull request req.PullRequest, with the build settings of
// that commit's .keystone.yml (SPEC §14). The SHA need not be on a branch:
// it is the pull request's head as GitHub gave it, a fork's included, and
// a writer asked for it. The app must have previews on.
func (rq *Requester) preview(ctx context.Context, app store.App, req Request) (store.Deployment, error) {
	e := rq.e
	var cfg keystoneyml.App
	switch {
	case app.Preview():
		return store.Deployment{}, refuse("%s is a preview: name the app it previews", app.Name)
	case json.Unmarshal(app.Config, &cfg) != nil || !cfg.Preview:
		return store.Deployment{}, refuse("%s has no previews: its .keystone.yml on %s does not say `preview: true`", app.Name, app.Branch)
	case !shaPattern.MatchString(req.SHA):
		return store.Deployment{}, refuse("%q is not the 40-hex head of a pull request", req.SHA)
	}
	p := push{installation: app.InstallationID, repo: Repo{Owner: app.Owner, Name: app.Repo, CloneURL: app.CloneURL},
		sha: req.SHA, actor: req.Actor, defaultBranch: app.Branch}
	file, invalid, err := e.readConfig(ctx, p)
	switch {
	case err != nil:
		return store.Deployment{}, err
	case invalid != nil:
		return store.Deployment{}, refuse("%s", descInvalidConfig(invalid.Error()))
	}
	entry, ok := file.App(app.Name)
	if !ok {
		return store.Deployment{}, refuse("%s at %s does not list %s", keystoneyml.FileName, shortSHA(req.SHA), app.Name)
	}
	entry.Name, entry.Branch, entry.Preview = app.Name, app.Branch, true
	config, err := json.Marshal(entry)
	if err != nil {
		return store.Deployment{}, err
	}
	var d store.Deployment
	err = e.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		if err := q.LockPreviews(ctx); err != nil {
			return err
		}
		open, err := q.OpenPreviews(ctx)
		if err != nil {
			return err
		}
		isOpen := false
		for _, o := range open {
			isOpen = isOpen || (o.ParentAppID == app.ID && o.PRNumber == req.PullRequest)
		}
		if !isOpen && len(open) >= max(e.cfg.MaxPreviews, 0) {
			return refuse("%s", descTooManyPreviews(max(e.cfg.MaxPreviews, 0)))
		}
		preview, err := q.UpsertPreview(ctx, app, req.PullRequest, "", config)
		if err != nil {
			return err
		}
		kind := store.KindDeploy
		if preview.CurrentDeploymentID != 0 {
			kind = store.KindUpdate
		}
		d, err = rq.recordTx(ctx, tx, q, preview, store.NewDeployment{AppID: preview.ID, Kind: kind, SHA: req.SHA,
			Ref: fmt.Sprintf("refs/pull/%d/head", req.PullRequest), Actor: req.Actor, Trigger: req.Trigger,
			Config: config, Description: descQueued})
		return err
	})
	return d, err
}
