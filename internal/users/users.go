// Package users keeps the people who may use the status page: names, roles
// (SPEC §9), GitHub logins and argon2id password hashes. The CLI adds and
// removes them; the status page signs them in. Every change is audited in
// the transaction that makes it.
package users

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
)

// ErrBadCredentials is a sign-in whose user does not exist, has no
// password, or gave the wrong one. Which of these it was is not told.
var ErrBadCredentials = errors.New("wrong user name or password")

var (
	namePattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,39}$`)
	loginPattern = regexp.MustCompile(`^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`)
)

// ValidateName checks a user name: 1 to 40 of a-z 0-9 _ . - starting with a
// letter or digit.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("user name %q is not valid: use 1 to 40 of a-z, 0-9, _ . - starting with a letter or digit", name)
	}
	return nil
}

// ValidateRole checks that role is viewer, deployer or admin.
func ValidateRole(role string) error {
	if rank(role) == 0 {
		return fmt.Errorf("role %q is not one of viewer, deployer, admin", role)
	}
	return nil
}

// ValidateGitHubLogin checks the shape GitHub gives logins.
func ValidateGitHubLogin(login string) error {
	if len(login) > 39 || !loginPattern.MatchString(login) {
		return fmt.Errorf("GitHub login %q is not valid: up to 39 letters, digits and single hyphens, not at either end", login)
	}
	return nil
}

// RoleAtLeast reports whether role grants everything min does.
func RoleAtLeast(role, min string) bool { return rank(role) > 0 && rank(role) >= rank(min) }

func rank(role string) int {
	switch role {
	case store.RoleViewer:
		return 1
	case store.RoleDeployer:
		return 2
	case store.RoleAdmin:
		return 3
	}
	return 0
}

// Directory adds, removes, lists and authenticates users.
type Directory struct {
	store  *store.Store
	params Params
	// decoy is a hash checked when no user matches, so that a miss costs
	// the same time as a wrong password. It is built, not computed: an
	// argon2id hash at start-up would cost its 19 MiB before anyone signs in.
	decoy string
	// hashing holds a slot per argon2id run: each takes Params.MemoryKiB
	// (19 MiB), and sign-in is open to anyone, so a flood of them must not
	// take the memory of the host.
	hashing chan struct{}
}

// MaxConcurrentHashes is how many password hashes a Directory computes at
// once; more wait their turn (or their request's end).
const MaxConcurrentHashes = 4

// NewDirectory returns a directory over st hashing new passwords with p.
func NewDirectory(st *store.Store, p Params) (*Directory, error) {
	return &Directory{store: st, params: p, decoy: decoyHash(p), hashing: make(chan struct{}, MaxConcurrentHashes)}, nil
}

// hash runs fn, an argon2id computation, in one of the hashing slots.
func (d *Directory) hash(ctx context.Context, fn func()) error {
	select {
	case d.hashing <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait to check a password: %w", ctx.Err())
	}
	defer func() { <-d.hashing }()
	fn()
	return nil
}

// checkPassword is CheckPassword in a hashing slot.
func (d *Directory) checkPassword(ctx context.Context, hash, password string) (ok bool, err error) {
	err = d.hash(ctx, func() { ok = CheckPassword(hash, password) })
	return ok, err
}

// NewUser is what Add needs. Password may be empty only with a GitHubLogin:
// such a user signs in with GitHub only.
type NewUser struct {
	Name        string
	Role        string
	GitHubLogin string
	Password    string
}

// Add validates, hashes and stores a user, and audits it as done by actor.
func (d *Directory) Add(ctx context.Context, actor string, nu NewUser) (store.User, error) {
	if err := ValidateName(nu.Name); err != nil {
		return store.User{}, err
	}
	if err := ValidateRole(nu.Role); err != nil {
		return store.User{}, err
	}
	if nu.GitHubLogin != "" {
		if err := ValidateGitHubLogin(nu.GitHubLogin); err != nil {
			return store.User{}, err
		}
	}
	u := store.User{Name: nu.Name, Role: nu.Role, GitHubLogin: nu.GitHubLogin}
	switch {
	case nu.Password != "":
		var hash string
		var err error
		if herr := d.hash(ctx, func() { hash, err = HashPassword(nu.Password, d.params) }); herr != nil {
			return store.User{}, herr
		}
		if err != nil {
			return store.User{}, err
		}
		u.PasswordHash = hash
	case nu.GitHubLogin == "":
		return store.User{}, errors.New("a password is needed (first line of standard input) unless --github maps the user to a GitHub login")
	}
	var created store.User
	err := d.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		var err error
		if created, err = q.InsertUser(ctx, u); err != nil {
			return err
		}
		details := map[string]any{"role": u.Role, "password": u.PasswordHash != ""}
		if u.GitHubLogin != "" {
			details["github_login"] = u.GitHubLogin
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: actor, Action: store.AuditUserAdded, Target: "user:" + u.Name, Details: details})
	})
	switch {
	case errors.Is(err, store.ErrGitHubLoginMapped):
		return store.User{}, fmt.Errorf("GitHub login %s is already mapped to another user", nu.GitHubLogin)
	case errors.Is(err, store.ErrUserExists):
		return store.User{}, fmt.Errorf("user %s already exists (remove it first to change it)", nu.Name)
	}
	return created, err
}

// Remove deletes the user called name, ending their sessions, and audits it.
func (d *Directory) Remove(ctx context.Context, actor, name string) error {
	err := d.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		u, err := q.DeleteUser(ctx, name)
		if err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: actor, Action: store.AuditUserRemoved, Target: "user:" + name,
			Details: map[string]any{"role": u.Role}})
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user is called %s", name)
	}
	return err
}

// List returns every user by name.
func (d *Directory) List(ctx context.Context) ([]store.User, error) { return d.store.Users(ctx) }

// Authenticate returns the user called name if password is theirs, and
// ErrBadCredentials if not. It takes about as long either way, and waits
// for a hashing slot (MaxConcurrentHashes) first.
func (d *Directory) Authenticate(ctx context.Context, name, password string) (store.User, error) {
	u, err := d.store.UserByName(ctx, name)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, store.ErrNotFound), err == nil && hash == "":
		hash = d.decoy // a miss costs what a wrong password costs
	case err != nil:
		return store.User{}, err
	}
	ok, err := d.checkPassword(ctx, hash, password)
	switch {
	case err != nil:
		return store.User{}, err
	case !ok || hash == d.decoy:
		return store.User{}, ErrBadCredentials
	}
	return u, nil
}

// ByGitHubIdentity returns the user a GitHub account signs in as, or
// store.ErrNotFound. The account's numeric id decides: a user already bound
// to an id matches only that id; a user mapped to login and not yet bound
// is bound to id now (their first GitHub sign-in). A login renamed away and
// registered again by someone else therefore gives nothing.
func (d *Directory) ByGitHubIdentity(ctx context.Context, id int64, login string) (store.User, error) {
	if id <= 0 {
		return store.User{}, fmt.Errorf("GitHub user %s has no id: %w", login, store.ErrNotFound)
	}
	u, err := d.store.UserByGitHubID(ctx, id)
	if !errors.Is(err, store.ErrNotFound) {
		return u, err
	}
	u, err = d.store.UserByGitHubLogin(ctx, login)
	if err != nil {
		return store.User{}, err
	}
	if u.GitHubID != 0 { // bound to another account: login was renamed away
		return store.User{}, fmt.Errorf("GitHub login %s belongs to another account than user %s's: %w", login, u.Name, store.ErrNotFound)
	}
	bound, err := d.store.BindGitHubID(ctx, u.ID, id)
	switch {
	case err != nil:
		return store.User{}, err
	case !bound: // bound meanwhile by a concurrent sign-in: check again
		return d.ByGitHubIdentity(ctx, id, login)
	}
	u.GitHubID = id
	return u, nil
}
