package web

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
)

// "Sign in with GitHub" is GitHub's OAuth web flow: Keystone sends the
// browser to GitHub with a random state bound to a short-lived cookie,
// GitHub sends it back with a code, Keystone checks the state, trades the
// code for a user token, asks GET /user who that is, and lets the login in
// only if it is mapped to a Keystone user. The user token is used once and
// never stored or logged.

const oauthStateMaxAge = 600 // seconds to complete the round trip to GitHub

func (h *Handler) callbackURL() string {
	return strings.TrimSuffix(h.opts.PublicURL.String(), "/") + "/login/github/callback"
}

// githubStart sends the browser to GitHub's authorize page.
func (h *Handler) githubStart(c *gin.Context) {
	if !h.oauthEnabled() {
		h.refuse(c, http.StatusNotFound, "Not configured", "Sign in with GitHub is not configured on this Keystone.")
		return
	}
	clientID, _ := h.oauthClient()
	state := newToken()
	next := safeNext(c.Query("next"))
	h.setCookie(c, oauthStateCookie, state+"."+base64.RawURLEncoding.EncodeToString([]byte(next)), "/login/github", oauthStateMaxAge)
	q := url.Values{
		"client_id":    {clientID},
		"redirect_uri": {h.callbackURL()},
		"state":        {state},
		"allow_signup": {"false"},
	}
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusSeeOther, h.opts.GitHubWebURL+"/login/oauth/authorize?"+q.Encode())
}

// githubCallback finishes the flow GitHub sent the browser back from.
func (h *Handler) githubCallback(c *gin.Context) {
	if !h.oauthEnabled() {
		h.refuse(c, http.StatusNotFound, "Not configured", "Sign in with GitHub is not configured on this Keystone.")
		return
	}
	ctx := c.Request.Context()
	h.clearCookie(c, oauthStateCookie, "/login/github")
	ck, err := c.Request.Cookie(h.cookieName(oauthStateCookie, "/login/github"))
	var state, next string
	if err == nil {
		var nextB64 string
		state, nextB64, _ = strings.Cut(ck.Value, ".")
		nextRaw, _ := base64.RawURLEncoding.DecodeString(nextB64)
		next = safeNext(string(nextRaw))
	}
	if state == "" || subtle.ConstantTimeCompare([]byte(state), []byte(c.Query("state"))) != 1 {
		h.log.Warn("GitHub sign-in with a missing or wrong state", slog.String("address", c.ClientIP()))
		h.renderLogin(c, http.StatusBadRequest, LoginPage{Next: "/",
			Error: "GitHub sign-in could not be verified (its state did not match this browser). Please try again."})
		return
	}
	view := LoginPage{Next: next}
	if e := c.Query("error"); e != "" {
		view.Error = "GitHub sign-in was not completed: " + truncate(firstNonEmpty(c.Query("error_description"), e), 200)
		h.renderLogin(c, http.StatusUnauthorized, view)
		return
	}
	login, githubID, err := h.githubIdentity(ctx, c.Query("code"))
	if err != nil {
		h.log.Warn("GitHub sign-in failed", slog.String("error", err.Error()))
		view.Error = "GitHub sign-in failed: " + userText(err)
		h.renderLogin(c, http.StatusBadGateway, view)
		return
	}
	u, err := h.opts.Accounts.ByGitHubIdentity(ctx, githubID, login)
	if errors.Is(err, store.ErrNotFound) {
		err = h.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
			return h.auditLoginFailure(ctx, q, "github:"+login, map[string]any{
				"method": store.SignInGitHub, "github_login": login, "address": c.ClientIP(), "reason": "not mapped to a user"})
		})
		if err != nil {
			h.fail(c, err)
			return
		}
		view.Error = fmt.Sprintf("GitHub user %s is not a Keystone user. Ask an admin to run: keystone user add NAME --github %s --role viewer", login, login)
		h.renderLogin(c, http.StatusForbidden, view)
		return
	}
	if err != nil {
		h.fail(c, err)
		return
	}
	if err := h.startSession(c, u, store.SignInGitHub, map[string]any{"github_login": login, "github_id": githubID}); err != nil {
		h.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, next)
}

// oauthError is a refusal GitHub explained; its text is shown.
type oauthError struct{ msg string }

func (e oauthError) Error() string { return e.msg }

// userText is what a sign-in failure tells the person: GitHub's own
// explanation, or that GitHub could not be asked.
func userText(err error) string {
	var oe oauthError
	if errors.As(err, &oe) {
		return oe.msg
	}
	return "GitHub could not be reached or gave an unexpected answer; please try again later."
}

// githubIdentity trades the code for a user token and returns its login
// and GitHub's numeric user id.
func (h *Handler) githubIdentity(ctx context.Context, code string) (string, int64, error) {
	if code == "" || len(code) > 512 {
		return "", 0, oauthError{"GitHub sent no usable code back."}
	}
	clientID, clientSecret := h.oauthClient()
	form := url.Values{
		"client_id":     {clientID},
		"client_secret": {clientSecret},
		"code":          {code},
		"redirect_uri":  {h.callbackURL()},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.opts.GitHubWebURL+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("exchange OAuth code: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	var tok struct {
		AccessToken      string `json:"access_token"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := h.githubJSON(req, &tok); err != nil {
		return "", 0, fmt.Errorf("exchange OAuth code: %w", err)
	}
	if tok.Error != "" || tok.AccessToken == "" {
		return "", 0, oauthError{truncate(firstNonEmpty(tok.ErrorDescription, tok.Error, "GitHub gave no token."), 200)}
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, h.opts.GitHubAPIURL+"user", nil)
	if err != nil {
		return "", 0, fmt.Errorf("read GitHub user: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	var user struct {
		Login string `json:"login"`
		ID    int64  `json:"id"`
	}
	if err := h.githubJSON(req, &user); err != nil {
		return "", 0, fmt.Errorf("read GitHub user: %w", err)
	}
	if user.Login == "" || user.ID <= 0 {
		return "", 0, errors.New("read GitHub user: no login or id in the answer")
	}
	return user.Login, user.ID, nil
}

// githubJSON does req and decodes a 200 JSON answer into v. Errors carry the
// status, never the request (whose body or header holds a secret).
func (h *Handler) githubJSON(req *http.Request, v any) error {
	resp, err := h.opts.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is harmless, but keep messages short
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GitHub answered %s", resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GitHub's answer is not JSON: %w", err)
	}
	return nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
