package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/store"
)

// OrphanStore is what the orphan rescuer needs from the store.
type OrphanStore interface {
	HoldProcessLock(ctx context.Context, id string, report func(regained bool, err error)) (release func(), err error)
	ProcessAlive(ctx context.Context, owner string) (bool, error)
	RescuedJobs(ctx context.Context, ids []int64) (map[int64]bool, error)
	PruneJobRescues(ctx context.Context, running []int64, olderThan time.Duration) (int64, error)
	InTx(ctx context.Context, fn func(tx pgx.Tx, q *store.Queries) error) error
}

// RescueJobs is what the orphan rescuer needs of River: its API, never its
// tables, so that an upgrade of River cannot silently break rescue.
// *river.Client[pgx.Tx] implements it.
type RescueJobs interface {
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobCancelTx(ctx context.Context, tx pgx.Tx, id int64) (*rivertype.JobRow, error)
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// Orphan rescue timing. River's own rescuer waits RescueStuckJobsAfter (over
// half an hour) because it cannot tell a slow job from a dead one; a process
// lock can, so a job whose process died is retried within a minute.
const (
	OrphanCheckInterval = 30 * time.Second
	// orphanGrace leaves a just-fetched job alone while its process starts it.
	orphanGrace = 5 * time.Second
	// rescueKeep is how long a rescue is remembered at least, even once its
	// job is no longer listed running: far longer than a pass, so a job that
	// started running after a pass listed the running ones is never
	// forgotten by that pass.
	rescueKeep = 10 * time.Minute
)

// NewProcessID returns a job-client id unique to this process, to hold a
// process lock under and to pass as Config.ID.
func NewProcessID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	if len(host) > 40 {
		host = host[:40]
	}
	return fmt.Sprintf("keystone_%s_%d_%s", host, os.Getpid(), hex.EncodeToString(b))
}

// OrphanRescuer marks this process alive and retries the jobs of processes
// that died while running them. River cannot re-queue a running job through
// its API, so a dead process's job is cancelled (River's own rescuer
// finalizes it after RescueStuckJobsAfter; nobody works it meanwhile) and a
// replacement with the same arguments and the attempts it had left is
// inserted in the same transaction, with the rescue recorded
// (store.ClaimJobRescue) so that exactly one replacement is made.
type OrphanRescuer struct {
	Store     OrphanStore
	Jobs      RescueJobs
	ProcessID string
	Logger    *slog.Logger
	Interval  time.Duration // OrphanCheckInterval when zero
}

// HoldLiveness takes this process's lock; call it before the job client starts
// and release when it has stopped. A lock lost with its connection is taken
// again at once (logged): until then other processes may rescue this one's
// running jobs, so the loss is a warning.
func (r *OrphanRescuer) HoldLiveness(ctx context.Context) (release func(), err error) {
	return r.Store.HoldProcessLock(ctx, r.ProcessID, func(regained bool, err error) {
		if regained {
			r.Logger.Info("process liveness lock taken again", slog.String("process_id", r.ProcessID))
			return
		}
		r.Logger.Warn("process liveness lock lost", slog.String("process_id", r.ProcessID), slog.String("error", err.Error()))
	})
}

// Run rescues orphans now and then every Interval until ctx ends.
func (r *OrphanRescuer) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = OrphanCheckInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.RescueOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RescuedJob is a job of a dead process, cancelled and replaced.
type RescuedJob struct {
	ID          int64
	Kind        string
	Owner       string // the dead process's job client id
	Replacement int64  // 0 when the job had no attempts left
}

// RescueOnce runs one pass and logs what it rescued.
func (r *OrphanRescuer) RescueOnce(ctx context.Context) {
	jobs, err := r.Rescue(ctx)
	if err != nil && ctx.Err() == nil {
		r.Logger.Warn("rescue orphaned jobs", slog.String("error", err.Error()))
	}
	for _, j := range jobs {
		r.Logger.Info("job of a dead process rescued", slog.Int64("job_id", j.ID), slog.String("kind", j.Kind),
			slog.String("process_id", j.Owner), slog.Int64("replacement_job_id", j.Replacement),
			slog.Bool("out_of_attempts", j.Replacement == 0))
	}
}

// Rescue cancels and replaces the jobs running for longer than orphanGrace
// whose process no longer holds its process lock. This process's own jobs
// are never touched: it is alive, whatever its lock says (a lock lost with
// its connection is being taken again).
func (r *OrphanRescuer) Rescue(ctx context.Context) ([]RescuedJob, error) {
	orphans, running, err := r.orphans(ctx)
	if err != nil {
		return nil, err
	}
	// Rescues of jobs River has finalized since are forgotten: job_rescues
	// holds only what may still be asked about.
	if _, err := r.Store.PruneJobRescues(ctx, running, rescueKeep); err != nil {
		return nil, err
	}
	alive := map[string]bool{}
	var rescued []RescuedJob
	for _, j := range orphans {
		owner := j.AttemptedBy[len(j.AttemptedBy)-1]
		live, seen := alive[owner]
		if !seen {
			if live, err = r.Store.ProcessAlive(ctx, owner); err != nil {
				return rescued, err
			}
			alive[owner] = live
		}
		if live {
			continue
		}
		res, ok, err := r.replace(ctx, j, owner)
		if err != nil {
			return rescued, err
		}
		if ok {
			rescued = append(rescued, res)
		}
	}
	return rescued, nil
}

// orphans lists the running jobs old enough to be looked at, of other
// processes, not rescued already; and the ids of all running jobs.
func (r *OrphanRescuer) orphans(ctx context.Context) ([]*rivertype.JobRow, []int64, error) {
	params := river.NewJobListParams().States(rivertype.JobStateRunning).
		OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(rescueListPage)
	var out []*rivertype.JobRow
	var ids, running []int64
	for {
		res, err := r.Jobs.JobList(ctx, params)
		if err != nil {
			return nil, nil, fmt.Errorf("list running jobs: %w", err)
		}
		for _, j := range res.Jobs {
			running = append(running, j.ID)
			if len(j.AttemptedBy) == 0 || j.AttemptedBy[len(j.AttemptedBy)-1] == r.ProcessID ||
				j.AttemptedAt == nil || time.Since(*j.AttemptedAt) < orphanGrace {
				continue
			}
			out = append(out, j)
			ids = append(ids, j.ID)
		}
		if len(res.Jobs) < rescueListPage || res.LastCursor == nil {
			break
		}
		params = params.After(res.LastCursor)
	}
	done, err := r.Store.RescuedJobs(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	return slices.DeleteFunc(out, func(j *rivertype.JobRow) bool { return done[j.ID] }), running, nil
}

// replace cancels orphan and inserts its replacement in one transaction; ok
// is false when another rescuer got there first.
func (r *OrphanRescuer) replace(ctx context.Context, orphan *rivertype.JobRow, owner string) (res RescuedJob, ok bool, err error) {
	res = RescuedJob{ID: orphan.ID, Kind: orphan.Kind, Owner: owner}
	err = r.Store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		claimed, err := q.ClaimJobRescue(ctx, orphan.ID, owner)
		if err != nil || !claimed {
			return err
		}
		if _, err := r.Jobs.JobCancelTx(ctx, tx, orphan.ID); err != nil {
			return fmt.Errorf("cancel job %d of dead process %s: %w", orphan.ID, owner, err)
		}
		ok = true
		left := orphan.MaxAttempts - orphan.Attempt
		if left <= 0 {
			return nil // its last attempt died with its process
		}
		opts, err := replacementOpts(orphan, left)
		if err != nil {
			return err
		}
		ins, err := r.Jobs.InsertTx(ctx, tx, rawArgs{kind: orphan.Kind, args: orphan.EncodedArgs}, opts)
		if err != nil {
			return fmt.Errorf("replace job %d of dead process %s: %w", orphan.ID, owner, err)
		}
		res.Replacement = ins.Job.ID
		return q.SetJobReplacement(ctx, orphan.ID, ins.Job.ID)
	})
	return res, ok, err
}

// rescueListPage is how many running jobs one JobList call returns.
const rescueListPage = 500

// Metadata keys of a replacement job.
const (
	// MetaRescuedFrom is the id of the job a replacement took the place of.
	MetaRescuedFrom = "keystone_rescued_from"
	// MetaAttemptsBefore is how many attempts the jobs it replaces made.
	MetaAttemptsBefore = "keystone_attempts_before"
)

// replacementOpts keeps the orphan's queue, priority and metadata, and gives
// the replacement the attempts the orphan had left.
func replacementOpts(orphan *rivertype.JobRow, left int) (*river.InsertOpts, error) {
	meta := map[string]any{}
	if len(orphan.Metadata) > 0 {
		if err := json.Unmarshal(orphan.Metadata, &meta); err != nil {
			return nil, fmt.Errorf("metadata of job %d: %w", orphan.ID, err)
		}
	}
	maps.DeleteFunc(meta, func(k string, _ any) bool { return !strings.HasPrefix(k, "keystone_") })
	before, _ := meta[MetaAttemptsBefore].(float64)
	meta[MetaRescuedFrom] = orphan.ID
	meta[MetaAttemptsBefore] = int(before) + orphan.Attempt
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("metadata of job %d: %w", orphan.ID, err)
	}
	return &river.InsertOpts{Queue: orphan.Queue, Priority: orphan.Priority, MaxAttempts: left,
		Metadata: b, Tags: orphan.Tags}, nil
}

// Attempts returns job's attempt and maximum counted from its first job:
// a replacement's own counts plus the attempts of the jobs it replaced.
func Attempts(job *rivertype.JobRow) (attempt, maxAttempts int) {
	var meta struct {
		Before int `json:"keystone_attempts_before"`
	}
	_ = json.Unmarshal(job.Metadata, &meta) // River's metadata is a JSON object; none is no offset
	return meta.Before + job.Attempt, meta.Before + job.MaxAttempts
}

// rawArgs inserts a job of kind with arguments already encoded, as the
// orphan's were.
type rawArgs struct {
	kind string
	args json.RawMessage
}

func (a rawArgs) Kind() string                 { return a.kind }
func (a rawArgs) MarshalJSON() ([]byte, error) { return a.args, nil }
