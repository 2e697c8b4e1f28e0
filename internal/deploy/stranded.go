package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// JobLister lists jobs through River's API; *river.Client implements it.
// Reconciliation asks it which unfinished deployments still have a job,
// instead of reading River's tables, whose layout is River's to change.
type JobLister interface {
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
}

// jobListPage is how many jobs one JobList call returns.
const jobListPage = 500

// strandedDeployments returns the unfinished deployments whose newest deploy
// job is gone, finished or out of attempts: no job will finish them. The
// deployment a job works on comes from its arguments (queue.DeployArgs),
// which Keystone writes.
func (e *Engine) strandedDeployments(ctx context.Context) ([]store.StrandedDeployment, error) {
	unfinished, err := e.store.AllUnfinishedDeployments(ctx)
	if err != nil || len(unfinished) == 0 {
		return nil, err
	}
	if e.jobs == nil {
		return nil, errors.New("find stranded deployments: the engine has no job lister")
	}
	// Live jobs first: usually every unfinished deployment has one, and
	// they are few.
	live, err := e.newestDeployJobs(ctx, rivertype.JobStateAvailable, rivertype.JobStatePending,
		rivertype.JobStateRetryable, rivertype.JobStateRunning, rivertype.JobStateScheduled)
	if err != nil {
		return nil, err
	}
	// A running job rescued from a dead process is not live: its replacement,
	// when it had attempts left, is newer and listed too.
	rescued, err := e.rescuedRunning(ctx, live)
	if err != nil {
		return nil, err
	}
	maps.DeleteFunc(live, func(_ int64, j *rivertype.JobRow) bool { return rescued[j.ID] })
	var missing bool
	for _, d := range unfinished {
		missing = missing || live[d.ID] == nil
	}
	if !missing {
		return nil, nil
	}
	all, err := e.newestDeployJobs(ctx) // every state: the last attempt's error
	if err != nil {
		return nil, err
	}
	var out []store.StrandedDeployment
	for _, d := range unfinished {
		if live[d.ID] != nil {
			continue
		}
		s := store.StrandedDeployment{Deployment: d}
		if j := all[d.ID]; j != nil {
			if !finalState(j.State) && !rescued[j.ID] {
				continue // a job became live since the first list
			}
			s.Attempts, _ = queue.Attempts(j)
			if rescued[j.ID] {
				s.LastError = "the Keystone process running this job died during its last attempt"
			} else if len(j.Errors) > 0 {
				s.LastError = j.Errors[len(j.Errors)-1].Error
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// rescuedRunning returns which running jobs of jobs were rescued from a
// dead process.
func (e *Engine) rescuedRunning(ctx context.Context, jobs map[int64]*rivertype.JobRow) (map[int64]bool, error) {
	var ids []int64
	for _, j := range jobs {
		if j.State == rivertype.JobStateRunning {
			ids = append(ids, j.ID)
		}
	}
	return e.store.RescuedJobs(ctx, ids)
}

// newestDeployJobs lists the deploy jobs in states (all states when none)
// and returns the newest per deployment.
func (e *Engine) newestDeployJobs(ctx context.Context, states ...rivertype.JobState) (map[int64]*rivertype.JobRow, error) {
	params := river.NewJobListParams().Kinds(queue.DeployArgs{}.Kind()).
		OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(jobListPage)
	if len(states) > 0 {
		params = params.States(states...)
	} else {
		params = params.States(allJobStates...)
	}
	newest := map[int64]*rivertype.JobRow{}
	for {
		res, err := e.jobs.JobList(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("list deploy jobs: %w", err)
		}
		for _, j := range res.Jobs {
			var args queue.DeployArgs
			if err := json.Unmarshal(j.EncodedArgs, &args); err != nil {
				return nil, fmt.Errorf("list deploy jobs: arguments of job %d: %w", j.ID, err)
			}
			if cur := newest[args.DeploymentID]; cur == nil || j.ID > cur.ID {
				newest[args.DeploymentID] = j
			}
		}
		if len(res.Jobs) < jobListPage || res.LastCursor == nil {
			return newest, nil
		}
		params = params.After(res.LastCursor)
	}
}

var allJobStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStateCancelled, rivertype.JobStateCompleted,
	rivertype.JobStateDiscarded, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

func finalState(s rivertype.JobState) bool {
	return s == rivertype.JobStateCompleted || s == rivertype.JobStateCancelled || s == rivertype.JobStateDiscarded
}
