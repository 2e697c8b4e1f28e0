package githubtest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// "Sign in with GitHub": the OAuth web flow of an OAuth (or GitHub App)
// client, served by the fake at its root like github.com serves it:
// GET /login/oauth/authorize, POST /login/oauth/access_token, then GET /user
// with the user token. The browser's GitHub session is set by SignIn; the
// authorize page then grants at once, as GitHub does for an app the user
// already authorized.

// AuthUser is a request with a valid OAuth user token (Request.Auth).
const AuthUser AuthKind = "user"

const oauthCodeTTL = 10 * time.Minute // GitHub's

// oauthApp is an OAuth client the fake knows.
type oauthApp struct {
	secret, callback string
}

// oauthCode is an authorization code handed to a browser.
type oauthCode struct {
	clientID, redirectURI, login string
	expires                      time.Time
}

// oauthState is the fake's OAuth state, under Server.mu.
type oauthState struct {
	apps       map[string]oauthApp  // by client id
	codes      map[string]oauthCode // unused codes
	userTokens map[string]string    // token → login
	signedIn   string               // the browser's GitHub user; "" for none
	deny       bool                 // the user presses Cancel
}

// WebURL is the fake's base for GitHub's web pages (KEYSTONE_GITHUB_WEB_URL),
// without a trailing slash.
func (s *Server) WebURL() string { return strings.TrimSuffix(s.URL, "/") }

// AddOAuthApp registers an OAuth client with its secret and callback URL.
// GitHub accepts a redirect_uri on the callback's host and port whose path is
// the callback's or below it.
func (s *Server) AddOAuthApp(clientID, clientSecret, callbackURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthInit()
	s.oauth.apps[clientID] = oauthApp{secret: clientSecret, callback: callbackURL}
}

// SignIn makes login the GitHub user signed in to the fake's web pages, who
// authorizes any OAuth app at once. "" signs out.
func (s *Server) SignIn(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthInit()
	s.oauth.signedIn = login
	if login != "" {
		s.knowUser(login)
	}
}

// DenyAuthorization makes the signed-in user refuse (true) or grant (false)
// the apps that ask.
func (s *Server) DenyAuthorization(deny bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthInit()
	s.oauth.deny = deny
}

// oauthInit makes the maps. Callers hold s.mu.
func (s *Server) oauthInit() {
	if s.oauth.apps == nil {
		s.oauth.apps = map[string]oauthApp{}
		s.oauth.codes = map[string]oauthCode{}
		s.oauth.userTokens = map[string]string{}
	}
}

// userToken returns the login of an OAuth user token.
func (s *Server) userToken(tok string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	login, ok := s.oauth.userTokens[tok]
	return login, ok
}

// redirectAllowed applies GitHub's redirect_uri rule.
func redirectAllowed(callback, redirect string) bool {
	cb, err1 := url.Parse(callback)
	r, err2 := url.Parse(redirect)
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(cb.Scheme, r.Scheme) && strings.EqualFold(cb.Host, r.Host) &&
		(r.Path == cb.Path || strings.HasPrefix(r.Path, strings.TrimSuffix(cb.Path, "/")+"/"))
}

// authorize is GET /login/oauth/authorize.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthInit()
	app, ok := s.oauth.apps[q.Get("client_id")]
	if !ok {
		http.Error(w, "404: this OAuth application does not exist", http.StatusNotFound)
		return
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		redirect = app.callback
	}
	back := func(target string, v url.Values) {
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		http.Redirect(w, r, target+"?"+v.Encode(), http.StatusFound)
	}
	switch {
	case !redirectAllowed(app.callback, redirect):
		back(app.callback, url.Values{"error": {"redirect_uri_mismatch"},
			"error_description": {"The redirect_uri MUST match the registered callback URL for this application."}})
	case s.oauth.signedIn == "":
		http.Error(w, "Sign in to GitHub to continue (githubtest: call SignIn)", http.StatusUnauthorized)
	case s.oauth.deny:
		back(redirect, url.Values{"error": {"access_denied"},
			"error_description": {"The user has denied your application access."}})
	default:
		code := strings.ToLower(rand.Text())[:20]
		s.oauth.codes[code] = oauthCode{clientID: q.Get("client_id"), redirectURI: redirect, login: s.oauth.signedIn,
			expires: time.Now().Add(oauthCodeTTL)}
		back(redirect, url.Values{"code": {code}})
	}
}

// accessToken is POST /login/oauth/access_token. Like GitHub it answers 200
// with an "error" field when it refuses, as JSON when asked, form-encoded
// otherwise.
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	in := url.Values{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		for k, v := range body {
			in.Set(k, v)
		}
	} else if err := r.ParseForm(); err == nil {
		in = r.Form
	}
	answer := s.exchange(in)
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, http.StatusOK, answer)
		return
	}
	form := url.Values{}
	for k, v := range answer {
		form.Set(k, v)
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	_, _ = w.Write([]byte(form.Encode()))
}

func (s *Server) exchange(in url.Values) map[string]string {
	refuse := func(code, desc string) map[string]string {
		return map[string]string{"error": code, "error_description": desc,
			"error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthInit()
	app, ok := s.oauth.apps[in.Get("client_id")]
	if !ok || subtle.ConstantTimeCompare([]byte(app.secret), []byte(in.Get("client_secret"))) != 1 {
		return refuse("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
	}
	code, ok := s.oauth.codes[in.Get("code")]
	if !ok || code.clientID != in.Get("client_id") || time.Now().After(code.expires) {
		return refuse("bad_verification_code", "The code passed is incorrect or expired.")
	}
	if ru := in.Get("redirect_uri"); ru != "" && ru != code.redirectURI {
		return refuse("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
	}
	delete(s.oauth.codes, in.Get("code")) // codes are single use
	tok := "gho_" + rand.Text()
	s.oauth.userTokens[tok] = code.login
	return map[string]string{"access_token": tok, "token_type": "bearer", "scope": ""}
}

// getUser is GET /user: the user of an OAuth user token.
func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	a := auth(r)
	switch a.kind {
	case AuthUser:
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, s.userJSON(a.login))
	case AuthNone:
		writeError(w, http.StatusUnauthorized, msgNeedsAuth)
	case AuthInvalid:
		writeError(w, http.StatusUnauthorized, a.message)
	default:
		writeError(w, http.StatusForbidden, msgNotAccessible)
	}
}

// RenameUser renames GitHub account old to renamed: the account (its id)
// keeps its history under the new login, and old is free for anyone to
// register, as a new account with a new id.
func (s *Server) RenameUser(old, renamed string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.knowUser(old)
	delete(s.userIDs, strings.ToLower(old))
	s.userIDs[strings.ToLower(renamed)] = id
}
