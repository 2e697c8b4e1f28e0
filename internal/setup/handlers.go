package setup

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
	"github.com/keystone-app/keystone/templates"
)

// Cookies binding the setup to the browser that opened the link: the
// manifest's state, then the right to add the first admin.
const (
	stateCookie = "keystone_setup"
	adminCookie = "keystone_setup_admin"
)

var orgPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)

// page is setup.html's view, inside the status page's layout.
type page struct {
	Title, Nav, CSRF string
	User             any // always nil: nobody is signed in during setup
	Step             string

	// error
	Status                 int
	Heading, Message, Hint string

	// start
	Manifest     Manifest
	ManifestJSON string
	Action       string
	Org          string

	// created, admin
	Slug, InstallURL string
	AdminForm        bool
	Admin            string
}

var pageTemplate = template.Must(template.New("setup.html").Funcs(template.FuncMap{
	// Unversioned: served with no-cache, which is fine for three pages.
	"static": func(name string) string { return "/static/" + name },
}).ParseFS(templates.HTML, "html/layout.html", "html/setup.html"))

// Mount registers /setup, /setup/callback and /setup/admin.
func (s *Service) Mount(r *gin.Engine) {
	r.GET("/setup", s.start)
	r.GET("/setup/callback", s.callback)
	r.POST("/setup/admin", s.addAdmin)
}

func (s *Service) render(c *gin.Context, status int, p page) {
	if p.Title == "" {
		p.Title = "Set up Keystone"
	}
	var buf bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.cfg.Logger.Error("setup page not rendered", slog.String("error", err.Error()))
		c.String(http.StatusInternalServerError, "internal error: the page could not be rendered\n")
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "no-referrer") // the link's token must not leak
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// refuse shows a clear page and, when audit is set, records the refusal.
func (s *Service) refuse(c *gin.Context, status int, heading, message, hint string, audit map[string]any) {
	if audit != nil {
		audit["reason"] = message
		s.audit(c.Request.Context(), store.AuditSetupRefused, audit)
	}
	s.render(c, status, page{Title: heading, Step: "error", Status: status, Heading: heading, Message: message, Hint: hint})
}

const (
	hintNewLink = "Restart keystone serve: it logs a new setup link while no GitHub App is configured."
	hintRestart = "Open the setup page again (/setup in this browser) and create the App once more."
)

// refuseConfigured answers any setup request once an App is configured. It
// is audited when the request carries a grant (a link, a state): a bare
// visit of /setup is nobody's attempt, and must not fill the trail.
func (s *Service) refuseConfigured(c *gin.Context, step string) {
	var audit map[string]any
	if c.Query("token") != "" || c.Query("state") != "" || c.Request.Method == http.MethodPost {
		audit = map[string]any{"step": step, "problem": "an App is configured"}
	}
	s.refuse(c, http.StatusConflict, "A GitHub App is already configured",
		"Setup runs only while Keystone has no GitHub App, and this one has.",
		"To start over, run keystone app forget (or unset the KEYSTONE_GITHUB_* variables) and restart Keystone.",
		audit)
}

func (s *Service) setCookie(c *gin.Context, name, value string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: name, Value: value, Path: "/setup", MaxAge: maxAge, HttpOnly: true,
		Secure: s.cfg.PublicURL.Scheme == "https",
		// Lax: GitHub's redirect back to /setup/callback is a top-level GET
		// from another site, which must carry it.
		SameSite: http.SameSiteLaxMode,
	})
}

// start is GET /setup: with ?token= it spends the link and binds a new state
// to this browser; without, it shows the page to the browser holding one.
func (s *Service) start(c *gin.Context) {
	ctx := c.Request.Context()
	if s.cfg.Configured() {
		s.refuseConfigured(c, "start")
		return
	}
	if token := c.Query("token"); token != "" {
		state, err := s.spendLink(ctx, token)
		var rf *refusal
		switch {
		case errors.As(err, &rf):
			s.refuse(c, rf.status, "This setup link does not work", rf.message, hintNewLink, map[string]any{"step": "link"})
		case err != nil:
			s.fail(c, err)
		default:
			s.setCookie(c, stateCookie, state, int(GrantTTL.Seconds()))
			c.Redirect(http.StatusSeeOther, "/setup") // the token leaves the address bar
		}
		return
	}
	state, err := c.Cookie(stateCookie)
	if err == nil {
		err = s.cfg.Store.CheckSetupGrant(ctx, hashOf(state), store.GrantState, s.cfg.Now(), false)
	}
	if err != nil {
		s.refuse(c, http.StatusForbidden, "Open the setup link first",
			"Setup starts from the one-time link keystone serve logs at start ("+grantProblem(err, "setup session")+")", hintNewLink, nil)
		return
	}
	org := strings.TrimSpace(c.Query("org"))
	action := s.cfg.GitHubWebURL + "/settings/apps/new"
	if org != "" {
		if !orgPattern.MatchString(org) {
			s.refuse(c, http.StatusBadRequest, "Not an organisation name",
				"An organisation login has letters, digits and hyphens only, at most 39 of them.", "Go back and correct it.", nil)
			return
		}
		action = s.cfg.GitHubWebURL + "/organizations/" + url.PathEscape(org) + "/settings/apps/new"
	}
	action += "?state=" + url.QueryEscape(state)
	// The form posts to GitHub: allow that one origin in form-action.
	h := c.Writer.Header()
	if csp := h.Get("Content-Security-Policy"); csp != "" {
		h.Set("Content-Security-Policy", strings.Replace(csp, "form-action 'self'", "form-action 'self' "+origin(s.cfg.GitHubWebURL), 1))
	}
	s.render(c, http.StatusOK, page{Step: "start", Manifest: s.manifest, ManifestJSON: s.manifest.JSON(), Action: action, Org: org})
}

// origin is scheme://host of a URL.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

// spendLink uses the link's grant and makes a state grant, audited together.
func (s *Service) spendLink(ctx context.Context, token string) (string, error) {
	state, hash := newGrant()
	err := s.cfg.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		now := s.cfg.Now()
		if err := q.CheckSetupGrant(ctx, hashOf(token), store.GrantLink, now, true); err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGrantUsed) || errors.Is(err, store.ErrGrantExpired) {
				return &refusal{status: http.StatusForbidden, message: grantProblem(err, "setup link")}
			}
			return err
		}
		if err := q.InsertSetupGrant(ctx, hash, store.GrantState, now.Add(GrantTTL)); err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: "setup", Action: store.AuditSetupStarted, Target: "setup"})
	})
	return state, err
}

// callback is GET /setup/callback?code=…&state=…, GitHub's redirect.
func (s *Service) callback(c *gin.Context) {
	ctx := c.Request.Context()
	if s.cfg.Configured() {
		s.refuseConfigured(c, "callback")
		return
	}
	state, code := c.Query("state"), c.Query("code")
	cookie, _ := c.Cookie(stateCookie)
	switch {
	case state == "" || cookie == "" || !hmac.Equal([]byte(state), []byte(cookie)):
		s.refuse(c, http.StatusForbidden, "This answer from GitHub is not for this setup",
			"Its state does not match the setup started in this browser.", hintRestart, map[string]any{"step": "callback", "problem": "state mismatch"})
		return
	case code == "":
		s.refuse(c, http.StatusBadRequest, "GitHub sent no code",
			"The App was not created, or GitHub's answer was cut: there is no code to convert.", hintRestart, map[string]any{"step": "callback", "problem": "no code"})
		return
	}
	if err := s.cfg.Store.CheckSetupGrant(ctx, hashOf(state), store.GrantState, s.cfg.Now(), false); err != nil {
		s.refuse(c, http.StatusForbidden, "This answer from GitHub was already used or is too old",
			grantProblem(err, "setup state"), hintNewLink, map[string]any{"step": "callback", "problem": "state refused"})
		return
	}
	creds, adminToken, err := s.complete(ctx, state, code)
	var conv *github.ConversionError
	var rf *refusal
	switch {
	case errors.As(err, &conv) && conv.Status == http.StatusNotFound:
		s.refuse(c, http.StatusBadGateway, "GitHub does not know this code",
			"GitHub answered 404 to converting the code: a code converts once, within an hour of the App's creation.",
			hintRestart, map[string]any{"step": "conversion", "github_status": conv.Status})
	case errors.As(err, &conv):
		s.refuse(c, http.StatusBadGateway, "GitHub refused the code",
			"GitHub answered "+conv.Error()+" to converting the code. Nothing was stored.",
			hintRestart, map[string]any{"step": "conversion", "github_status": conv.Status})
	case errors.As(err, &rf):
		s.refuse(c, rf.status, "This answer from GitHub was already used or is too old", rf.message, hintNewLink,
			map[string]any{"step": "callback", "problem": "state refused"})
	case errors.Is(err, store.ErrAppStored):
		s.refuseConfigured(c, "store")
	case err != nil:
		s.audit(ctx, store.AuditSetupRefused, map[string]any{"step": "conversion", "reason": "error"})
		s.fail(c, err)
	default:
		s.setCookie(c, stateCookie, "", -1)
		s.setCookie(c, adminCookie, adminToken, int(GrantTTL.Seconds()))
		s.render(c, http.StatusOK, page{Step: "created", Slug: creds.Slug, InstallURL: installURL(creds),
			AdminForm: s.noUsers(ctx), CSRF: csrfFor(adminToken)})
	}
}

func installURL(creds github.AppCredentials) string {
	return strings.TrimSuffix(creds.HTMLURL, "/") + "/installations/new"
}

// csrfFor is the admin form's token: bound to the cookie, which a forging
// site cannot read.
func csrfFor(adminToken string) string {
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("keystone setup admin form"))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Service) noUsers(ctx context.Context) bool {
	us, err := s.cfg.Store.Users(ctx)
	return err == nil && len(us) == 0
}

// addAdmin is POST /setup/admin: the first admin user, once, by the browser
// that created the App, while there is no user at all.
func (s *Service) addAdmin(c *gin.Context) {
	ctx := c.Request.Context()
	token, _ := c.Cookie(adminCookie)
	if token == "" || !hmac.Equal([]byte(c.PostForm("csrf_token")), []byte(csrfFor(token))) {
		s.refuse(c, http.StatusForbidden, "This form is not from this setup",
			"Only the browser that created the App may add the first admin, from the setup page.",
			"Add users with keystone user add NAME --role admin.", map[string]any{"step": "admin", "problem": "no grant"})
		return
	}
	if err := s.cfg.Store.CheckSetupGrant(ctx, hashOf(token), store.GrantAdmin, s.cfg.Now(), false); err != nil {
		s.refuse(c, http.StatusForbidden, "The first admin cannot be added here any more", grantProblem(err, "admin form"),
			"Add users with keystone user add NAME --role admin.", map[string]any{"step": "admin", "problem": "grant refused"})
		return
	}
	if !s.noUsers(ctx) {
		s.refuse(c, http.StatusConflict, "Keystone has users already",
			"The setup adds the first admin only while there is no user at all.",
			"Add users with keystone user add NAME --role admin.", map[string]any{"step": "admin", "problem": "users exist"})
		return
	}
	name := strings.TrimSpace(c.PostForm("name"))
	password := c.PostForm("password")
	if len(password) < 8 {
		s.refuse(c, http.StatusBadRequest, "The password is too short", "Use at least 8 characters.", "Go back and choose another.", nil)
		return
	}
	if _, err := s.cfg.Accounts.Add(ctx, "setup", users.NewUser{Name: name, Role: store.RoleAdmin, Password: password}); err != nil {
		s.refuse(c, http.StatusBadRequest, "The admin was not created", err.Error(), "Go back and correct it.", nil)
		return
	}
	if err := s.cfg.Store.CheckSetupGrant(ctx, hashOf(token), store.GrantAdmin, s.cfg.Now(), true); err != nil {
		s.cfg.Logger.Warn("setup admin grant not spent", slog.String("error", err.Error()))
	}
	s.audit(ctx, store.AuditSetupAdminAdded, map[string]any{"user": name})
	s.setCookie(c, adminCookie, "", -1)
	install := ""
	if creds, ok, err := Load(ctx, s.cfg.Store, s.cfg.Keys); err == nil && ok {
		install = installURL(creds)
	}
	s.render(c, http.StatusOK, page{Step: "admin", Admin: name, InstallURL: install})
}

// fail logs an unexpected error and shows a page without its text.
func (s *Service) fail(c *gin.Context, err error) {
	s.cfg.Logger.Error("setup request failed", slog.String("path", c.Request.URL.Path), slog.String("error", err.Error()))
	s.render(c, http.StatusInternalServerError, page{Step: "error", Status: http.StatusInternalServerError,
		Heading: "Something went wrong", Message: "Keystone could not finish this step; the error is in its log. Nothing was stored half-way.",
		Hint: hintRestart})
}
