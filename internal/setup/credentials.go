package setup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
)

// settingName binds the sealed blob to its purpose (see secrets.SealSetting).
const settingName = "github_app"

// seal encrypts creds under the primary key.
func seal(keys *secrets.Keyring, creds github.AppCredentials) (store.AppCredentialsRow, error) {
	plain, err := json.Marshal(creds)
	if err != nil {
		return store.AppCredentialsRow{}, fmt.Errorf("encode GitHub App credentials: %w", err)
	}
	keyID, sealed, err := keys.SealSetting(settingName, plain)
	if err != nil {
		return store.AppCredentialsRow{}, err
	}
	return store.AppCredentialsRow{KeyID: keyID, Sealed: sealed}, nil
}

// Load returns the App stored by setup; ok is false when none is.
func Load(ctx context.Context, st *store.Store, keys *secrets.Keyring) (creds github.AppCredentials, ok bool, err error) {
	row, err := st.AppCredentials(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return github.AppCredentials{}, false, nil
	}
	if err != nil {
		return github.AppCredentials{}, false, err
	}
	plain, err := keys.OpenSetting(settingName, row.KeyID, row.Sealed)
	if err != nil {
		return github.AppCredentials{}, false, fmt.Errorf("stored GitHub App credentials: %w", err)
	}
	if err := json.Unmarshal(plain, &creds); err != nil {
		return github.AppCredentials{}, false, fmt.Errorf("stored GitHub App credentials: not readable: %w", err)
	}
	return creds, true, nil
}

// Forget removes the App stored by setup and audits it as done by actor;
// store.ErrNotFound when none is stored. A running Keystone keeps using the
// App until it restarts.
func Forget(ctx context.Context, st *store.Store, actor string) error {
	return st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		row, err := q.AppCredentials(ctx)
		if err != nil {
			return err
		}
		if err := q.DeleteAppCredentials(ctx); err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: actor, Action: store.AuditGitHubAppForgot, Target: "github_app",
			Details: map[string]any{"stored_at": row.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), "stored_by": row.CreatedBy}})
	})
}

// Reseal re-encrypts the stored App under the primary key (keys rotate);
// it reports whether there was one to move.
func Reseal(ctx context.Context, st *store.Store, keys *secrets.Keyring) (bool, error) {
	moved := false
	err := st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		row, err := q.AppCredentials(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || row.KeyID == keys.Primary() {
			return err
		}
		plain, err := keys.OpenSetting(settingName, row.KeyID, row.Sealed)
		if err != nil {
			return fmt.Errorf("stored GitHub App credentials: %w", err)
		}
		keyID, sealed, err := keys.SealSetting(settingName, plain)
		if err != nil {
			return err
		}
		moved = true
		return q.ResealAppCredentials(ctx, keyID, sealed)
	})
	return moved, err
}
