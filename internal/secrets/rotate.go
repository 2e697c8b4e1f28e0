package secrets

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
)

// rotateBatch is how many secret ids Rotate fetches at a time; each secret is
// then re-encrypted in a transaction of its own.
const rotateBatch = 100

// Rotation is what Rotate did.
type Rotation struct {
	KeyID   string   // the primary key, which now encrypts every rotated secret
	Rotated int      // secrets re-encrypted
	Failed  []string // "owner/repo/app NAME: why", for secrets left as they were
	// Unused lists the other configured key ids that no secret uses any more:
	// they can be dropped from KEYSTONE_ENCRYPTION_KEYS.
	Unused []string
}

// Rotate re-encrypts every secret not under the primary key, one short
// transaction per secret with the row locked, so it is safe while Keystone
// runs and sets, unsets and reads secrets. A secret that cannot be decrypted
// is left as it was and listed in Failed (the error then says how many). One
// keys.rotated event audits the run, as actor.
func (s *Service) Rotate(ctx context.Context, actor string) (Rotation, error) {
	res := Rotation{KeyID: s.keys.Primary()}
	from := map[string]int{}
	var after int64
	for {
		ids, err := s.store.SecretIDsNotUnderKey(ctx, res.KeyID, after, rotateBatch)
		if err != nil {
			return res, err
		}
		for _, id := range ids {
			after = id
			oldKey, err := s.rotateOne(ctx, id)
			switch {
			case ctx.Err() != nil:
				return res, s.auditRotation(ctx, actor, res, from, ctx.Err())
			case err != nil:
				res.Failed = append(res.Failed, err.Error())
			case oldKey != "":
				res.Rotated++
				from[oldKey]++
			}
		}
		if len(ids) < rotateBatch {
			break
		}
	}
	counts, err := s.store.SecretsPerKey(ctx)
	if err != nil {
		return res, err
	}
	for _, id := range s.keys.IDs()[1:] {
		if counts[id] == 0 {
			res.Unused = append(res.Unused, id)
		}
	}
	var failed error
	if len(res.Failed) > 0 {
		failed = fmt.Errorf("%d secrets could not be re-encrypted; first: %s", len(res.Failed), res.Failed[0])
	}
	return res, s.auditRotation(ctx, actor, res, from, failed)
}

// rotateOne re-encrypts secret id under the primary key and returns the key
// it was under, or "" when there was nothing to do (unset or re-set meanwhile).
func (s *Service) rotateOne(ctx context.Context, id int64) (oldKey string, err error) {
	err = s.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		row, err := q.LockSecret(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if row.KeyID == s.keys.Primary() {
			return nil
		}
		b := bindingOf(row)
		plain, err := s.keys.open(b, row.KeyID, row.Sealed)
		if err != nil {
			return err
		}
		keyID, sealed, err := s.keys.seal(b, plain)
		if err != nil {
			return err
		}
		if err := q.ResealSecret(ctx, id, keyID, sealed); err != nil {
			return err
		}
		oldKey = row.KeyID
		return nil
	})
	return oldKey, err
}

// auditRotation records the run in a transaction of its own and returns
// cause, or the audit error joined to it.
func (s *Service) auditRotation(ctx context.Context, actor string, res Rotation, from map[string]int, cause error) error {
	fromKeys := make([]string, 0, len(from))
	for id := range from {
		fromKeys = append(fromKeys, id)
	}
	sort.Strings(fromKeys)
	details := map[string]any{"key_id": res.KeyID, "rotated": res.Rotated, "from": fromKeys, "failed": len(res.Failed)}
	if cause != nil {
		details["error"] = cause.Error()
	}
	// Recorded even when ctx was cancelled mid-run: what was rotated must show.
	auditCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := s.store.AppendAudit(auditCtx, store.AuditEvent{
		Actor: actor, Action: store.AuditKeysRotated, Target: "secrets", Details: details})
	return errors.Join(cause, err)
}
