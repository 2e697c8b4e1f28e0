// Package secrets keeps apps' secret variables (SPEC §10, §11): encrypted at
// rest with AES-256-GCM under a key id stored beside each ciphertext, bound to
// the app and name they belong to, decrypted only to start the app's
// containers, never shown back, and moved to the newest key by Rotate while
// Keystone runs. Every change is audited without its value.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
)

// MaxValueBytes bounds a secret's value: it becomes an environment variable.
const MaxValueBytes = 64 << 10

// ReservedName is set by Keystone itself in every container.
const ReservedName = "PORT"

// InputError is a bad name or value given by a user; its message says what
// is wrong and is safe to show (it never contains a value).
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func invalid(format string, args ...any) error { return &InputError{msg: fmt.Sprintf(format, args...)} }

var (
	ownerPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)
	repoPattern  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	appPattern   = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
	namePattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// ValidName checks a secret's name: an environment variable name of at most
// 128 characters, not PORT.
func ValidName(name string) error {
	switch {
	case !namePattern.MatchString(name):
		return invalid("secret name %q is not valid: use letters, digits and _, not starting with a digit, at most 128 characters", name)
	case name == ReservedName:
		return invalid("secret name PORT is reserved: Keystone sets PORT in every container")
	}
	return nil
}

// ValidValue checks a secret's value without ever quoting it.
func ValidValue(value string) error {
	switch {
	case value == "":
		return invalid("secret value is empty")
	case len(value) > MaxValueBytes:
		return invalid("secret value is %d bytes, more than the %d allowed", len(value), MaxValueBytes)
	case strings.IndexByte(value, 0) >= 0:
		return invalid("secret value contains a NUL byte, which an environment variable cannot hold")
	case !utf8.ValidString(value):
		return invalid("secret value is not valid UTF-8")
	}
	return nil
}

// bindApp checks and normalises the app secrets belong to.
func bindApp(owner, repo, app string) (binding, error) {
	switch {
	case !ownerPattern.MatchString(owner):
		return binding{}, invalid("repository owner %q is not a GitHub user or organisation name", owner)
	case !repoPattern.MatchString(repo) || repo == "." || repo == "..":
		return binding{}, invalid("repository name %q is not a GitHub repository name", repo)
	case !appPattern.MatchString(app):
		return binding{}, invalid("app name %q is not valid: 1 to 40 of a-z, 0-9 and -", app)
	}
	return binding{owner: strings.ToLower(owner), repo: strings.ToLower(repo), app: app}, nil
}

// bind checks and normalises the app and name of one secret.
func bind(owner, repo, app, name string) (binding, error) {
	b, err := bindApp(owner, repo, app)
	if err != nil {
		return binding{}, err
	}
	if err := ValidName(name); err != nil {
		return binding{}, err
	}
	b.name = name
	return b, nil
}

// Service stores, lists and decrypts secrets.
type Service struct {
	store *store.Store
	keys  *Keyring
}

// New returns the service over st, encrypting with keys.
func New(st *store.Store, keys *Keyring) *Service { return &Service{store: st, keys: keys} }

// Set stores value as the secret key of owner/repo/app (which need not be
// deployed yet), replacing any previous value, and audits it as actor.
func (s *Service) Set(ctx context.Context, actor, owner, repo, app, key, value string) error {
	return s.set(ctx, actor, owner, repo, app, key, value, false)
}

// SetPreview is Set for the app's pull-request previews (SPEC §14): the
// value is given to its previews only, never to production.
func (s *Service) SetPreview(ctx context.Context, actor, owner, repo, app, key, value string) error {
	return s.set(ctx, actor, owner, repo, app, key, value, true)
}

func (s *Service) set(ctx context.Context, actor, owner, repo, app, key, value string, preview bool) error {
	b, err := bind(owner, repo, app, key)
	if err != nil {
		return err
	}
	b.preview = preview
	if err := ValidValue(value); err != nil {
		return err
	}
	keyID, sealed, err := s.keys.seal(b, []byte(value))
	if err != nil {
		return err
	}
	row := store.Secret{Owner: b.owner, Repo: b.repo, App: b.app, Name: b.name, KeyID: keyID, Sealed: sealed,
		UpdatedBy: actor, Preview: preview}
	return s.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		created, err := q.PutSecret(ctx, row)
		if err != nil {
			return err
		}
		details := map[string]any{"name": b.name, "created": created, "key_id": keyID}
		if preview {
			details["preview"] = true
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: actor, Action: store.AuditSecretSet, Target: row.Target(),
			Details: details})
	})
}

// Unset removes the secret key of owner/repo/app and audits it as actor. A
// secret that is not set is an error wrapping store.ErrNotFound.
func (s *Service) Unset(ctx context.Context, actor, owner, repo, app, key string) error {
	return s.unset(ctx, actor, owner, repo, app, key, false)
}

// UnsetPreview is Unset for a preview secret.
func (s *Service) UnsetPreview(ctx context.Context, actor, owner, repo, app, key string) error {
	return s.unset(ctx, actor, owner, repo, app, key, true)
}

func (s *Service) unset(ctx context.Context, actor, owner, repo, app, key string, preview bool) error {
	b, err := bind(owner, repo, app, key)
	if err != nil {
		return err
	}
	b.preview = preview
	row := store.Secret{Owner: b.owner, Repo: b.repo, App: b.app, Preview: preview}
	return s.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if err := q.DeleteSecret(ctx, b.owner, b.repo, b.app, b.name, preview); err != nil {
			return err
		}
		details := map[string]any{"name": b.name}
		if preview {
			details["preview"] = true
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: actor, Action: store.AuditSecretUnset,
			Target: row.Target(), Details: details})
	})
}

// List returns the names, never the values, of owner/repo/app's secrets, sorted.
func (s *Service) List(ctx context.Context, owner, repo, app string) ([]string, error) {
	return s.list(ctx, owner, repo, app, false)
}

// ListPreview returns the names of owner/repo/app's preview secrets, sorted.
func (s *Service) ListPreview(ctx context.Context, owner, repo, app string) ([]string, error) {
	return s.list(ctx, owner, repo, app, true)
}

func (s *Service) list(ctx context.Context, owner, repo, app string, preview bool) ([]string, error) {
	b, err := bindApp(owner, repo, app)
	if err != nil {
		return nil, err
	}
	return s.store.SecretNames(ctx, b.owner, b.repo, b.app, preview)
}

// AppSecrets implements deploy.Secrets: the decrypted secrets of the app
// with id appID, by name. A preview gets its parent app's preview secrets
// only, found through the parent's stored id (never through the preview's
// name), and a production app never a preview secret. Errors name the
// secret and key id, never a value.
func (s *Service) AppSecrets(ctx context.Context, appID int64) (map[string]string, error) {
	app, err := s.store.App(ctx, appID)
	if err != nil {
		return nil, fmt.Errorf("secrets of app %d: %w", appID, err)
	}
	preview := app.Preview()
	if preview {
		if app, err = s.store.App(ctx, app.ParentAppID); err != nil {
			return nil, fmt.Errorf("secrets of preview %d: %w", appID, err)
		}
	}
	rows, err := s.store.AppSecretRows(ctx, strings.ToLower(app.Owner), strings.ToLower(app.Repo), app.Name, preview)
	if err != nil {
		return nil, err
	}
	values := make(map[string]string, len(rows))
	for _, row := range rows {
		plain, err := s.keys.open(bindingOf(row), row.KeyID, row.Sealed)
		if err != nil {
			return nil, err
		}
		values[row.Name] = string(plain)
	}
	return values, nil
}

func bindingOf(row store.Secret) binding {
	return binding{owner: row.Owner, repo: row.Repo, app: row.App, name: row.Name, preview: row.Preview}
}

// UnknownKeys counts the secrets encrypted under key ids that are not in the
// keyring: they cannot be decrypted, so their apps cannot be deployed.
func (s *Service) UnknownKeys(ctx context.Context) (map[string]int, error) {
	counts, err := s.store.SecretsPerKey(ctx)
	if err != nil {
		return nil, err
	}
	unknown := map[string]int{}
	for id, n := range counts {
		if !s.keys.Has(id) {
			unknown[id] = n
		}
	}
	return unknown, nil
}

// IsInput reports whether err is a user's mistake whose message can be shown
// as it is.
func IsInput(err error) bool {
	var in *InputError
	return errors.As(err, &in)
}
