package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sign-in methods recorded with a session.
const (
	SignInPassword = "password"
	SignInGitHub   = "github"
)

// Session is a signed-in browser. TokenHash is the SHA-256 of the cookie's
// token; the token itself is never stored.
type Session struct {
	TokenHash  []byte
	UserID     int64
	CSRFSecret []byte
	Method     string
	RemoteAddr string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// InsertSession stores a new session.
func (q *Queries) InsertSession(ctx context.Context, s Session) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO sessions (token_hash, user_id, csrf_secret, method, remote_addr, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		s.TokenHash, s.UserID, s.CSRFSecret, s.Method, noNUL(s.RemoteAddr), s.ExpiresAt)
	if err != nil {
		return fmt.Errorf("store session of user %d: %w", s.UserID, err)
	}
	return nil
}

// ActiveSession returns the unexpired session with the token hash and its
// user, in one round trip: every page asks it.
func (q *Queries) ActiveSession(ctx context.Context, tokenHash []byte) (Session, User, error) {
	var s Session
	var u User
	err := q.db.QueryRow(ctx, `
		SELECT s.token_hash, s.user_id, s.csrf_secret, s.method, s.remote_addr, s.created_at, s.expires_at,
			u.id, u.name, u.role, COALESCE(u.password_hash, ''), COALESCE(u.github_login, ''), u.created_at
		FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.token_hash = $1 AND s.expires_at > now()`, tokenHash).Scan(
		&s.TokenHash, &s.UserID, &s.CSRFSecret, &s.Method, &s.RemoteAddr, &s.CreatedAt, &s.ExpiresAt,
		&u.ID, &u.Name, &u.Role, &u.PasswordHash, &u.GitHubLogin, &u.CreatedAt)
	if err != nil {
		return Session{}, User{}, notFound(err, "session")
	}
	return s, u, nil
}

// DeleteSession ends the session with the token hash; ending one that is
// already gone is not an error.
func (q *Queries) DeleteSession(ctx context.Context, tokenHash []byte) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM sessions WHERE token_hash = $1`, tokenHash); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions past their expiry and returns how many.
func (q *Queries) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	tag, err := q.db.Exec(ctx, `DELETE FROM sessions WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("remove expired sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RecordLoginFailure notes one failed sign-in under each key.
func (q *Queries) RecordLoginFailure(ctx context.Context, keys ...string) error {
	if _, err := q.db.Exec(ctx, `INSERT INTO login_failures (key) SELECT unnest($1::text[])`, noNULs(keys)); err != nil {
		return fmt.Errorf("record failed sign-in: %w", err)
	}
	return nil
}

// RecordLoginAttempt records a sign-in attempt under each key, as a failure
// until ForgetLoginAttempt says otherwise, and returns the rows' ids. It is
// recorded before the password is checked, so that attempts running at once
// count each other.
func (q *Queries) RecordLoginAttempt(ctx context.Context, keys ...string) ([]int64, error) {
	rows, err := q.db.Query(ctx, `INSERT INTO login_failures (key) SELECT unnest($1::text[]) RETURNING id`, noNULs(keys))
	if err != nil {
		return nil, fmt.Errorf("record sign-in attempt: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("record sign-in attempt: %w", err)
	}
	return ids, nil
}

// ForgetLoginAttempt removes the rows RecordLoginAttempt returned: the
// attempt succeeded, or was turned away before its password was checked.
func (q *Queries) ForgetLoginAttempt(ctx context.Context, ids []int64) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM login_failures WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("forget sign-in attempt: %w", err)
	}
	return nil
}

// LoginFailures returns, for the key with the most failures within the last
// window (by the database's clock), how many it has and how long until the
// oldest of them leaves the window.
func (q *Queries) LoginFailures(ctx context.Context, window time.Duration, keys ...string) (int, time.Duration, error) {
	var n int
	var retryMS float64
	err := q.db.QueryRow(ctx, `
		SELECT count(*)::int, EXTRACT(EPOCH FROM min(at) + make_interval(secs => $2) - now()) * 1000
		FROM login_failures
		WHERE key = ANY($1) AND at > now() - make_interval(secs => $2)
		GROUP BY key ORDER BY count(*) DESC, min(at) LIMIT 1`, noNULs(keys), window.Seconds()).Scan(&n, &retryMS)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("count failed sign-ins: %w", err)
	}
	return n, max(time.Duration(retryMS)*time.Millisecond, 0), nil
}

// ClearLoginFailures forgets the failures under key (after a good sign-in).
func (q *Queries) ClearLoginFailures(ctx context.Context, key string) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM login_failures WHERE key = $1`, noNUL(key)); err != nil {
		return fmt.Errorf("clear failed sign-ins: %w", err)
	}
	return nil
}

// PruneLoginFailures removes failures older than age.
func (q *Queries) PruneLoginFailures(ctx context.Context, age time.Duration) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM login_failures WHERE at < now() - make_interval(secs => $1)`, age.Seconds()); err != nil {
		return fmt.Errorf("prune failed sign-ins: %w", err)
	}
	return nil
}

func noNULs(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = noNUL(s)
	}
	return out
}
