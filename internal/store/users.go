package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Roles of status page users (SPEC §9), weakest first.
const (
	RoleViewer   = "viewer"   // reads every page but the audit log
	RoleDeployer = "deployer" // also redeploys and rolls back from the page
	RoleAdmin    = "admin"    // also secrets, users and the audit log
)

// Refusals of InsertUser.
var (
	ErrUserExists        = errors.New("user name already taken")
	ErrGitHubLoginMapped = errors.New("GitHub login already mapped to another user")
)

// User is a person who may sign in to the status page.
type User struct {
	ID           int64
	Name         string
	Role         string
	PasswordHash string // "" for a GitHub-only user
	GitHubLogin  string // "" when not mapped to a GitHub account
	GitHubID     int64  // GitHub's user id, from the first GitHub sign-in; 0 before
	CreatedAt    time.Time
}

const userColumns = `id, name, role, COALESCE(password_hash, ''), COALESCE(github_login, ''), COALESCE(github_id, 0), created_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Name, &u.Role, &u.PasswordHash, &u.GitHubLogin, &u.GitHubID, &u.CreatedAt)
	return u, err
}

// InsertUser creates u and returns it with its id. A taken name is
// ErrUserExists; a GitHub login mapped to another user ErrGitHubLoginMapped.
func (q *Queries) InsertUser(ctx context.Context, u User) (User, error) {
	row := q.db.QueryRow(ctx, `
		INSERT INTO users (name, role, password_hash, github_login)
		VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''))
		RETURNING `+userColumns, u.Name, u.Role, u.PasswordHash, u.GitHubLogin)
	created, err := scanUser(row)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		if pgErr.ConstraintName == "users_github_login" {
			return User{}, fmt.Errorf("add user %s: %s: %w", u.Name, u.GitHubLogin, ErrGitHubLoginMapped)
		}
		return User{}, fmt.Errorf("add user %s: %w", u.Name, ErrUserExists)
	}
	if err != nil {
		return User{}, fmt.Errorf("add user %s: %w", u.Name, err)
	}
	return created, nil
}

// UserByName returns the user called name.
func (q *Queries) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE name = $1`, name))
	if err != nil {
		return User{}, notFound(err, "user "+name)
	}
	return u, nil
}

// UserByGitHubLogin returns the user mapped to a GitHub login, compared
// without regard to case as GitHub does.
func (q *Queries) UserByGitHubLogin(ctx context.Context, login string) (User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users
		WHERE lower(github_login) = lower($1)`, login))
	if err != nil {
		return User{}, notFound(err, "user with GitHub login "+login)
	}
	return u, nil
}

// UserByGitHubID returns the user whose GitHub account has id.
func (q *Queries) UserByGitHubID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE github_id = $1`, id))
	if err != nil {
		return User{}, notFound(err, fmt.Sprintf("user with GitHub id %d", id))
	}
	return u, nil
}

// BindGitHubID records GitHub's user id for user userID, unless one is
// recorded already; it reports whether it recorded it.
func (q *Queries) BindGitHubID(ctx context.Context, userID, githubID int64) (bool, error) {
	tag, err := q.db.Exec(ctx, `UPDATE users SET github_id = $2 WHERE id = $1 AND github_id IS NULL`, userID, githubID)
	if err != nil {
		return false, fmt.Errorf("record the GitHub id of user %d: %w", userID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Users returns every user, by name.
func (q *Queries) Users(ctx context.Context) ([]User, error) {
	rows, err := q.db.Query(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteUser removes the user called name and, with it, their sessions.
func (q *Queries) DeleteUser(ctx context.Context, name string) (User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, `DELETE FROM users WHERE name = $1 RETURNING `+userColumns, name))
	if err != nil {
		return User{}, notFound(err, "user "+name)
	}
	return u, nil
}
