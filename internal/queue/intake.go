package queue

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/webhook"
)

// Intake stores webhook deliveries with the jobs they imply, in one
// transaction: it is the webhook handler's Recorder.
type Intake struct {
	store *store.Store
	jobs  *river.Client[pgx.Tx]
}

// NewIntake returns an Intake writing to st and enqueueing through jobs.
func NewIntake(st *store.Store, jobs *river.Client[pgx.Tx]) *Intake {
	return &Intake{store: st, jobs: jobs}
}

// Record implements webhook.Recorder.
func (in *Intake) Record(ctx context.Context, d webhook.Delivery) (int, error) {
	jobs := 0
	err := in.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		id, inserted, err := q.InsertDelivery(ctx, store.Delivery{
			GUID: d.GUID, Event: d.Event, Action: d.Action,
			InstallationID: d.InstallationID, Repository: d.Repository, Payload: d.Payload,
		})
		if err != nil {
			return err
		}
		if !inserted {
			return webhook.ErrDuplicate
		}
		if d.Installation != nil {
			if err := applyInstallation(ctx, q, d.Installation); err != nil {
				return err
			}
		}
		var args river.JobArgs
		switch d.Event {
		case "push":
			args = PushArgs{DeliveryID: id}
		case "issue_comment":
			args = CommentArgs{DeliveryID: id}
		default:
			return nil
		}
		if _, err := in.jobs.InsertTx(ctx, tx, args, nil); err != nil {
			return fmt.Errorf("enqueue %s job for delivery %s: %w", args.Kind(), d.GUID, err)
		}
		jobs = 1
		return nil
	})
	if err != nil {
		return 0, err
	}
	return jobs, nil
}

// applyInstallation keeps Keystone's record of installations and their
// repositories in step with what GitHub says.
func applyInstallation(ctx context.Context, q *store.Queries, c *webhook.InstallationChange) error {
	if c.Deleted {
		return q.DeleteInstallation(ctx, c.ID)
	}
	if err := q.UpsertInstallation(ctx, store.Installation{
		ID: c.ID, AccountLogin: c.Account, AccountType: c.AccountType, Suspended: c.Suspended,
	}); err != nil {
		return err
	}
	if err := q.AddRepositories(ctx, c.ID, storeRepos(c.Added)); err != nil {
		return err
	}
	return q.RemoveRepositories(ctx, c.ID, storeRepos(c.Removed))
}

func storeRepos(in []webhook.Repo) []store.Repository {
	out := make([]store.Repository, len(in))
	for i, r := range in {
		out[i] = store.Repository{ID: r.ID, FullName: r.FullName, Private: r.Private}
	}
	return out
}
