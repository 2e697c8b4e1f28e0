package conversation

import (
	"context"
	"errors"

	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/store"
)

// lock locks or unlocks app, audits the change and replies, in one
// transaction.
func (h *handling) lock(ctx context.Context, app store.App, a Action) error {
	err := h.tx(ctx, "", func(q *store.Queries) error {
		view := map[string]any{"Verb": a.Verb, "App": app.Name, "Branch": app.Branch}
		var now store.App
		var changed bool
		var err error
		audit := store.AuditEvent{Actor: h.rec.Actor, Target: app.Key(), Details: h.details(nil)}
		if a.Verb == VerbLock {
			now, changed, err = q.LockApp(ctx, app.ID, h.rec.Actor, a.Reason)
			audit.Action, audit.Details["reason"] = store.AuditAppLocked, a.Reason
		} else {
			now, changed, err = q.UnlockApp(ctx, app.ID)
			audit.Action, audit.Details["was_locked_by"] = store.AuditAppUnlocked, now.LockedBy
		}
		if err != nil {
			return err
		}
		view["Changed"], view["LockedBy"], view["Reason"], view["Since"] = changed, now.LockedBy, now.LockedReason, since(now.LockedAt)
		if changed {
			if err := q.AppendAudit(ctx, audit); err != nil {
				return err
			}
		}
		body, err := h.c.r.render("lock", view)
		if err != nil {
			return err
		}
		if _, err := outbox.EnqueueComment(ctx, q, h.target(), replyThread(h.rec.IssueNumber, h.rec.CommentID), body); err != nil {
			return err
		}
		return q.SetCommandOutcome(ctx, h.rec.ID, store.CommandDone, app.ID)
	})
	h.done(err, store.CommandAccepted)
	return err
}

// appStatus is one app in status.md.
type appStatus struct {
	Name, Branch, LockedBy, Reason                    string
	ServingSHA, ServingShort, ServingURL, ServingLogs string
	ServingID                                         int64
	AppURL, Health                                    string
	LatestID                                          int64
	LatestKind, LatestShort, LatestState, LatestLogs  string
	LatestDescription                                 string
}

// status replies what each app (or the one named) serves.
func (h *handling) status(ctx context.Context, a Action) error {
	err := h.tx(ctx, "", func(q *store.Queries) error {
		var views []appStatus
		for _, app := range h.apps {
			if a.App != "" && app.Name != a.App {
				continue
			}
			v, err := h.appStatus(ctx, q, app)
			if err != nil {
				return err
			}
			views = append(views, v)
		}
		body, err := h.c.r.render("status", map[string]any{"Repo": h.fullName(), "Apps": views})
		if err != nil {
			return err
		}
		if _, err := outbox.EnqueueComment(ctx, q, h.target(), replyThread(h.rec.IssueNumber, h.rec.CommentID), body); err != nil {
			return err
		}
		return q.SetCommandOutcome(ctx, h.rec.ID, store.CommandDone, 0)
	})
	h.done(err, store.CommandAccepted)
	return err
}

func (h *handling) appStatus(ctx context.Context, q *store.Queries, app store.App) (appStatus, error) {
	links := h.c.cfg.Links
	v := appStatus{Name: app.Name, Branch: app.Branch, LockedBy: app.LockedBy, Reason: app.LockedReason,
		Health: "not checked"}
	if app.CurrentDeploymentID != 0 {
		cur, err := q.Deployment(ctx, app.CurrentDeploymentID)
		if err != nil {
			return v, err
		}
		v.ServingSHA, v.ServingShort, v.ServingID = cur.SHA, short(cur.SHA), cur.ID
		v.ServingURL = links.CommitURL(app.Owner, app.Repo, cur.SHA)
		v.ServingLogs = links.DeploymentURL(cur.ID)
		v.AppURL, v.Health = links.AppURL(app), healthResult(app, cur)
	}
	latest, err := q.LatestDeployment(ctx, app.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return v, nil
	case err != nil:
		return v, err
	}
	if latest.ID != v.ServingID {
		v.LatestID, v.LatestKind, v.LatestShort = latest.ID, latest.Kind, short(latest.SHA)
		v.LatestState, v.LatestDescription = latest.State, describe(latest)
		v.LatestLogs = links.DeploymentURL(latest.ID)
	}
	return v, nil
}
