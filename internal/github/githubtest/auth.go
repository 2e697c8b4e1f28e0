package githubtest

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

// GitHub's answers to refused App JWTs.
const (
	msgJWTUndecodable = "A JSON web token could not be decoded"
	msgJWTExpired     = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	msgJWTTooLong     = "'Expiration time' claim ('exp') is too far in the future"
	msgJWTIssuedAt    = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	msgJWTIssuer      = "'Issuer' claim ('iss') must be the ID of the GitHub App"
	msgBadCredentials = "Bad credentials"
	msgNeedsAuth      = "Requires authentication"
	msgNotAccessible  = "Resource not accessible by integration"
)

// JWT rules GitHub applies.
const (
	maxJWTLifetime = 10 * time.Minute
	jwtClockSkew   = 60 * time.Second
)

// authResult is what the Authorization header proved.
type authResult struct {
	kind    AuthKind
	inst    int64  // installation of a token
	login   string // user of an OAuth user token
	message string // why an invalid credential was refused
}

// installation is one installation of the App.
type installation struct {
	id      int64
	account string
}

// token is an installation access token.
type token struct {
	inst    int64
	expires time.Time
}

// authenticate reads "token X" or "Bearer X": an X shaped like a JWT is
// checked as the App's JWT, anything else looked up as an installation token.
func (s *Server) authenticate(header string, now time.Time) authResult {
	if header == "" {
		return authResult{kind: AuthNone}
	}
	scheme, cred, _ := strings.Cut(header, " ")
	cred = strings.TrimSpace(cred)
	if (!strings.EqualFold(scheme, "token") && !strings.EqualFold(scheme, "bearer")) || cred == "" {
		return authResult{kind: AuthInvalid, message: msgBadCredentials}
	}
	if strings.Count(cred, ".") == 2 {
		if msg := s.verifyJWT(cred, now); msg != "" {
			return authResult{kind: AuthInvalid, message: msg}
		}
		return authResult{kind: AuthJWT}
	}
	if inst, ok := s.validToken(cred, now); ok {
		return authResult{kind: AuthToken, inst: inst}
	}
	if login, ok := s.userToken(cred); ok {
		return authResult{kind: AuthUser, login: login}
	}
	return authResult{kind: AuthInvalid, message: msgBadCredentials}
}

// verifyJWT checks raw as GitHub checks an App JWT: RS256 signed by the
// App's key, iss the App id (string or number), integer iat no more than
// the clock skew ahead, exp in the future and at most ten minutes after iat.
// It returns GitHub's refusal message, or "" when the JWT is good.
func (s *Server) verifyJWT(raw string, now time.Time) string {
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())
	claims := jwt.MapClaims{}
	keyFunc := func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil }
	if _, err := parser.ParseWithClaims(raw, claims, keyFunc); err != nil {
		return msgJWTUndecodable
	}
	var iss string
	switch v := claims["iss"].(type) {
	case string:
		iss = v
	case json.Number:
		iss = v.String()
	}
	if iss != strconv.FormatInt(s.AppID, 10) {
		return msgJWTIssuer
	}
	iat, okIat := intClaim(claims["iat"])
	exp, okExp := intClaim(claims["exp"])
	switch {
	case !okIat || time.Unix(iat, 0).After(now.Add(jwtClockSkew)):
		return msgJWTIssuedAt
	case !okExp || !time.Unix(exp, 0).After(now):
		return msgJWTExpired
	case time.Duration(exp-iat)*time.Second > maxJWTLifetime:
		return msgJWTTooLong
	}
	return ""
}

// intClaim reads an integer NumericDate claim; GitHub refuses fractions.
func intClaim(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

// auth returns what the request's Authorization header proved.
func auth(r *http.Request) authResult {
	a, _ := r.Context().Value(authCtxKey).(authResult)
	return a
}

// requireJWT guards an /app endpoint: only the App's JWT is accepted.
func (s *Server) requireJWT(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch a := auth(r); a.kind {
		case AuthJWT:
			h(w, r)
		case AuthNone:
			writeError(w, http.StatusUnauthorized, msgNeedsAuth)
		case AuthToken, AuthUser:
			writeError(w, http.StatusUnauthorized, msgJWTUndecodable)
		default:
			writeError(w, http.StatusUnauthorized, a.message)
		}
	}
}

// repoHandler handles a repository endpoint for an authorized caller.
type repoHandler func(w http.ResponseWriter, r *http.Request, rp *repo)

// requireRepo guards a /repos/{owner}/{repo} endpoint: it needs a valid
// installation token whose installation has the repository; any other
// repository is 404, as GitHub hides what a token cannot see.
func (s *Server) requireRepo(h repoHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := auth(r)
		switch a.kind {
		case AuthNone:
			writeError(w, http.StatusUnauthorized, msgNeedsAuth)
			return
		case AuthInvalid:
			writeError(w, http.StatusUnauthorized, a.message)
			return
		case AuthJWT:
			writeError(w, http.StatusForbidden, msgNotAccessible)
			return
		}
		s.mu.Lock()
		rp := s.repos[repoKey(r.PathValue("owner")+"/"+r.PathValue("repo"))]
		s.mu.Unlock()
		if rp == nil || rp.installation != a.inst {
			notFound(w, r)
			return
		}
		h(w, r, rp)
	}
}

// issueToken mints an installation token. Callers hold s.mu.
func (s *Server) issueToken(inst int64, now time.Time) (string, time.Time) {
	tok := "ghs_" + rand.Text()
	exp := now.Add(s.tokenTTL).Truncate(time.Second)
	s.tokens[tok] = &token{inst: inst, expires: exp}
	s.issued[inst]++
	return tok, exp
}

func (s *Server) validToken(tok string, now time.Time) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok || !now.Before(t.expires) {
		return 0, false
	}
	return t.inst, true
}

// ValidToken reports whether tok is an installation token GitHub would
// accept now, and for which installation (e.g. for a test git server).
func (s *Server) ValidToken(tok string) (installationID int64, ok bool) {
	return s.validToken(tok, s.now())
}

// RevokeTokens invalidates every token issued so far: later calls with them
// get 401 "Bad credentials".
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// TokensIssued returns how many tokens installation inst was given.
func (s *Server) TokensIssued(inst int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[inst]
}
