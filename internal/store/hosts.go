package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Host names of apps in domain mode (SPEC §13). App.Hosts lists an app's
// names, its domain names first in .keystone.yml order, then its default.

// HostTakenError says a host name belongs to another app.
type HostTakenError struct {
	Host  string
	AppID int64 // the app holding it
}

func (e *HostTakenError) Error() string {
	return fmt.Sprintf("host %s belongs to app %d", e.Host, e.AppID)
}

// hostsColumn is the app's host names, as the last column of appColumns.
const hostsColumn = `COALESCE((SELECT array_agg(h.host ORDER BY h.kind = 'default', h.position, h.host)
	FROM app_hosts h WHERE h.app_id = apps.id), '{}')`

// maxHostAttempts bounds the candidates AllocateDefaultHost tries.
const maxHostAttempts = 100

// AllocateDefaultHost returns the app's default host name, giving it one
// first if it has none: candidate(0), or when another app holds that,
// candidate(1), candidate(2)... Once given, the name is kept until the app
// is removed. Concurrent callers never get the same name: the primary key
// decides, and the loser tries its next candidate.
func (s *Store) AllocateDefaultHost(ctx context.Context, appID int64, candidate func(attempt int) string) (string, error) {
	var host string
	err := s.InTx(ctx, func(_ pgx.Tx, q *Queries) error {
		if _, err := q.db.Exec(ctx, `SELECT 1 FROM apps WHERE id = $1 FOR UPDATE`, appID); err != nil {
			return err
		}
		err := q.db.QueryRow(ctx, `SELECT host FROM app_hosts WHERE app_id = $1 AND kind = 'default'`, appID).Scan(&host)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		for attempt := 0; attempt < maxHostAttempts; attempt++ {
			c := candidate(attempt)
			err := q.db.QueryRow(ctx, `INSERT INTO app_hosts (host, app_id, kind) VALUES ($1, $2, 'default')
				ON CONFLICT (host) DO NOTHING RETURNING host`, noNUL(c), appID).Scan(&host)
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		return fmt.Errorf("no free name after %d candidates", maxHostAttempts)
	})
	if err != nil {
		return "", fmt.Errorf("allocate the default host name of app %d: %w", appID, err)
	}
	return host, nil
}

// HostOwner returns the id of the app holding host, and whether one does.
func (q *Queries) HostOwner(ctx context.Context, host string) (int64, bool, error) {
	var id int64
	err := q.db.QueryRow(ctx, `SELECT app_id FROM app_hosts WHERE host = $1`, noNUL(host)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("owner of host %s: %w", host, err)
	}
	return id, true, nil
}

// ClaimDomains makes hosts, in order, the app's domain names, releasing its
// domain names not among them. All or nothing: when another app holds one
// of hosts, nothing changes and the error is a *HostTakenError naming it.
// The app's own default name may be listed; it stays its default.
func (s *Store) ClaimDomains(ctx context.Context, appID int64, hosts []string) error {
	if hosts == nil {
		hosts = []string{} // not NULL: nothing is kept
	}
	err := s.InTx(ctx, func(_ pgx.Tx, q *Queries) error {
		if _, err := q.db.Exec(ctx, `SELECT 1 FROM apps WHERE id = $1 FOR UPDATE`, appID); err != nil {
			return err
		}
		if _, err := q.db.Exec(ctx, `DELETE FROM app_hosts WHERE app_id = $1 AND kind = 'domain' AND NOT host = ANY($2)`,
			appID, hosts); err != nil {
			return err
		}
		for i, h := range hosts {
			var owner int64
			err := q.db.QueryRow(ctx, `INSERT INTO app_hosts (host, app_id, kind, position) VALUES ($1, $2, 'domain', $3)
				ON CONFLICT (host) DO UPDATE SET position = EXCLUDED.position
				WHERE app_hosts.app_id = EXCLUDED.app_id AND app_hosts.kind = 'domain'
				RETURNING app_id`, noNUL(h), appID, i).Scan(&owner)
			if errors.Is(err, pgx.ErrNoRows) {
				// Held already, and not as this app's domain name.
				if owner, _, err = q.HostOwner(ctx, h); err != nil {
					return err
				}
				if owner != appID {
					return &HostTakenError{Host: h, AppID: owner}
				}
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	var taken *HostTakenError
	if errors.As(err, &taken) {
		return taken
	}
	if err != nil {
		return fmt.Errorf("claim the host names of app %d: %w", appID, err)
	}
	return nil
}
