package conversation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/store"
)

// handling is one command being carried out. Each step that changes
// something commits it together with the reply it implies, the audit event
// and the mark that the delivery is done, so a retried job resumes cleanly.
type handling struct {
	c    *Commands
	log  *slog.Logger
	d    store.Delivery
	rec  store.Command // ID 0 until recorded
	cmd  Command
	apps []store.App
	// lastAttempt: the job will not be retried, so a failure must be said.
	lastAttempt bool
}

func (h *handling) target() outbox.Target {
	return outbox.Target{InstallationID: h.rec.InstallationID, Owner: h.rec.Owner, Repo: h.rec.Repo}
}

func (h *handling) names() []string {
	out := make([]string, len(h.apps))
	for i, a := range h.apps {
		out[i] = a.Name
	}
	return out
}

func (h *handling) fullName() string { return h.rec.Owner + "/" + h.rec.Repo }

// tx runs fn and, in the same transaction, replies body (when not empty)
// and marks the delivery processed.
func (h *handling) tx(ctx context.Context, body string, fn func(q *store.Queries) error) error {
	return h.c.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if fn != nil {
			if err := fn(q); err != nil {
				return err
			}
		}
		if body != "" {
			if _, err := outbox.EnqueueComment(ctx, q, h.target(), replyThread(h.rec.IssueNumber, h.rec.CommentID), body); err != nil {
				return err
			}
		}
		return q.MarkDeliveryProcessed(ctx, h.d.ID)
	})
}

// record stores the command with outcome (once) and returns whether this
// call stored it.
func (h *handling) record(ctx context.Context, q *store.Queries, outcome string, appID int64) (bool, error) {
	rec := h.rec
	rec.Outcome, rec.AppID = outcome, appID
	stored, inserted, err := q.InsertCommand(ctx, rec)
	if err != nil {
		return false, err
	}
	h.rec = stored
	return inserted, nil
}

func (h *handling) run(ctx context.Context, parseErr error) error {
	if parseErr != nil || h.cmd.Verb == VerbHelp {
		return h.usage(ctx, parseErr)
	}
	if h.rec.ID == 0 {
		perm, err := h.c.cfg.GitHub.CollaboratorPermission(ctx, h.rec.InstallationID, h.rec.Owner, h.rec.Repo, h.rec.Actor)
		switch {
		case github.IsNotFound(err):
			perm = "none" // not a GitHub user GitHub will speak of
		case err != nil:
			if snooze := retryLater(err, h.d.ReceivedAt); snooze != nil {
				h.log.Warn("command waits: permission check failed", slog.String("error", err.Error()))
				return snooze
			}
			h.log.Error("command dropped: permission check failed for good", slog.String("error", err.Error()))
			perm = "unknown"
		}
		if perm != "admin" && perm != "maintain" && perm != "write" {
			return h.deny(ctx, perm)
		}
	}
	action, err := Bind(h.cmd, h.names())
	if err != nil {
		return h.refuse(ctx, Action{Verb: h.cmd.Verb}, err)
	}
	var app store.App
	if i := slices.IndexFunc(h.apps, func(a store.App) bool { return a.Name == action.App }); i >= 0 {
		app = h.apps[i]
	}
	if action.Verb == VerbPreview && h.rec.DeploymentID == 0 {
		if ok, err := h.previewHead(ctx, &action); !ok {
			return err
		}
	}
	if err := h.accept(ctx, app, action); err != nil {
		return err
	}
	switch action.Verb {
	case VerbStatus:
		return h.status(ctx, action)
	case VerbLock, VerbUnlock:
		return h.lock(ctx, app, action)
	}
	return h.deploy(ctx, app, action)
}

// usage answers help, and commands Keystone did not understand, with the
// usage. It needs no permission: it changes nothing.
func (h *handling) usage(ctx context.Context, parseErr error) error {
	view := map[string]any{"Apps": h.names(), "Line": h.cmd.Line}
	name := "help"
	if parseErr != nil {
		var ue *UsageError
		if !errors.As(parseErr, &ue) {
			return parseErr
		}
		name, view["Problem"] = "usage", ue.Problem
	}
	body, err := h.c.r.render(name, view)
	if err != nil {
		return err
	}
	err = h.tx(ctx, body, func(q *store.Queries) error {
		_, err := h.record(ctx, q, store.CommandUsage, 0)
		return err
	})
	h.done(err, store.CommandUsage)
	return err
}

// deny answers a commenter without write access, audits it and runs nothing.
func (h *handling) deny(ctx context.Context, perm string) error {
	body, err := h.c.r.render("denied", map[string]any{
		"Actor": h.rec.Actor, "Verb": h.cmd.Verb, "Repo": h.fullName(), "Permission": perm})
	if err != nil {
		return err
	}
	err = h.tx(ctx, body, func(q *store.Queries) error {
		if _, err := h.record(ctx, q, store.CommandDenied, 0); err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: h.rec.Actor, Action: store.AuditCommandDenied,
			Target: h.fullName(), Details: h.details(map[string]any{"permission": perm})})
	})
	h.done(err, store.CommandDenied)
	return err
}

// refuse answers a permitted command that cannot be carried out.
func (h *handling) refuse(ctx context.Context, a Action, why error) error {
	var ue *UsageError
	name, view := "refused", map[string]any{"Verb": a.Verb, "App": a.App, "Problem": why.Error(),
		"Apps": h.names(), "Line": h.cmd.Line}
	if errors.As(why, &ue) {
		name = "usage"
	}
	body, err := h.c.r.render(name, view)
	if err != nil {
		return err
	}
	err = h.tx(ctx, body, func(q *store.Queries) error {
		if h.rec.ID == 0 {
			_, err := h.record(ctx, q, store.CommandRefused, 0)
			return err
		}
		return q.SetCommandOutcome(ctx, h.rec.ID, store.CommandRefused, 0)
	})
	h.done(err, store.CommandRefused)
	return err
}

// accept records the command as accepted, audits it, reacts with eyes and,
// for a deployment, posts the reply its deployment will then edit. A retry
// of a command accepted before does none of it again.
func (h *handling) accept(ctx context.Context, app store.App, a Action) error {
	if h.rec.ID != 0 {
		return nil
	}
	return h.c.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if _, err := h.record(ctx, q, store.CommandAccepted, app.ID); err != nil {
			return err
		}
		target := h.fullName()
		if app.ID != 0 {
			target = app.Key()
		}
		if err := q.AppendAudit(ctx, store.AuditEvent{Actor: h.rec.Actor, Action: store.AuditCommandAccepted,
			Target: target, Details: h.details(nil)}); err != nil {
			return err
		}
		if _, err := outbox.EnqueueReaction(ctx, q, h.target(), h.rec.CommentID, "eyes"); err != nil {
			return err
		}
		if a.Verb != VerbDeploy && a.Verb != VerbRollback && a.Verb != VerbPreview {
			return nil
		}
		body, err := h.c.r.render("accepted", map[string]any{"Doing": words(kindOf(a))[0], "App": app.Name, "Actor": h.rec.Actor})
		if err != nil {
			return err
		}
		_, err = outbox.EnqueueComment(ctx, q, h.target(), replyThread(h.rec.IssueNumber, h.rec.CommentID), body)
		return err
	})
}

// details are the audit details of the command.
func (h *handling) details(extra map[string]any) map[string]any {
	d := map[string]any{"command": h.cmd.Line, "verb": h.cmd.Verb, "issue": h.rec.IssueNumber,
		"comment_id": h.rec.CommentID, "delivery": h.d.GUID}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

func (h *handling) done(err error, outcome string) {
	if err != nil {
		return
	}
	h.c.counter.WithLabelValues(h.cmd.Verb, outcome).Inc()
	h.log.Info("command answered", slog.String("outcome", outcome))
}

func kindOf(a Action) string {
	if a.Verb == VerbRollback {
		return store.KindRollback
	}
	return store.KindDeploy
}

// deploy asks the engine for the deployment of a deploy or rollback. Its
// reply then follows the deployment (Notifier).
func (h *handling) deploy(ctx context.Context, app store.App, a Action) error {
	if h.rec.DeploymentID == 0 {
		if h.c.cfg.Requester == nil {
			return h.refuse(ctx, a, errors.New("this Keystone runs without its deploy engine"))
		}
		req := deploy.Request{AppID: app.ID, Kind: kindOf(a), SHA: a.SHA, TargetDeploymentID: a.DeploymentID,
			Actor: h.rec.Actor, Trigger: store.TriggerComment}
		if a.Verb == VerbPreview {
			req.PullRequest = h.rec.IssueNumber
		}
		d, err := h.c.cfg.Requester.Request(WithCommand(ctx, h.rec.ID), req)
		switch {
		case err != nil && h.c.cfg.IsRefusal(err):
			h.log.Info("deployment refused", slog.String("error", err.Error()))
			return h.refuse(ctx, a, err)
		case err != nil && h.lastAttempt:
			h.log.Error("deployment request failed for good", slog.String("error", err.Error()))
			return h.refuse(ctx, a, errors.New("Keystone could not start it; see its logs"))
		case err != nil:
			return fmt.Errorf("request %s of %s: %w", req.Kind, app.Key(), err)
		}
		h.rec.DeploymentID = d.ID
		// The link is normally made by the Notifier in the transaction that
		// created the deployment; if not, make it here and show the state.
		if err := h.linkLate(ctx, app, d.ID); err != nil {
			return err
		}
	}
	err := h.tx(ctx, "", func(q *store.Queries) error {
		return q.SetCommandOutcome(ctx, h.rec.ID, store.CommandDone, app.ID)
	})
	h.done(err, store.CommandAccepted)
	return err
}

// previewHead sets a.SHA to the current head of the pull request the
// command was written on, as GitHub says now (never a SHA from the
// comment): `/keystone preview` deploys that once (SPEC §14).
// ok is false when the command ended (refused, or err to retry).
func (h *handling) previewHead(ctx context.Context, a *Action) (ok bool, err error) {
	pr, err := h.c.cfg.GitHub.PullRequest(ctx, h.rec.InstallationID, h.rec.Owner, h.rec.Repo, h.rec.IssueNumber)
	switch {
	case github.IsNotFound(err):
		return false, h.refuse(ctx, *a, errors.New("`preview` works on a pull request, and this is an issue"))
	case err != nil && h.lastAttempt:
		return false, h.refuse(ctx, *a, errors.New("GitHub did not say what the pull request's head is; try again"))
	case err != nil:
		return false, fmt.Errorf("pull request #%d of %s: %w", h.rec.IssueNumber, h.fullName(), err)
	case pr.State != "open":
		return false, h.refuse(ctx, *a, fmt.Errorf("pull request #%d is %s: only an open one gets a preview", h.rec.IssueNumber, pr.State))
	}
	a.SHA = pr.HeadSHA
	return true, nil
}

func (h *handling) linkLate(ctx context.Context, app store.App, deploymentID int64) error {
	return h.c.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		linked, err := q.LinkCommandDeployment(ctx, h.rec.ID, deploymentID)
		if err != nil || !linked {
			return err
		}
		d, err := q.Deployment(ctx, deploymentID)
		if err != nil {
			return err
		}
		body, err := h.c.r.deployment(app, d)
		if err != nil {
			return err
		}
		_, err = outbox.EnqueueComment(ctx, q, h.target(), replyThread(h.rec.IssueNumber, h.rec.CommentID), body)
		return err
	})
}

// isRefusal is the default CommandsConfig.IsRefusal: the engine refusing
// the request (*deploy.RequestError, written for the person who asked).
// Anything else (a fetch, the database) is retried with the job.
func isRefusal(err error) bool {
	var re *deploy.RequestError
	return errors.As(err, &re)
}

// since formats how long ago t was, for replies.
func since(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
