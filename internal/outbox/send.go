package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/store"
)

// deliver sends entry e, whose earlier attempts numbered prev, and returns
// the state it ends in (sent, squashed or skipped) or the error of the
// attempt.
func (d *Dispatcher) deliver(ctx context.Context, e store.OutboxEntry, prev int) (string, error) {
	switch e.Kind {
	case KindStatus:
		var s Status
		if err := json.Unmarshal(e.Payload, &s); err != nil {
			return "", fmt.Errorf("decode status entry %d: %w", e.ID, err)
		}
		return d.sendStatus(ctx, e, s, prev)
	case KindReaction:
		var r reactionPayload
		if err := json.Unmarshal(e.Payload, &r); err != nil {
			return "", fmt.Errorf("decode reaction entry %d: %w", e.ID, err)
		}
		// GitHub keeps one reaction of a kind per user: repeating is harmless.
		return store.OutboxSent, d.github.CreateReaction(ctx, e.InstallationID, e.Owner, e.Repo, r.CommentID, r.Content)
	case KindComment:
		var c commentPayload
		if err := json.Unmarshal(e.Payload, &c); err != nil {
			return "", fmt.Errorf("decode comment entry %d: %w", e.ID, err)
		}
		return d.sendComment(ctx, e, c)
	case KindDeployment:
		var p Deployment
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return "", fmt.Errorf("decode deployment entry %d: %w", e.ID, err)
		}
		return d.sendDeployment(ctx, e, p, prev)
	case KindDeploymentStatus:
		var s DeploymentStatus
		if err := json.Unmarshal(e.Payload, &s); err != nil {
			return "", fmt.Errorf("decode deployment status entry %d: %w", e.ID, err)
		}
		return d.sendDeploymentStatus(ctx, e, s, prev)
	}
	return "", fmt.Errorf("outbox entry %d: unknown kind %q", e.ID, e.Kind)
}

// sendStatus posts a status. After an attempt of unknown outcome it first
// reads the newest status of the context: if it is this one, it landed.
// Within a key statuses go one at a time, so nothing else can have landed
// since, and consecutive equal statuses are never queued.
func (d *Dispatcher) sendStatus(ctx context.Context, e store.OutboxEntry, s Status, prev int) (string, error) {
	want := github.Status{State: s.State, TargetURL: s.TargetURL, Description: s.Description, Context: s.Context}
	if prev > 0 {
		got, found, err := d.github.LatestStatus(ctx, e.InstallationID, e.Owner, e.Repo, s.SHA, s.Context)
		if err != nil {
			return "", err
		}
		if found && got == want {
			return store.OutboxSent, nil
		}
	}
	return store.OutboxSent, d.github.CreateStatus(ctx, e.InstallationID, e.Owner, e.Repo, s.SHA, want)
}

// sendComment posts or edits a thread's comment. An edit followed by a
// later edit of the same thread that is also waiting is squashed: only the
// newest body matters.
func (d *Dispatcher) sendComment(ctx context.Context, e store.OutboxEntry, c commentPayload) (string, error) {
	next, err := d.store.NextPendingInKey(ctx, e.OrderingKey, e.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return "", err
	case next.Kind == KindComment && sameThread(next.Payload, c.Thread):
		return store.OutboxSquashed, nil
	}
	issue := c.Issue
	if issue == 0 {
		if issue, err = d.pullOf(ctx, e, c.PullOfSHA); err != nil {
			return "", err
		}
		if issue == 0 {
			return store.OutboxSkipped, nil // the commit came from no pull request
		}
	}
	th, err := d.store.CommentThread(ctx, e.InstallationID, e.Owner, e.Repo, issue, c.Key)
	if err != nil {
		return "", err
	}
	body := c.Body + "\n\n" + c.Marker()
	if th.CommentID != 0 {
		err := d.github.EditComment(ctx, e.InstallationID, e.Owner, e.Repo, th.CommentID, body)
		if !github.IsNotFound(err) {
			return store.OutboxSent, err
		}
		// Someone deleted Keystone's comment: post it again.
		if err := d.store.SetThreadComment(ctx, th.ID, 0); err != nil {
			return "", err
		}
		th.CommentID, th.CreateAttempts = 0, 0
	}
	return store.OutboxSent, d.postComment(ctx, e, th, c.Thread, body)
}

// postComment creates the thread's comment. If a post was started before
// (its answer lost, or the process died), the comment is looked for by its
// marker first and edited instead of posted twice.
func (d *Dispatcher) postComment(ctx context.Context, e store.OutboxEntry, th store.CommentThread, ref Thread, body string) error {
	if th.CreateAttempts > 0 {
		marker := ref.Marker()
		found, ok, err := d.github.FindComment(ctx, e.InstallationID, e.Owner, e.Repo, th.IssueNumber, func(c github.Comment) bool {
			return c.UserType == "Bot" && strings.Contains(c.Body, marker)
		})
		if err != nil {
			return err
		}
		if ok {
			if err := d.store.SetThreadComment(ctx, th.ID, found.ID); err != nil {
				return err
			}
			if found.Body == body {
				return nil
			}
			return d.github.EditComment(ctx, e.InstallationID, e.Owner, e.Repo, found.ID, body)
		}
	}
	if err := d.store.StartThreadPost(ctx, th.ID); err != nil {
		return err
	}
	c, err := d.github.CreateComment(ctx, e.InstallationID, e.Owner, e.Repo, th.IssueNumber, body)
	if err != nil {
		return err
	}
	return d.store.SetThreadComment(ctx, th.ID, c.ID)
}

// pullOf returns the pull request sha came from (0: none), asking GitHub
// once per commit: the merged one for a merge commit, else an open one.
func (d *Dispatcher) pullOf(ctx context.Context, e store.OutboxEntry, sha string) (int, error) {
	n, found, err := d.store.CommitPull(ctx, e.Owner, e.Repo, sha)
	if err != nil || found {
		return n, err
	}
	prs, err := d.github.PullRequestsForCommit(ctx, e.InstallationID, e.Owner, e.Repo, sha)
	if err != nil {
		return 0, err
	}
	n = pickPull(prs)
	return n, d.store.SetCommitPull(ctx, e.Owner, e.Repo, sha, n)
}

func pickPull(prs []github.PullRequest) int {
	for _, pr := range prs {
		if pr.Merged {
			return pr.Number
		}
	}
	for _, pr := range prs {
		if pr.State == "open" {
			return pr.Number
		}
	}
	if len(prs) > 0 {
		return prs[0].Number
	}
	return 0
}

func sameThread(payload []byte, th Thread) bool {
	var c commentPayload
	return json.Unmarshal(payload, &c) == nil && c.Thread == th
}
