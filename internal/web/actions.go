package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
)

// redeploy queues the serving SHA again, as `/keystone deploy` would.
func (h *Handler) redeploy(c *gin.Context) { h.requestDeployment(c, store.KindRedeploy) }

// rollback queues a rollback to the chosen successful deployment (the form's
// "target"; none: the newest success before the serving one).
func (h *Handler) rollback(c *gin.Context) { h.requestDeployment(c, store.KindRollback) }

// requestDeployment hands a deployer's button press to the Requester, which
// validates, queues and audits it like the comment command. A viewer's
// attempt is refused and audited here.
func (h *Handler) requestDeployment(c *gin.Context, kind string) {
	a, ok := h.lookupApp(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	user := current(c).user
	if !users.RoleAtLeast(user.Role, store.RoleDeployer) {
		err := h.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
			return q.AppendAudit(ctx, store.AuditEvent{Actor: user.Name, Action: store.AuditCommandDenied, Target: a.Key(),
				Details: map[string]any{"command": kind, "trigger": store.TriggerPage, "role": user.Role}})
		})
		if err != nil {
			h.fail(c, err)
			return
		}
		h.log.Warn("page action refused", slog.String("user", user.Name), slog.String("app", a.Key()), slog.String("kind", kind))
		h.refuse(c, http.StatusForbidden, "Not allowed",
			fmt.Sprintf("A %s needs the deployer role; you are %s. Ask an admin if you need it.", kind, user.Role))
		return
	}
	if h.opts.Requester == nil {
		h.refuse(c, http.StatusServiceUnavailable, "Not available",
			"Redeploy and rollback from this page are not available on this Keystone; use the /keystone comment commands.")
		return
	}
	if kind != store.KindRollback {
		// The requester refuses it too, under the app's lock; this answers
		// a forced POST (or a second click) without asking it.
		unfinished, err := h.store.UnfinishedDeployments(ctx, a.ID)
		if err != nil {
			h.fail(c, err)
			return
		}
		if len(unfinished) > 0 {
			u := unfinished[0]
			h.log.Info("page action refused: a deployment is under way", slog.String("user", user.Name), slog.String("app", a.Key()),
				slog.String("kind", kind), slog.Int64("deployment_id", u.ID))
			h.renderApp(c, http.StatusConflict, a, &AppPage{Error: fmt.Sprintf(
				"The %s was not queued: deployment #%d (%s) is %s. Wait for it to end, or roll back.", kind, u.ID, u.Kind, inFlightState(u))})
			return
		}
	}
	req := deploy.Request{AppID: a.ID, Kind: kind, Actor: user.Name, Trigger: store.TriggerPage}
	if kind == store.KindRollback {
		if t := strings.TrimSpace(c.PostForm("target")); t != "" {
			id, err := strconv.ParseInt(strings.TrimPrefix(t, "#"), 10, 64)
			if err != nil || id <= 0 {
				h.renderApp(c, http.StatusBadRequest, a, &AppPage{Error: fmt.Sprintf("Rollback target %q is not a deployment number.", t)})
				return
			}
			req.TargetDeploymentID = id
		}
	}
	d, err := h.opts.Requester.Request(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return // the browser went away
		}
		// The requester's refusals are written for people (they are also
		// what a comment command replies).
		h.log.Info("page action refused by the requester", slog.String("user", user.Name), slog.String("app", a.Key()),
			slog.String("kind", kind), slog.String("error", err.Error()))
		h.renderApp(c, http.StatusConflict, a, &AppPage{Error: fmt.Sprintf("The %s was not queued: %s", kind, err)})
		return
	}
	h.log.Info("page action queued", slog.String("user", user.Name), slog.String("app", a.Key()),
		slog.String("kind", kind), slog.Int64("deployment_id", d.ID))
	c.Redirect(http.StatusSeeOther, deploymentPath(d.ID))
}

// inFlightState is "queued" or "running, at step S".
func inFlightState(d store.Deployment) string {
	if d.State == store.StateRunning {
		return "running, at step " + d.Step
	}
	return "queued"
}

// setSecret sets one secret of the app (admins only). The value is never
// echoed back, logged or put in an error.
func (h *Handler) setSecret(c *gin.Context) {
	a, ok := h.secretsApp(c)
	if !ok {
		return
	}
	key := strings.TrimSpace(c.PostForm("key"))
	// Browsers send a textarea's line breaks as CRLF; like the CLI, one
	// trailing line break is not part of the value.
	value := strings.ReplaceAll(c.PostForm("value"), "\r\n", "\n")
	value = strings.TrimSuffix(value, "\n")
	if key == "" {
		h.renderApp(c, http.StatusBadRequest, a, &AppPage{Error: "Give the secret a name."})
		return
	}
	user := current(c).user
	set := h.opts.Secrets.Set
	if c.PostForm("preview") == "1" {
		set = h.opts.Secrets.SetPreview
	}
	if err := set(c.Request.Context(), user.Name, a.Owner, a.Repo, a.Name, key, value); err != nil {
		msg, ok := secretRefusal(err)
		if !ok {
			h.fail(c, fmt.Errorf("set secret %s of %s: %w", key, a.Key(), err))
			return
		}
		h.log.Info("secret not set", slog.String("user", user.Name), slog.String("app", a.Key()), slog.String("key", key))
		h.renderApp(c, http.StatusUnprocessableEntity, a, &AppPage{Error: "The secret was not saved: " + msg})
		return
	}
	h.log.Info("secret set", slog.String("user", user.Name), slog.String("app", a.Key()), slog.String("key", key))
	c.Redirect(http.StatusSeeOther, appPath(a)+"?done=secret-set#secrets")
}

// unsetSecret removes one secret of the app (admins only).
func (h *Handler) unsetSecret(c *gin.Context) {
	a, ok := h.secretsApp(c)
	if !ok {
		return
	}
	key := strings.TrimSpace(c.PostForm("key"))
	user := current(c).user
	unset := h.opts.Secrets.Unset
	if c.PostForm("preview") == "1" {
		unset = h.opts.Secrets.UnsetPreview
	}
	if err := unset(c.Request.Context(), user.Name, a.Owner, a.Repo, a.Name, key); err != nil {
		msg, ok := secretRefusal(err)
		if !ok {
			h.fail(c, fmt.Errorf("unset secret %s of %s: %w", key, a.Key(), err))
			return
		}
		h.renderApp(c, http.StatusUnprocessableEntity, a, &AppPage{Error: "The secret was not removed: " + msg})
		return
	}
	h.log.Info("secret unset", slog.String("user", user.Name), slog.String("app", a.Key()), slog.String("key", key))
	c.Redirect(http.StatusSeeOther, appPath(a)+"?done=secret-unset#secrets")
}

// secretsApp finds the app whose secrets a request changes; false when it
// has answered already (no such app, or no secrets service here).
func (h *Handler) secretsApp(c *gin.Context) (store.App, bool) {
	a, ok := h.lookupApp(c)
	if !ok {
		return store.App{}, false
	}
	if h.opts.Secrets == nil {
		h.refuse(c, http.StatusServiceUnavailable, "Not available", "Secrets cannot be managed on this Keystone.")
		return store.App{}, false
	}
	return a, true
}

// secretRefusal is what an admin is told when a secret change is refused:
// the secrets service's own words about bad input (which never hold a
// value), or that the secret is not set. Anything else is a failure.
func secretRefusal(err error) (string, bool) {
	var input *secrets.InputError
	switch {
	case errors.As(err, &input):
		return input.Error(), true
	case errors.Is(err, store.ErrNotFound):
		return "no secret of that name is set", true
	}
	return "", false
}
