package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
)

// Cookies the status page sets. All are HttpOnly and SameSite=Lax, and
// Secure when Keystone is served over https.
const (
	sessionCookie    = "keystone_session"
	loginCSRFCookie  = "keystone_login_csrf" // double-submit token of the sign-in form
	oauthStateCookie = "keystone_oauth_state"
	csrfField        = "csrf_token"
	csrfHeader       = "X-CSRF-Token"
)

// signedIn is the session of the request, set by requireSession.
type signedIn struct {
	session store.Session
	user    store.User
}

// csrfToken is the token every form of the session carries.
func (s *signedIn) csrfToken() string {
	return base64.RawURLEncoding.EncodeToString(s.session.CSRFSecret)
}

const signedInKey = "keystone.signedIn"

// current returns the request's session; requireSession guarantees one.
func current(c *gin.Context) *signedIn {
	s, _ := c.Get(signedInKey)
	si, _ := s.(*signedIn)
	return si
}

// newToken returns 32 random bytes, base64url without padding.
func newToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(32)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// secureCookies reports whether cookies must be Secure: Keystone's public
// URL is https, or this request came over TLS.
func (h *Handler) secureCookies(r *http.Request) bool {
	return h.opts.PublicURL.Scheme == "https" || r.TLS != nil
}

// cookieName is the name a cookie is set and read under. When Keystone's
// public URL is https it carries a prefix the browser enforces: __Host- for
// path "/" (Secure, no Domain: no other host, not even a sibling subdomain,
// can set or shadow it) and __Secure- for narrower paths (which __Host-
// does not allow). The name depends on configuration only, never on the
// request, so that setting and reading always agree.
func (h *Handler) cookieName(name, path string) string {
	switch {
	case h.opts.PublicURL.Scheme != "https":
		return name
	case path == "/":
		return "__Host-" + name
	default:
		return "__Secure-" + name
	}
}

func (h *Handler) setCookie(c *gin.Context, name, value, path string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: h.cookieName(name, path), Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: h.secureCookies(c.Request), SameSite: http.SameSiteLaxMode,
	})
}

func (h *Handler) clearCookie(c *gin.Context, name, path string) { h.setCookie(c, name, "", path, -1) }

// lookupSession returns the request's live session, or nil.
func (h *Handler) lookupSession(c *gin.Context) (*signedIn, error) {
	ck, err := c.Request.Cookie(h.cookieName(sessionCookie, "/"))
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, nil
	}
	s, u, err := h.store.ActiveSession(c.Request.Context(), tokenHash(ck.Value))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &signedIn{session: s, user: u}, nil
}

// requireSession lets signed-in requests through. Others are sent to the
// sign-in page when they are a browser navigation, and refused with 401
// otherwise (an EventSource, a script, curl).
func (h *Handler) requireSession(c *gin.Context) {
	si, err := h.lookupSession(c)
	if err != nil {
		h.fail(c, fmt.Errorf("read session: %w", err))
		c.Abort()
		return
	}
	if si == nil {
		if c.Request.Method == http.MethodGet && strings.Contains(c.GetHeader("Accept"), "text/html") {
			c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
		} else {
			c.Header("Cache-Control", "no-store")
			c.String(http.StatusUnauthorized, "sign in at /login first (your session is missing or has expired)\n")
		}
		c.Abort()
		return
	}
	c.Set(signedInKey, si)
	// Signed-in pages hold CSRF tokens and private data: never cache them.
	c.Header("Cache-Control", "no-store")
	c.Next()
}

// requireRole refuses users whose role is below min with 403.
func (h *Handler) requireRole(min string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if si := current(c); !users.RoleAtLeast(si.user.Role, min) {
			h.refuse(c, http.StatusForbidden, "Not allowed",
				fmt.Sprintf("This needs the %s role; you are %s. Ask an admin if you need it.", min, si.user.Role))
			c.Abort()
			return
		}
		c.Next()
	}
}

// checkCSRF refuses a POST without the session's CSRF token, taken from
// the csrf_token form field or the X-CSRF-Token header.
func (h *Handler) checkCSRF(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	got := c.PostForm(csrfField)
	if got == "" {
		got = c.GetHeader(csrfHeader)
	}
	want := current(c).csrfToken()
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		h.log.Warn("CSRF token missing or wrong", slog.String("path", c.Request.URL.Path), slog.String("user", current(c).user.Name))
		h.refuse(c, http.StatusForbidden, "Form expired",
			"This form's security token is missing or out of date. Go back, reload the page and try again.")
		c.Abort()
		return
	}
	c.Next()
}

// maxFormBytes bounds every form the status page accepts (a secret value is
// the largest thing in one).
const maxFormBytes = 256 << 10

// startSession signs u in: it stores a new session, audits the sign-in and
// forgets the user's failed attempts in one transaction, then sets the cookie.
func (h *Handler) startSession(c *gin.Context, u store.User, method string, details map[string]any) error {
	token := newToken()
	now := h.opts.Now()
	s := store.Session{
		TokenHash: tokenHash(token), UserID: u.ID, CSRFSecret: randomBytes(32), Method: method,
		RemoteAddr: c.ClientIP(), ExpiresAt: now.Add(h.opts.SessionTTL),
	}
	details["method"] = method
	details["address"] = c.ClientIP()
	err := h.store.InTx(c.Request.Context(), func(_ pgx.Tx, q *store.Queries) error {
		if err := q.InsertSession(c.Request.Context(), s); err != nil {
			return err
		}
		if err := q.ClearLoginFailures(c.Request.Context(), "name:"+u.Name); err != nil {
			return err
		}
		return q.AppendAudit(c.Request.Context(), store.AuditEvent{
			Actor: u.Name, Action: store.AuditLoginSucceeded, Target: "user:" + u.Name, Details: details})
	})
	if err != nil {
		return fmt.Errorf("sign in %s: %w", u.Name, err)
	}
	h.setCookie(c, sessionCookie, token, "/", int(h.opts.SessionTTL.Seconds()))
	h.log.Info("signed in", slog.String("user", u.Name), slog.String("method", method))
	return nil
}

// auditLoginFailure records a refused sign-in.
func (h *Handler) auditLoginFailure(ctx context.Context, q *store.Queries, actor string, details map[string]any) error {
	return q.AppendAudit(ctx, store.AuditEvent{
		Actor: actor, Action: store.AuditLoginFailed, Target: "user:" + actor, Details: details})
}

// safeNext returns next if it is a path on this site, and "/" otherwise, so
// that the sign-in page cannot be used to send people elsewhere.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "/login") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}
