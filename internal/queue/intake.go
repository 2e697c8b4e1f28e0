package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/webhook"
)

// Group commit. Deliveries that arrive while a batch commits are stored
// together in the next: one transaction and one WAL flush for many, each still
// acknowledged only after that commit. Under load this multiplies intake
// throughput; alone, a delivery waits for nobody.
const (
	intakeCommitters = 4  // batches committing at once
	maxIntakeBatch   = 64 // deliveries in one transaction at most
	// intakeCommitTimeout bounds one batch: GitHub itself gives up after 10 s.
	intakeCommitTimeout = 10 * time.Second
)

// ErrIntakeClosed is returned by Record after Close.
var ErrIntakeClosed = errors.New("intake closed: Keystone is stopping")

// Intake stores webhook deliveries with the jobs they imply, in one
// transaction: it is the webhook handler's Recorder. Close it when done.
type Intake struct {
	store    *store.Store
	jobs     *river.Client[pgx.Tx]
	requests chan *intakeRequest
	closing  chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

type intakeRequest struct {
	d    webhook.Delivery
	done chan intakeResult // buffered: the committer never blocks on it
}

type intakeResult struct {
	jobs int
	err  error
}

// NewIntake returns an Intake writing to st and enqueueing through jobs, with
// its committers running.
func NewIntake(st *store.Store, jobs *river.Client[pgx.Tx]) *Intake {
	in := &Intake{store: st, jobs: jobs, requests: make(chan *intakeRequest), closing: make(chan struct{})}
	for range intakeCommitters {
		in.wg.Go(in.commitLoop)
	}
	return in
}

// Close stops the committers after the batches they hold are committed.
func (in *Intake) Close() {
	in.once.Do(func() { close(in.closing) })
	in.wg.Wait()
}

// Record implements webhook.Recorder: it returns once d and its work are
// committed (or known not to be).
func (in *Intake) Record(ctx context.Context, d webhook.Delivery) (int, error) {
	req := &intakeRequest{d: d, done: make(chan intakeResult, 1)}
	select {
	case in.requests <- req:
	case <-in.closing:
		return 0, ErrIntakeClosed
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// Wait for the outcome even if the sender gave up: the batch may commit,
	// and only a committed delivery may be acknowledged.
	r := <-req.done
	return r.jobs, r.err
}

func (in *Intake) commitLoop() {
	for {
		var first *intakeRequest
		select {
		case first = <-in.requests:
		case <-in.closing:
			return
		}
		batch := []*intakeRequest{first}
	drain:
		for len(batch) < maxIntakeBatch {
			select {
			case r := <-in.requests:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		in.commit(batch)
	}
}

// commit stores a batch in one transaction. If that fails, each delivery is
// tried alone so that one bad delivery never fails the others.
func (in *Intake) commit(batch []*intakeRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), intakeCommitTimeout)
	defer cancel()
	results, err := in.commitTx(ctx, batch)
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			in.commit([]*intakeRequest{r})
		}
		return
	}
	for i, r := range batch {
		if err != nil {
			r.done <- intakeResult{err: err}
			continue
		}
		r.done <- results[i]
	}
}

func (in *Intake) commitTx(ctx context.Context, batch []*intakeRequest) ([]intakeResult, error) {
	results := make([]intakeResult, len(batch))
	// A GUID twice in one batch: the first is the delivery, the rest repeats.
	first := make(map[string]int, len(batch))
	var unique []store.Delivery
	for i, r := range batch {
		if _, seen := first[r.d.GUID]; seen {
			results[i] = intakeResult{err: webhook.ErrDuplicate}
			continue
		}
		first[r.d.GUID] = i
		unique = append(unique, store.Delivery{
			GUID: r.d.GUID, Event: r.d.Event, Action: r.d.Action,
			InstallationID: r.d.InstallationID, Repository: r.d.Repository, Payload: r.d.Payload,
		})
	}
	err := in.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		ids, err := q.InsertDeliveries(ctx, unique)
		if err != nil {
			return err
		}
		var jobs []river.InsertManyParams
		for _, u := range unique {
			i := first[u.GUID]
			id, inserted := ids[u.GUID]
			if !inserted {
				results[i] = intakeResult{err: webhook.ErrDuplicate}
				continue
			}
			args, err := deliveryWork(ctx, q, id, batch[i].d)
			if err != nil {
				return err
			}
			if args != nil {
				jobs = append(jobs, river.InsertManyParams{Args: args})
				results[i] = intakeResult{jobs: 1}
			}
		}
		if len(jobs) == 0 {
			return nil
		}
		if _, err := in.jobs.InsertManyTx(ctx, tx, jobs); err != nil {
			return fmt.Errorf("enqueue jobs of %d deliveries: %w", len(jobs), err)
		}
		return nil
	})
	return results, err
}

// deliveryWork applies what stored delivery d (row id) says about
// installations and returns the job it implies, nil for none.
func deliveryWork(ctx context.Context, q *store.Queries, id int64, d webhook.Delivery) (river.JobArgs, error) {
	if d.Installation != nil {
		if err := applyInstallation(ctx, q, d.Installation); err != nil {
			return nil, err
		}
	}
	switch d.Event {
	case "push":
		return PushArgs{DeliveryID: id}, nil
	case "issue_comment":
		return CommentArgs{DeliveryID: id}, nil
	case "pull_request":
		return PullRequestArgs{DeliveryID: id}, nil
	}
	return nil, nil
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
