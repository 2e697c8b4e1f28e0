package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
)

// loginCSRFMaxAge is how long a sign-in form stays usable.
const loginCSRFMaxAge = 3600

// loginForm shows the sign-in page, or sends a signed-in user on.
func (h *Handler) loginForm(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	next := safeNext(c.Query("next"))
	si, err := h.lookupSession(c)
	if err != nil {
		h.fail(c, err)
		return
	}
	if si != nil {
		c.Redirect(http.StatusSeeOther, next)
		return
	}
	view := LoginPage{Next: next}
	if c.Query("signed_out") != "" {
		view.Notice = "You are signed out."
	}
	h.renderLogin(c, http.StatusOK, view)
}

// renderLogin renders the sign-in page with a login CSRF token, reusing the
// browser's if it has one so that two open tabs both work.
func (h *Handler) renderLogin(c *gin.Context, status int, view LoginPage) {
	token := ""
	if ck, err := c.Request.Cookie(h.cookieName(loginCSRFCookie, "/login")); err == nil && len(ck.Value) == 43 {
		token = ck.Value
	} else {
		token = newToken()
	}
	h.setCookie(c, loginCSRFCookie, token, "/login", loginCSRFMaxAge)
	c.Header("Cache-Control", "no-store")
	view.Chrome = Chrome{Title: "Sign in", CSRF: token}
	view.GitHub = h.oauthEnabled()
	view.GitHubURL = "/login/github"
	if view.Next != "/" {
		view.GitHubURL += "?next=" + url.QueryEscape(view.Next)
	}
	h.render(c, status, &view)
}

// login checks a name and password. Failures are counted per name and per
// address; past LoginFailureLimit in LoginFailureWindow the answer is 429
// until the oldest failure leaves the window.
func (h *Handler) login(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	ctx := c.Request.Context()
	name := strings.ToLower(strings.TrimSpace(c.PostForm("name")))
	password := c.PostForm("password")
	view := LoginPage{Next: safeNext(c.PostForm("next")), Name: name}
	ck, err := c.Request.Cookie(h.cookieName(loginCSRFCookie, "/login"))
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.PostForm(csrfField))) != 1 {
		view.Error = "The sign-in form expired. Please try again."
		h.renderLogin(c, http.StatusForbidden, view)
		return
	}
	if name == "" || password == "" {
		view.Error = "Enter your user name and password."
		h.renderLogin(c, http.StatusBadRequest, view)
		return
	}
	name = truncate(name, 64)
	keys := []string{"name:" + name, "addr:" + c.ClientIP()}
	// The attempt counts before its password is checked: a burst of them
	// sees itself, and at most LoginFailureLimit reach the (costly) check.
	attempt, err := h.store.RecordLoginAttempt(ctx, keys...)
	if err != nil {
		h.fail(c, err)
		return
	}
	forget := func() error { return h.store.ForgetLoginAttempt(context.WithoutCancel(ctx), attempt) }
	failures, wait, err := h.store.LoginFailures(ctx, LoginFailureWindow, keys...)
	if err != nil {
		h.fail(c, errors.Join(err, forget()))
		return
	}
	if failures > LoginFailureLimit {
		if err := forget(); err != nil { // turned away: not a failure
			h.fail(c, err)
			return
		}
		secs := max(int(math.Ceil(wait.Seconds())), 1)
		c.Header("Retry-After", strconv.Itoa(secs))
		h.log.Warn("sign-in throttled", slog.String("user", name), slog.String("address", c.ClientIP()))
		view.Error = fmt.Sprintf("Too many failed sign-ins for this name or from this address. Try again in %d seconds.", secs)
		h.renderLogin(c, http.StatusTooManyRequests, view)
		return
	}
	u, err := h.opts.Accounts.Authenticate(ctx, name, password)
	if errors.Is(err, users.ErrBadCredentials) {
		err = h.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
			return h.auditLoginFailure(ctx, q, name, map[string]any{"method": store.SignInPassword, "address": c.ClientIP()})
		})
		if err != nil {
			h.fail(c, err)
			return
		}
		h.log.Info("sign-in refused", slog.String("user", name), slog.String("address", c.ClientIP()))
		view.Error = "Wrong user name or password."
		h.renderLogin(c, http.StatusUnauthorized, view)
		return
	}
	if ferr := forget(); ferr != nil || err != nil { // signed in, or not checked
		h.fail(c, errors.Join(err, ferr))
		return
	}
	if err := h.startSession(c, u, store.SignInPassword, map[string]any{}); err != nil {
		h.fail(c, err)
		return
	}
	h.clearCookie(c, loginCSRFCookie, "/login")
	c.Redirect(http.StatusSeeOther, view.Next)
}

// logout ends the session, audits it and clears the cookie.
func (h *Handler) logout(c *gin.Context) {
	si := current(c)
	ctx := c.Request.Context()
	err := h.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if err := q.DeleteSession(ctx, si.session.TokenHash); err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: si.user.Name, Action: store.AuditLogout,
			Target: "user:" + si.user.Name, Details: map[string]any{"address": c.ClientIP()}})
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	h.clearCookie(c, sessionCookie, "/")
	h.log.Info("signed out", slog.String("user", si.user.Name))
	c.Redirect(http.StatusSeeOther, "/login?signed_out=1")
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
