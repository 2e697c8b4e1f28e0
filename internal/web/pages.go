package web

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
)

// Page sizes and bounds.
const (
	historyPageSize   = 50
	auditPageSize     = 100
	rollbackChoices   = 20
	pageLogLines      = 20000 // more than this: the page points at the plain log
	containerDeadline = 3 * time.Second
)

// overview is / : every app with what serves and how its last deploy went.
func (h *Handler) overview(c *gin.Context) {
	summaries, err := h.store.AppsOverview(c.Request.Context())
	if err != nil {
		h.fail(c, err)
		return
	}
	now := h.opts.Now()
	view := &AppsPage{Chrome: Chrome{Title: "Apps", Nav: "apps"}}
	for _, s := range summaries {
		a := s.App
		row := AppRow{App: Link{appPath(a), a.Name}, Repository: Link{h.repoURL(a.Owner, a.Repo), a.FullName()},
			Branch: a.Branch, Locked: a.Locked(), State: Badge{"never deployed", "muted"}}
		if a.Preview() {
			row.Branch = fmt.Sprintf("preview of #%d", a.PRNumber)
			if a.HeadRef != "" {
				row.Branch += " (" + a.HeadRef + ")"
			}
		}
		if u := h.appURL(a); u != "" {
			row.URL = &Link{u, u}
		}
		if s.Current != nil {
			cm := h.commit(a.Owner, a.Repo, s.Current.SHA)
			row.Serving = &cm
			row.Health = health(*s.Current)
		}
		if d := s.Latest; d != nil {
			row.State = stateBadge(d.State)
			t := at(now, d.QueuedAt)
			if d.FinishedAt != nil {
				t = at(now, *d.FinishedAt)
			}
			t.Href = deploymentPath(d.ID)
			row.LastDeploy = &t
		}
		view.Apps = append(view.Apps, row)
	}
	h.render(c, http.StatusOK, view)
}

// lookupApp reads the app of the route; it answers 404 itself when missing.
func (h *Handler) lookupApp(c *gin.Context) (store.App, bool) {
	owner, repo, name := appKey(c)
	a, err := h.store.AppByName(c.Request.Context(), owner, repo, name)
	if err != nil {
		h.fail(c, err)
		return store.App{}, false
	}
	return a, true
}

// appPage is /apps/{owner}/{repo}/{app}.
func (h *Handler) appPage(c *gin.Context) {
	a, ok := h.lookupApp(c)
	if !ok {
		return
	}
	view := &AppPage{}
	if c.Query("done") == "secret-set" {
		view.Notice = "Secret saved. It applies from the next deploy."
	} else if c.Query("done") == "secret-unset" {
		view.Notice = "Secret removed. It applies from the next deploy."
	}
	h.renderApp(c, http.StatusOK, a, view)
}

// renderApp fills and renders the app page; view may carry a notice or error.
func (h *Handler) renderApp(c *gin.Context, status int, a store.App, view *AppPage) {
	ctx := c.Request.Context()
	now := h.opts.Now()
	before, _ := strconv.ParseInt(c.Query("before"), 10, 64)
	history, err := h.store.AppHistory(ctx, a.ID, max(before, 0), historyPageSize+1)
	if err != nil {
		h.fail(c, err)
		return
	}
	view.Chrome = Chrome{Title: a.Key(), Nav: "apps"}
	view.Owner, view.Repo, view.Name, view.Path = a.Owner, a.Repo, a.Name, appPath(a)
	view.RepoURL, view.Branch, view.URL, view.Removed = h.repoURL(a.Owner, a.Repo), a.Branch, h.appURL(a), a.RemovedAt != nil
	if a.Locked() {
		view.Lock = &LockView{By: a.LockedBy, Reason: a.LockedReason, At: atPtr(now, a.LockedAt)}
	}
	if len(history) > historyPageSize {
		history = history[:historyPageSize]
		view.OlderPath = fmt.Sprintf("%s?before=%d", appPath(a), history[len(history)-1].ID)
	}
	if before > 0 {
		view.NewestPath = appPath(a)
	}
	for _, d := range history {
		view.History = append(view.History, h.deploymentRow(now, a, d))
	}
	if a.CurrentDeploymentID != 0 {
		d, err := h.store.Deployment(ctx, a.CurrentDeploymentID)
		if err != nil {
			h.fail(c, err)
			return
		}
		row := h.deploymentRow(now, a, d)
		view.Serving = &row
	}
	view.Container = h.containerView(ctx, now, a)
	view.Certificate = h.certificateView(ctx, now, a)
	user := current(c).user
	if users.RoleAtLeast(user.Role, store.RoleDeployer) {
		if err := h.fillActions(ctx, now, a, view); err != nil {
			h.fail(c, err)
			return
		}
	}
	// A preview's secrets are its app's preview secrets, set on that app.
	if user.Role == store.RoleAdmin && h.opts.Secrets != nil && !a.Preview() {
		view.Secrets = h.secretsView(ctx, a)
	}
	h.render(c, status, view)
}

// fillActions offers a deployer the redeploy and rollback forms.
func (h *Handler) fillActions(ctx context.Context, now time.Time, a store.App, view *AppPage) error {
	switch {
	case h.opts.Requester == nil:
		view.ActionsUnavailable = "Redeploy and rollback from this page are not available on this Keystone."
		return nil
	case a.RemovedAt != nil:
		view.ActionsUnavailable = "This app was removed from its repository's .keystone.yml."
		return nil
	}
	unfinished, err := h.store.UnfinishedDeployments(ctx, a.ID)
	if err != nil {
		return err
	}
	if len(unfinished) > 0 {
		u := unfinished[0]
		for _, d := range unfinished {
			if d.State == store.StateRunning {
				u = d // the one at work, rather than the next in line
				break
			}
		}
		view.InFlight = &InFlightView{ID: u.ID, Path: deploymentPath(u.ID), EventsPath: deploymentPath(u.ID) + "/events",
			Kind: u.Kind, Running: u.State == store.StateRunning, Step: u.Step}
	}
	if a.CurrentDeploymentID != 0 {
		view.Redeploy = &ActionForm{Action: appPath(a) + "/redeploy", Label: "Redeploy " + view.Serving.Commit.Short}
		if view.InFlight != nil {
			view.Redeploy.Disabled = fmt.Sprintf("Deployment #%d is under way: redeploy once it ends.", view.InFlight.ID)
		}
	}
	candidates, err := h.store.RollbackCandidates(ctx, a.ID, rollbackChoices+1)
	if err != nil {
		return err
	}
	form := &RollbackForm{Action: appPath(a) + "/rollback"}
	selected := false
	for _, d := range candidates {
		if d.ID == a.CurrentDeploymentID {
			continue // serving already
		}
		// The default target: the newest success before the one serving.
		sel := !selected && (a.CurrentDeploymentID == 0 || d.ID < a.CurrentDeploymentID)
		selected = selected || sel
		form.Targets = append(form.Targets, RollbackTarget{ID: d.ID, Selected: sel,
			Label: fmt.Sprintf("#%d · %s · %s by %s, %s", d.ID, h.commit(a.Owner, a.Repo, d.SHA).Short, d.Kind, d.Actor, relative(now, d.QueuedAt))})
	}
	if len(form.Targets) > rollbackChoices {
		form.Targets = form.Targets[:rollbackChoices]
	}
	if len(form.Targets) > 0 {
		view.Rollback = form
	}
	if view.Redeploy == nil && view.Rollback == nil {
		view.ActionsUnavailable = "Nothing has deployed successfully yet: there is nothing to redeploy or roll back to."
	}
	return nil
}

// containerView asks Docker about the app's container, briefly: a slow or
// absent engine must not hold the page.
func (h *Handler) containerView(ctx context.Context, now time.Time, a store.App) ContainerView {
	if h.opts.Containers == nil {
		return ContainerView{Problem: "Container state is not available on this Keystone."}
	}
	ctx, cancel := context.WithTimeout(ctx, containerDeadline)
	defer cancel()
	st, err := h.opts.Containers.State(ctx, a)
	if err != nil {
		h.log.Warn("container state unavailable", "app", a.Key(), "error", err.Error())
		return ContainerView{Problem: "Docker unreachable: the container's state cannot be shown right now."}
	}
	if st.State == "" {
		return ContainerView{Problem: "No container is running for this app.", Foreign: st.Foreign}
	}
	v := ContainerView{Available: true, Image: st.Image, State: containerBadge(st.State), Foreign: st.Foreign}
	if !st.StartedAt.IsZero() {
		v.StartedAt = atPtr(now, &st.StartedAt)
	}
	for i, l := range st.Output {
		v.Output = append(v.Output, logLine(i+1, l))
	}
	return v
}

// certificateRenewalWindow: the router renews a certificate 30 days before
// it expires, so one closer than 20 days to expiry failed to renew.
const certificateRenewalWindow = 20 * 24 * time.Hour

// certificateView is the HTTPS state of the app's host, or nil when apps are
// not served over HTTPS (IP mode, KEYSTONE_TLS off, no router).
func (h *Handler) certificateView(ctx context.Context, now time.Time, a store.App) *CertificateView {
	if h.opts.Certificates == nil || !h.opts.Apps.HTTPS || a.RemovedAt != nil {
		return nil
	}
	u, err := url.Parse(h.appURL(a))
	if err != nil || u.Hostname() == "" {
		return nil
	}
	v := &CertificateView{Host: u.Hostname()}
	ctx, cancel := context.WithTimeout(ctx, containerDeadline)
	defer cancel()
	list, err := h.opts.Certificates.Certificates(ctx)
	if err != nil {
		h.log.Warn("certificate state unavailable", "app", a.Key(), "error", err.Error())
		v.Problem = "The router cannot be asked about certificates right now."
		return v
	}
	for _, c := range list {
		if c.Host != v.Host {
			continue
		}
		v.Issuer = c.Issuer
		if !c.NotAfter.IsZero() {
			v.Expires = atPtr(now, &c.NotAfter)
			v.Soon = c.NotAfter.Sub(now) < certificateRenewalWindow
		}
		if c.LastError != "" {
			v.Error = c.LastError
			v.ErrorAt = atPtr(now, &c.LastErrorAt)
		}
	}
	return v
}

func containerBadge(state string) Badge {
	switch state {
	case "running":
		return Badge{state, "ok"}
	case "restarting", "paused", "created":
		return Badge{state, "warn"}
	}
	return Badge{state, "bad"}
}

// secretsView lists the app's secret names for an admin.
func (h *Handler) secretsView(ctx context.Context, a store.App) *SecretsView {
	v := &SecretsView{SetAction: appPath(a) + "/secrets", UnsetAction: appPath(a) + "/secrets/unset"}
	names, err := h.opts.Secrets.List(ctx, a.Owner, a.Repo, a.Name)
	if err != nil {
		h.log.Warn("secret names unavailable", "app", a.Key(), "error", err.Error())
		v.Problem = "The secret names cannot be read right now."
		return v
	}
	v.Names = slices.Sorted(slices.Values(names))
	preview, err := h.opts.Secrets.ListPreview(ctx, a.Owner, a.Repo, a.Name)
	if err != nil {
		h.log.Warn("preview secret names unavailable", "app", a.Key(), "error", err.Error())
		v.Problem = "The secret names cannot be read right now."
		return v
	}
	v.PreviewNames = slices.Sorted(slices.Values(preview))
	return v
}

// deploymentPage is /deployments/{id}: steps, health and the whole log.
func (h *Handler) deploymentPage(c *gin.Context) {
	ctx := c.Request.Context()
	d, a, ok := h.lookupDeployment(c)
	if !ok {
		return
	}
	steps, err := h.store.StepsOf(ctx, d.ID)
	if err != nil {
		h.fail(c, err)
		return
	}
	lines, err := h.store.DeploymentLog(ctx, d.ID, 0, pageLogLines+1)
	if err != nil {
		h.fail(c, err)
		return
	}
	now := h.opts.Now()
	view := &DeploymentPage{
		Chrome:     Chrome{Title: fmt.Sprintf("Deployment #%d of %s", d.ID, a.Key()), Nav: "apps"},
		Deployment: h.deploymentRow(now, a, d), AppName: a.Key(), AppPath: appPath(a), Ref: d.Ref,
		Started: atPtr(now, d.StartedAt), Finished: atPtr(now, d.FinishedAt),
		LogTruncated: d.LogTruncated, PlainLogPath: deploymentPath(d.ID) + "/log",
	}
	if d.TargetDeploymentID != 0 {
		if t, err := h.store.Deployment(ctx, d.TargetDeploymentID); err == nil {
			row := h.deploymentRow(now, a, t)
			view.Target = &row
		}
	}
	for _, s := range steps {
		view.Steps = append(view.Steps, stepRow(now, s))
	}
	if len(lines) > pageLogLines {
		lines, view.LogCut = lines[:pageLogLines], true
	}
	last := 0
	for _, l := range lines {
		view.Log = append(view.Log, logLine(l.Seq, l.Text))
		last = l.Seq
	}
	if !d.Finished() && !view.LogCut {
		view.EventsPath = fmt.Sprintf("%s/events?after=%d", deploymentPath(d.ID), last)
	}
	h.render(c, http.StatusOK, view)
}

func stepRow(now time.Time, s store.DeploymentStep) StepRow {
	r := StepRow{Name: s.Name, Started: at(now, s.StartedAt), Error: s.Error}
	switch {
	case s.Error != "":
		r.State = Badge{"failed", "bad"}
	case s.FinishedAt == nil:
		r.State = Badge{"running", "run"}
	default:
		r.State = Badge{"done", "ok"}
	}
	if s.FinishedAt != nil {
		r.Duration = duration(s.FinishedAt.Sub(s.StartedAt))
	} else {
		r.Duration = duration(now.Sub(s.StartedAt)) + " so far"
	}
	return r
}

// lookupDeployment reads the deployment of the route and its app; it answers
// itself when they are missing.
func (h *Handler) lookupDeployment(c *gin.Context) (store.Deployment, store.App, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		h.refuse(c, http.StatusNotFound, "Not found", "Deployments are numbered: /deployments/123.")
		return store.Deployment{}, store.App{}, false
	}
	d, err := h.store.Deployment(c.Request.Context(), id)
	if err != nil {
		h.fail(c, err)
		return store.Deployment{}, store.App{}, false
	}
	a, err := h.store.App(c.Request.Context(), d.AppID)
	if err != nil {
		h.fail(c, err)
		return store.Deployment{}, store.App{}, false
	}
	return d, a, true
}

// audit is /audit, newest first, a page at a time.
func (h *Handler) audit(c *gin.Context) {
	before, _ := strconv.ParseInt(c.Query("before"), 10, 64)
	events, err := h.store.AuditPage(c.Request.Context(), max(before, 0), auditPageSize+1)
	if err != nil {
		h.fail(c, err)
		return
	}
	now := h.opts.Now()
	view := &AuditPage{Chrome: Chrome{Title: "Audit log", Nav: "audit"}}
	if len(events) > auditPageSize {
		events = events[:auditPageSize]
		view.OlderPath = fmt.Sprintf("/audit?before=%d", events[len(events)-1].ID)
	}
	if before > 0 {
		view.NewestPath = "/audit"
	}
	for _, e := range events {
		view.Events = append(view.Events, AuditRow{ID: e.ID, At: at(now, e.At), Actor: e.Actor, Action: e.Action,
			Target: e.Target, Details: details(e.Details)})
	}
	h.render(c, http.StatusOK, view)
}

// usersPage is /users: every user, for admins. Users are added and removed
// with the CLI, which the page says.
func (h *Handler) usersPage(c *gin.Context) {
	list, err := h.store.Users(c.Request.Context())
	if err != nil {
		h.fail(c, err)
		return
	}
	now := h.opts.Now()
	view := &UsersPage{Chrome: Chrome{Title: "Users", Nav: "users"}}
	for _, u := range list {
		view.Users = append(view.Users, UserRow{Name: u.Name, Role: u.Role, GitHubLogin: u.GitHubLogin,
			Password: u.PasswordHash != "", Added: at(now, u.CreatedAt)})
	}
	h.render(c, http.StatusOK, view)
}

// details lists an audit event's details by key, values as JSON unless text.
func details(m map[string]any) []KeyValue {
	var out []KeyValue
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v, ok := m[k].(string)
		if !ok {
			b, _ := json.Marshal(m[k])
			v = string(b)
		}
		out = append(out, KeyValue{Key: k, Value: v})
	}
	return out
}
