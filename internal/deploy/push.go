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
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// JobInserter enqueues a job in a transaction; *river.Client implements it.
type JobInserter interface {
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// pushWorker turns a stored push delivery into one deployment per app
// tracking the pushed branch (SPEC §5, §6).
type pushWorker struct {
	river.WorkerDefaults[queue.PushArgs]
	e *Engine
}

// Timeout is queue.PushTimeout: a first fetch of a repository may be long.
func (w *pushWorker) Timeout(*river.Job[queue.PushArgs]) time.Duration { return queue.PushTimeout }

// NextRetry retries a failed fetch soon.
func (w *pushWorker) NextRetry(job *river.Job[queue.PushArgs]) time.Time {
	return time.Now().Add(time.Duration(job.Attempt) * 5 * time.Second)
}

// push is what Keystone uses of a push event.
type push struct {
	deliveryID    int64
	guid          string
	installation  int64
	repo          Repo
	branch        string
	sha           string
	before        string
	rawPushedAt   int64 // the payload's repository.pushed_at; 0 when absent
	actor         string
	defaultBranch string
	pushedAt      time.Time
	// declared maps each app of the default branch's .keystone.yml to the
	// branch it tracks there; read only for a push to another branch.
	declared map[string]string
}

func parsePush(d store.Delivery) (push, error) {
	var ev gh.PushEvent
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return push{}, fmt.Errorf("push delivery %s: %w", d.GUID, err)
	}
	owner := ev.GetRepo().GetOwner().GetLogin()
	if owner == "" {
		owner = ev.GetRepo().GetOwner().GetName()
	}
	p := push{
		deliveryID: d.ID, guid: d.GUID, installation: ev.GetInstallation().GetID(),
		repo:   Repo{Owner: owner, Name: ev.GetRepo().GetName(), CloneURL: ev.GetRepo().GetCloneURL()},
		branch: strings.TrimPrefix(ev.GetRef(), "refs/heads/"), sha: ev.GetAfter(),
		actor: ev.GetSender().GetLogin(), defaultBranch: ev.GetRepo().GetDefaultBranch(),
		pushedAt: ev.GetRepo().GetPushedAt().Time, before: ev.GetBefore(),
	}
	if !p.pushedAt.IsZero() {
		p.rawPushedAt = p.pushedAt.Unix()
	}
	if full := ev.GetRepo().GetFullName(); strings.Count(full, "/") == 1 {
		p.repo.Owner, p.repo.Name, _ = strings.Cut(full, "/")
	}
	if p.actor == "" {
		p.actor = ev.GetPusher().GetName()
	}
	if p.pushedAt.IsZero() {
		p.pushedAt = d.ReceivedAt
	}
	switch {
	case !shaPattern.MatchString(p.sha), p.repo.Owner == "", p.repo.Name == "", p.repo.CloneURL == "",
		!strings.HasPrefix(ev.GetRef(), "refs/heads/"), p.installation == 0:
		return push{}, fmt.Errorf("push delivery %s lacks a branch, commit, repository, clone_url or installation", d.GUID)
	}
	return p, nil
}

// Work reads .keystone.yml at the pushed commit and records the deployments.
func (w *pushWorker) Work(ctx context.Context, job *river.Job[queue.PushArgs]) error {
	e := w.e
	delivery, err := e.store.Delivery(ctx, job.Args.DeliveryID)
	if err != nil || delivery.ProcessedAt != nil {
		return err
	}
	logger := e.logger.With(slog.String("delivery_id", delivery.GUID), slog.Int64("job_id", job.ID))
	p, err := parsePush(delivery)
	if err != nil {
		logger.WarnContext(ctx, "push not usable: ignored", slog.String("error", err.Error()))
		return e.store.MarkDeliveryProcessed(ctx, delivery.ID)
	}
	logger = logger.With(slog.String("repository", p.repo.FullName()), slog.String("branch", p.branch), slog.String("sha", p.sha))
	// A push is deployed once: its signed body re-sent under a new delivery
	// id (a replay) finds the push held by the first delivery.
	first, err := e.store.ClaimPush(ctx, store.PushKey{Repository: p.repo.FullName(), Ref: "refs/heads/" + p.branch,
		Before: p.before, After: p.sha, PushedAt: p.rawPushedAt}, p.deliveryID)
	if err != nil {
		return err
	}
	if first != p.deliveryID {
		logger.WarnContext(ctx, "push ignored: another delivery carried it already (a replay)", slog.Int64("first_delivery", first))
		return e.store.MarkDeliveryProcessed(ctx, delivery.ID)
	}
	file, invalid, err := e.readConfig(ctx, p)
	if err != nil {
		if job.Attempt < job.MaxAttempts && !errors.Is(err, errNoTokens) {
			logger.WarnContext(ctx, "push: fetch failed, will retry", slog.String("error", err.Error()))
			return err
		}
		// Out of attempts: tell the apps that would have deployed.
		return e.recordPush(ctx, p, logger, nil, descErrored(errorSummary(err), ""), store.StateErrored)
	}
	if invalid != nil {
		return e.recordPush(ctx, p, logger, nil, descInvalidConfig(invalid.Error()), store.StateFailed, invalid.Lines()...)
	}
	if p.branch != p.defaultBranch && len(file.Tracking(p.branch)) > 0 {
		if p.declared, err = e.declaredApps(ctx, p, logger); err != nil {
			if job.Attempt < job.MaxAttempts {
				logger.WarnContext(ctx, "push: reading the default branch failed, will retry", slog.String("error", err.Error()))
				return err
			}
			return e.recordPush(ctx, p, logger, nil, descErrored(errorSummary(err), ""), store.StateErrored)
		}
	}
	return e.recordPush(ctx, p, logger, file, "", "")
}

// declaredApps reads the .keystone.yml at the head of the repository's
// default branch and returns which branch each app it lists tracks: the apps
// that exist (SPEC §5). A missing or invalid file declares none.
func (e *Engine) declaredApps(ctx context.Context, p push, logger *slog.Logger) (map[string]string, error) {
	if e.tokens == nil {
		return nil, errNoTokens
	}
	token, err := e.tokens.InstallationToken(ctx, p.installation)
	if err != nil {
		return nil, fmt.Errorf("get an installation token: %w", err)
	}
	sha, err := e.sources.FetchBranchHead(ctx, p.repo, token, p.defaultBranch)
	if err != nil {
		return nil, err
	}
	raw, found, err := e.sources.ReadFile(ctx, p.repo, sha, keystoneyml.FileName, keystoneyml.MaxSize)
	switch {
	case err != nil && !found:
		return nil, err
	case err != nil || !found: // too large, or absent: declares nothing
		return map[string]string{}, nil
	}
	f, err := keystoneyml.Parse(raw, p.defaultBranch)
	if err != nil {
		logger.WarnContext(ctx, "the default branch's .keystone.yml is invalid: it declares no app",
			slog.String("default_branch", p.defaultBranch), slog.String("error", err.Error()))
		return map[string]string{}, nil
	}
	out := map[string]string{}
	for _, a := range f.Apps {
		out[a.Name] = a.Branch
	}
	return out, nil
}

// readConfig fetches the pushed commit and reads its .keystone.yml. A
// repository without one has no apps; an invalid one is returned as such.
func (e *Engine) readConfig(ctx context.Context, p push) (*keystoneyml.File, *keystoneyml.Error, error) {
	if !e.sources.Has(ctx, p.repo, p.sha) {
		if !e.hasTokens() {
			return nil, nil, errNoTokens
		}
		token, err := e.tokens.InstallationToken(ctx, p.installation)
		if err != nil {
			return nil, nil, fmt.Errorf("get an installation token: %w", err)
		}
		if _, err := e.sources.Fetch(ctx, p.repo, token, p.sha); err != nil {
			return nil, nil, &fetchError{err: err, sha: p.sha}
		}
	}
	raw, found, err := e.sources.ReadFile(ctx, p.repo, p.sha, keystoneyml.FileName, keystoneyml.MaxSize)
	switch {
	case err != nil && found:
		return nil, &keystoneyml.Error{Problems: []keystoneyml.Problem{{Message: fmt.Sprintf("the file is larger than %d KiB", keystoneyml.MaxSize>>10)}}}, nil
	case err != nil:
		return nil, nil, err
	case !found:
		return &keystoneyml.File{}, nil, nil
	}
	f, err := keystoneyml.ParseLimited(raw, p.defaultBranch, e.cfg.limits())
	var invalid *keystoneyml.Error
	if errors.As(err, &invalid) {
		return nil, invalid, nil
	}
	return f, nil, err
}

// recordPush records, in one transaction with marking the delivery
// processed, what the push means: with a valid file, a deployment and a job
// per app tracking the branch (and apps moved or removed); otherwise a
// finished deployment in state with description for each app already known
// to track the branch, with logLines in its log.
func (e *Engine) recordPush(ctx context.Context, p push, logger *slog.Logger, file *keystoneyml.File,
	description, state string, logLines ...string) error {
	var created []store.Deployment
	err := e.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		if d, err := q.Delivery(ctx, p.deliveryID); err != nil || d.ProcessedAt != nil {
			return err
		}
		known, err := q.AppsOfRepository(ctx, p.repo.Owner, p.repo.Name)
		if err != nil {
			return err
		}
		if file == nil {
			for _, app := range known {
				if app.Branch != p.branch {
					continue
				}
				d, err := e.createPushDeployment(ctx, tx, q, app, p, nil, state, description)
				if err != nil {
					return err
				}
				if len(logLines) > 0 {
					lines := append([]string{"==> " + keystoneyml.FileName + " at " + shortSHA(p.sha) + " is invalid:"}, logLines...)
					if _, err := q.AppendLogLines(ctx, d.ID, lines, e.cfg.LogLimit); err != nil {
						return err
					}
				}
				created = append(created, d)
			}
			if len(created) == 0 {
				logger.WarnContext(ctx, "push not deployed, and no app to report it on", slog.String("why", description))
			}
			return q.MarkDeliveryProcessed(ctx, p.deliveryID)
		}
		apps, err := e.applyConfig(ctx, tx, q, p, file, known, logger)
		if err != nil {
			return err
		}
		for _, a := range apps {
			d, err := e.createPushDeployment(ctx, tx, q, a.app, p, a.config, "", "")
			if err != nil {
				return err
			}
			created = append(created, d)
		}
		if len(apps) == 0 {
			logger.InfoContext(ctx, "push to a branch no app tracks: nothing to deploy")
		}
		return q.MarkDeliveryProcessed(ctx, p.deliveryID)
	})
	if err != nil {
		return err
	}
	for _, d := range created {
		logger.InfoContext(ctx, "push recorded", slog.Int64("deployment_id", d.ID), slog.Int64("app_id", d.AppID),
			slog.String("state", d.State), slog.String("description", d.Description))
	}
	return nil
}

// trackingApp is an app to deploy with its config entry.
type trackingApp struct {
	app    store.App
	config json.RawMessage
}

// applyConfig brings the repository's apps in line with the file at the
// pushed commit, and returns the apps to deploy (SPEC §5).
//
// Which apps exist and which branch each tracks is the default branch's
// business: its push creates, re-creates, re-points (back to itself, or to
// the branch it names) and removes apps. A push to another branch deploys
// the apps that track it already; it may create, re-create or re-point one
// only when the default branch's file gives it that branch or an admin
// allowed it (keystone app allow); otherwise the app gets a failure status
// saying so, and nothing changes. This is what keeps a branch anyone may
// push to from taking over an app, its secrets and its port.
func (e *Engine) applyConfig(ctx context.Context, tx pgx.Tx, q *store.Queries, p push, file *keystoneyml.File,
	known []store.App, logger *slog.Logger) ([]trackingApp, error) {
	byName := map[string]store.App{}
	for _, a := range known {
		byName[a.Name] = a
	}
	isDefault := p.branch == p.defaultBranch
	var out []trackingApp
	for _, entry := range file.Tracking(p.branch) {
		if a, ok := byName[entry.Name]; !isDefault && !(ok && a.Branch == p.branch) {
			allowed, err := e.mayTrack(ctx, q, p, entry.Name)
			if err != nil {
				return nil, err
			}
			if !allowed {
				if err := e.refuseApp(ctx, tx, p, entry.Name, logger); err != nil {
					return nil, err
				}
				continue
			}
		}
		raw, err := json.Marshal(entry)
		if err != nil {
			return nil, err
		}
		app, err := q.UpsertApp(ctx, store.AppSpec{InstallationID: p.installation, Owner: p.repo.Owner, Repo: p.repo.Name,
			Name: entry.Name, Branch: p.branch, CloneURL: p.repo.CloneURL, Config: raw})
		if err != nil {
			return nil, err
		}
		out = append(out, trackingApp{app: app, config: raw})
	}
	if !isDefault {
		return out, nil // only the default branch moves or removes apps
	}
	for _, a := range known {
		entry, listed := file.App(a.Name)
		switch {
		case listed && entry.Branch == p.branch: // upserted above
		case listed && entry.Branch == a.Branch:
		case listed:
			raw, err := json.Marshal(entry)
			if err != nil {
				return nil, err
			}
			if err := q.MoveApp(ctx, a.ID, entry.Branch, raw); err != nil {
				return nil, err
			}
			logger.InfoContext(ctx, "app moved to another branch", slog.String("app", a.Name), slog.String("branch", entry.Branch))
		default:
			if allowed, err := q.AllowedBranch(ctx, a.Owner, a.Repo, a.Name); err != nil {
				return nil, err
			} else if allowed != "" && allowed == a.Branch {
				continue // an admin allowed it on its branch
			}
			if err := e.removeApp(ctx, q, p, a, logger); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// mayTrack reports whether a push to p.branch may create, re-create or
// re-point app name: the default branch's file gives it that branch, or an
// admin allowed it.
func (e *Engine) mayTrack(ctx context.Context, q *store.Queries, p push, name string) (bool, error) {
	if b, ok := p.declared[name]; ok && b == p.branch {
		return true, nil
	}
	allowed, err := q.AllowedBranch(ctx, p.repo.Owner, p.repo.Name, name)
	return allowed != "" && allowed == p.branch, err
}

// refuseApp tells, with a failure status on the pushed commit, that app
// name may not deploy from p.branch, and who can allow it.
func (e *Engine) refuseApp(ctx context.Context, tx pgx.Tx, p push, name string, logger *slog.Logger) error {
	logger.WarnContext(ctx, "push may not create or re-point an app from this branch: refused",
		slog.String("app", name), slog.String("default_branch", p.defaultBranch))
	if e.notifier == nil {
		return nil
	}
	app := store.App{InstallationID: p.installation, Owner: p.repo.Owner, Repo: p.repo.Name, Name: name, Branch: p.branch}
	if err := e.notifier.PushRefused(ctx, tx, app, p.sha, descNotDeclared(name, p.branch, p.defaultBranch)); err != nil {
		return fmt.Errorf("report the refusal of app %s on %s: %w", name, p.branch, err)
	}
	return nil
}

// removeApp removes an app the default branch's file no longer lists, with
// its secrets, and audits both.
func (e *Engine) removeApp(ctx context.Context, q *store.Queries, p push, a store.App, logger *slog.Logger) error {
	deleted, err := q.RemoveApp(ctx, a.ID)
	if err != nil {
		return err
	}
	if deleted == nil {
		deleted = []string{}
	}
	if err := q.AppendAudit(ctx, store.AuditEvent{Actor: p.actor, Action: store.AuditAppRemoved, Target: a.Key(),
		Details: map[string]any{"sha": p.sha, "branch": p.branch, "secrets_deleted": deleted}}); err != nil {
		return err
	}
	logger.WarnContext(ctx, "app no longer in .keystone.yml: removed with its secrets, its container will be stopped",
		slog.String("app", a.Name), slog.Int("secrets_deleted", len(deleted)))
	return nil
}

// createPushDeployment records the push's deployment of app: queued with
// its job; or, for a locked app, errored; or superseded when a newer push
// is recorded already; or in state with description when given. A newer
// push supersedes the app's queued older ones.
func (e *Engine) createPushDeployment(ctx context.Context, tx pgx.Tx, q *store.Queries, app store.App, p push,
	config json.RawMessage, state, description string) (store.Deployment, error) {
	app, err := q.LockAppRow(ctx, app.ID)
	if err != nil {
		return store.Deployment{}, err
	}
	kind := store.KindDeploy
	if app.CurrentDeploymentID != 0 {
		kind = store.KindUpdate
	}
	nd := store.NewDeployment{AppID: app.ID, Kind: kind, SHA: p.sha, Ref: "refs/heads/" + p.branch, Actor: p.actor,
		Trigger: store.TriggerPush, DeliveryID: p.deliveryID, Config: config, PushedAt: &p.pushedAt,
		State: state, Description: description}
	switch {
	case state != "":
		nd.Step = state
	case app.Locked():
		nd.State, nd.Step, nd.Description = store.StateErrored, store.StateErrored, descLocked(app.Name, app.LockedBy, app.LockedReason)
	default:
		nd.Description = descQueued
	}
	d, err := q.CreateDeployment(ctx, nd)
	if err != nil {
		return d, err
	}
	if err := q.AppendAudit(ctx, store.AuditEvent{Actor: p.actor, Action: store.AuditDeployRequested, Target: app.Key(),
		Details: map[string]any{"deployment_id": d.ID, "kind": d.Kind, "sha": d.SHA, "trigger": d.Trigger,
			"delivery": p.guid, "state": d.State}}); err != nil {
		return d, err
	}
	if d.State == store.StateQueued {
		if d, err = e.queuePush(ctx, tx, q, app, d); err != nil {
			return d, err
		}
	}
	return d, e.notify(ctx, tx, q, d)
}

// queuePush enqueues the deploy job of a new queued push deployment, unless
// a newer push exists (then it is superseded at once); it supersedes the
// app's older queued pushes.
func (e *Engine) queuePush(ctx context.Context, tx pgx.Tx, q *store.Queries, app store.App, d store.Deployment) (store.Deployment, error) {
	newer, found, err := q.NewerPush(ctx, d)
	if err != nil {
		return d, err
	}
	if found {
		return q.FinishDeployment(ctx, d.ID, store.StateSuperseded, descSuperseded(newer.SHA))
	}
	older, err := q.QueuedPushesBefore(ctx, d)
	if err != nil {
		return d, err
	}
	for _, o := range older {
		o, err := q.FinishDeployment(ctx, o.ID, store.StateSuperseded, descSuperseded(d.SHA))
		if err != nil {
			return d, err
		}
		if err := auditFinished(ctx, q, app, o); err != nil {
			return d, err
		}
		if err := e.notify(ctx, tx, q, o); err != nil {
			return d, err
		}
	}
	jobs, err := river.ClientFromContextSafely[pgx.Tx](ctx)
	if err != nil {
		return d, fmt.Errorf("enqueue the deploy of deployment %d: %w", d.ID, err)
	}
	if _, err := jobs.InsertTx(ctx, tx, queue.DeployArgs{DeploymentID: d.ID, AppID: app.ID}, nil); err != nil {
		return d, fmt.Errorf("enqueue the deploy of deployment %d: %w", d.ID, err)
	}
	return d, nil
}
