// Package queue runs Keystone's durable jobs on River over PostgreSQL: the job
// kinds and their limits, the per-app mutual exclusion, and the intake that
// turns a webhook delivery into jobs in the same transaction that stores it.
package queue

import (
	"time"

	"github.com/riverqueue/river"
)

// Queues. Deploys get their own so that a burst of webhooks never waits behind
// builds, and builds never starve the intake.
const (
	QueueIntake = "intake" // turning deliveries into work
	QueueDeploy = "deploy" // fetch, build, run: KEYSTONE_WORKERS at once
)

// Job limits. River's defaults (one minute, 25 attempts) fit neither a build
// that takes minutes nor a deploy that must not be retried for an hour.
const (
	// PushTimeout bounds turning a push into deploys: it reads .keystone.yml
	// from the pushed commit, which may mean a first clone of the repository.
	PushTimeout = 10 * time.Minute
	// CommentTimeout bounds handling one /keystone command.
	CommentTimeout = 2 * time.Minute
	// DeployTimeout bounds a whole deploy: fetch, build, start, health, switch.
	DeployTimeout = 30 * time.Minute
	// RescueStuckJobsAfter is when River retries a job whose process vanished
	// without finishing it: after the longest timeout, with a margin.
	RescueStuckJobsAfter = DeployTimeout + 5*time.Minute
	// intakeAttempts and deployAttempts are small: a failure that three tries
	// do not fix needs a person, and a deploy's own failures (bad config,
	// build, health) are recorded outcomes, not errors to retry.
	intakeAttempts = 5
	deployAttempts = 3
)

// PushArgs asks for a stored push delivery to be turned into one deploy or
// update per app tracking the pushed branch.
type PushArgs struct {
	DeliveryID int64 `json:"delivery_id"`
}

// Kind names the job in River.
func (PushArgs) Kind() string { return "push" }

// InsertOpts puts pushes on the intake queue with few attempts.
func (PushArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueIntake, MaxAttempts: intakeAttempts}
}

// CommentArgs asks for a stored issue_comment delivery to be read for a
// /keystone command.
type CommentArgs struct {
	DeliveryID int64 `json:"delivery_id"`
}

// Kind names the job in River.
func (CommentArgs) Kind() string { return "issue_comment" }

// InsertOpts puts comments on the intake queue with few attempts.
func (CommentArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueIntake, MaxAttempts: intakeAttempts}
}

// PullRequestArgs asks for a stored pull_request delivery to be turned into
// a preview deploy, or a preview's removal (SPEC §14).
type PullRequestArgs struct {
	DeliveryID int64 `json:"delivery_id"`
}

// Kind names the job in River.
func (PullRequestArgs) Kind() string { return "pull_request" }

// InsertOpts puts pull requests on the intake queue with few attempts.
func (PullRequestArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueIntake, MaxAttempts: intakeAttempts}
}

// AppJobArgs are the arguments of a job that acts on one app: at most one such
// job runs per app at any time (see Exclusive).
type AppJobArgs interface {
	river.JobArgs
	LockAppID() int64
}

// DeployArgs runs one deployment record (deploy, update, rollback or redeploy)
// of one app. The record says what to do; the job only points at it.
type DeployArgs struct {
	DeploymentID int64 `json:"deployment_id"`
	AppID        int64 `json:"app_id"`
}

// Kind names the job in River.
func (DeployArgs) Kind() string { return "deploy" }

// LockAppID is the app this job must hold exclusively.
func (a DeployArgs) LockAppID() int64 { return a.AppID }

// InsertOpts puts deploys on the deploy queue with few attempts.
func (DeployArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDeploy, MaxAttempts: deployAttempts}
}
