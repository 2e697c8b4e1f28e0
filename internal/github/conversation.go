package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	gh "github.com/google/go-github/v66/github"
)

// The thin typed calls below are what Keystone says to and reads from a
// repository. Each runs as the installation, and each retries once with a
// new installation token when GitHub answers 401 (a token revoked or expired
// early): GitHub refuses a request with a bad credential before acting on
// it, so the retry never repeats an effect.

// Limits GitHub puts on what Keystone writes.
const (
	MaxStatusDescription = 140   // characters of a commit status description
	MaxCommentBody       = 65536 // characters of an issue comment
)

// Status is a commit status.
type Status struct {
	State       string // pending, success, failure or error
	TargetURL   string
	Description string
	Context     string
}

// Comment is an issue or pull-request comment.
type Comment struct {
	ID   int64
	Body string
	// User is the author's login ("<slug>[bot]" for the App's comments),
	// UserType "User" or "Bot".
	User     string
	UserType string
}

// PullRequest is a pull request a commit belongs to.
type PullRequest struct {
	Number int
	State  string // open or closed
	Merged bool
	// From GET .../pulls/{n} only: the head, and whether it is a branch of
	// the repository itself (by id) or a fork's.
	HeadRef, HeadSHA string
	Fork             bool
}

// HookDelivery is one delivery of the App's webhook.
type HookDelivery struct {
	ID             int64
	GUID           string
	DeliveredAt    time.Time
	Redelivery     bool
	StatusCode     int // 0 when GitHub got no answer at all
	Event          string
	Action         string
	InstallationID int64
}

// Succeeded reports whether Keystone answered the delivery with a 2xx.
func (d HookDelivery) Succeeded() bool { return d.StatusCode >= 200 && d.StatusCode < 300 }

// AppID is the GitHub App's id.
func (a *App) AppID() int64 { return a.cfg.AppID }

// withInstallation runs call with installation inst's client and, if GitHub
// answers 401, once more with a client holding a freshly issued token.
func (a *App) withInstallation(inst int64, call func(c *gh.Client) error) error {
	err := call(a.Installation(inst))
	if isUnauthorized(err) {
		a.forgetInstallation(inst)
		err = call(a.Installation(inst))
	}
	if secondaryLimitWithoutWait(err) {
		// Drop the client and with it go-github's hour-long block: the
		// caller waits as GitHub asks (Classify), at least a minute.
		a.forgetInstallation(inst)
	}
	return err
}

// forgetInstallation drops the cached token source of inst, so that the
// next call asks GitHub for a new token.
func (a *App) forgetInstallation(inst int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.insts, inst)
}

func isUnauthorized(err error) bool {
	var er *gh.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusUnauthorized
}

// CreateStatus posts a commit status on sha of owner/repo.
func (a *App) CreateStatus(ctx context.Context, inst int64, owner, repo, sha string, s Status) error {
	st := &gh.RepoStatus{State: gh.String(s.State), Context: gh.String(s.Context)}
	if s.TargetURL != "" {
		st.TargetURL = gh.String(s.TargetURL)
	}
	if s.Description != "" {
		st.Description = gh.String(s.Description)
	}
	err := a.withInstallation(inst, func(c *gh.Client) error {
		_, _, err := c.Repositories.CreateStatus(ctx, owner, repo, sha, st)
		return err
	})
	if err != nil {
		return fmt.Errorf("create status %s on %s/%s@%s: %w", s.Context, owner, repo, shortSHA(sha), err)
	}
	return nil
}

// LatestStatus returns the newest status of context on sha, found=false when
// there is none. It reads at most maxPages pages of 100 statuses.
func (a *App) LatestStatus(ctx context.Context, inst int64, owner, repo, sha, context string) (s Status, found bool, err error) {
	const maxPages = 10
	opts := &gh.ListOptions{PerPage: 100}
	for range maxPages {
		var page []*gh.RepoStatus
		var resp *gh.Response
		err := a.withInstallation(inst, func(c *gh.Client) error {
			var err error
			page, resp, err = c.Repositories.ListStatuses(ctx, owner, repo, sha, opts)
			return err
		})
		if err != nil {
			return Status{}, false, fmt.Errorf("list statuses of %s/%s@%s: %w", owner, repo, shortSHA(sha), err)
		}
		for _, st := range page { // newest first
			if st.GetContext() == context {
				return Status{State: st.GetState(), TargetURL: st.GetTargetURL(),
					Description: st.GetDescription(), Context: st.GetContext()}, true, nil
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return Status{}, false, nil
}

// CreateComment posts body on issue or pull request number.
func (a *App) CreateComment(ctx context.Context, inst int64, owner, repo string, number int, body string) (Comment, error) {
	var out *gh.IssueComment
	err := a.withInstallation(inst, func(c *gh.Client) error {
		var err error
		out, _, err = c.Issues.CreateComment(ctx, owner, repo, number, &gh.IssueComment{Body: gh.String(body)})
		return err
	})
	if err != nil {
		return Comment{}, fmt.Errorf("comment on %s/%s#%d: %w", owner, repo, number, err)
	}
	return toComment(out), nil
}

// EditComment replaces the body of comment id. IsNotFound is true of the
// error when the comment was deleted.
func (a *App) EditComment(ctx context.Context, inst int64, owner, repo string, id int64, body string) error {
	err := a.withInstallation(inst, func(c *gh.Client) error {
		_, _, err := c.Issues.EditComment(ctx, owner, repo, id, &gh.IssueComment{Body: gh.String(body)})
		return err
	})
	if err != nil {
		return fmt.Errorf("edit comment %d on %s/%s: %w", id, owner, repo, err)
	}
	return nil
}

// FindComment returns the first comment of issue number, oldest first, for
// which match is true; found=false when none is. It reads at most maxPages
// pages of 100 comments.
func (a *App) FindComment(ctx context.Context, inst int64, owner, repo string, number int, match func(Comment) bool) (c Comment, found bool, err error) {
	const maxPages = 30
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for range maxPages {
		var page []*gh.IssueComment
		var resp *gh.Response
		err := a.withInstallation(inst, func(cl *gh.Client) error {
			var err error
			page, resp, err = cl.Issues.ListComments(ctx, owner, repo, number, opts)
			return err
		})
		if err != nil {
			return Comment{}, false, fmt.Errorf("list comments of %s/%s#%d: %w", owner, repo, number, err)
		}
		for _, ic := range page {
			if c := toComment(ic); match(c) {
				return c, true, nil
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return Comment{}, false, nil
}

func toComment(ic *gh.IssueComment) Comment {
	return Comment{
		ID: ic.GetID(), Body: ic.GetBody(), User: ic.GetUser().GetLogin(), UserType: ic.GetUser().GetType(),
	}
}

// CreateReaction reacts to issue comment commentID with content (e.g.
// "eyes"). Reacting twice with the same content is harmless: GitHub keeps one.
func (a *App) CreateReaction(ctx context.Context, inst int64, owner, repo string, commentID int64, content string) error {
	err := a.withInstallation(inst, func(c *gh.Client) error {
		_, _, err := c.Reactions.CreateIssueCommentReaction(ctx, owner, repo, commentID, content)
		return err
	})
	if err != nil {
		return fmt.Errorf("react %s to comment %d on %s/%s: %w", content, commentID, owner, repo, err)
	}
	return nil
}

// PullRequestsForCommit lists the pull requests sha belongs to: the merged
// one for a merge commit, the open ones whose head it is.
func (a *App) PullRequestsForCommit(ctx context.Context, inst int64, owner, repo, sha string) ([]PullRequest, error) {
	var prs []*gh.PullRequest
	err := a.withInstallation(inst, func(c *gh.Client) error {
		var err error
		prs, _, err = c.PullRequests.ListPullRequestsWithCommit(ctx, owner, repo, sha, &gh.ListOptions{PerPage: 100})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list pull requests of %s/%s@%s: %w", owner, repo, shortSHA(sha), err)
	}
	out := make([]PullRequest, 0, len(prs))
	for _, pr := range prs {
		out = append(out, PullRequest{Number: pr.GetNumber(), State: pr.GetState(), Merged: pr.GetMerged() || pr.MergedAt != nil})
	}
	return out, nil
}

// PullRequest returns pull request number of owner/repo; an error for which
// IsNotFound holds when there is none.
func (a *App) PullRequest(ctx context.Context, inst int64, owner, repo string, number int) (PullRequest, error) {
	var pr *gh.PullRequest
	err := a.withInstallation(inst, func(c *gh.Client) error {
		var err error
		pr, _, err = c.PullRequests.Get(ctx, owner, repo, number)
		return err
	})
	if err != nil {
		return PullRequest{}, fmt.Errorf("get pull request %s/%s#%d: %w", owner, repo, number, err)
	}
	head := pr.GetHead().GetRepo()
	return PullRequest{Number: pr.GetNumber(), State: pr.GetState(), Merged: pr.GetMerged(),
		HeadRef: pr.GetHead().GetRef(), HeadSHA: pr.GetHead().GetSHA(),
		Fork: head == nil || head.GetID() != pr.GetBase().GetRepo().GetID()}, nil
}

// ListHookDeliveries returns one page (at most perPage, up to 100) of the
// App's webhook deliveries, newest first, from cursor ("" for the newest),
// and the cursor of the next page ("" at the end).
func (a *App) ListHookDeliveries(ctx context.Context, cursor string, perPage int) ([]HookDelivery, string, error) {
	page, resp, err := a.app.Apps.ListHookDeliveries(ctx, &gh.ListCursorOptions{Cursor: cursor, PerPage: perPage})
	if err != nil {
		return nil, "", fmt.Errorf("list webhook deliveries of app %d: %w", a.cfg.AppID, err)
	}
	out := make([]HookDelivery, 0, len(page))
	for _, d := range page {
		out = append(out, HookDelivery{
			ID: d.GetID(), GUID: d.GetGUID(), DeliveredAt: d.GetDeliveredAt().Time, Redelivery: d.GetRedelivery(),
			StatusCode: d.GetStatusCode(), Event: d.GetEvent(), Action: d.GetAction(), InstallationID: d.GetInstallationID(),
		})
	}
	return out, resp.Cursor, nil
}

// RedeliverHookDelivery asks GitHub to send delivery id again. GitHub
// answers 202, which go-github reports as an AcceptedError: that is success.
func (a *App) RedeliverHookDelivery(ctx context.Context, id int64) error {
	_, _, err := a.app.Apps.RedeliverHookDelivery(ctx, id)
	var accepted *gh.AcceptedError
	if err != nil && !errors.As(err, &accepted) {
		return fmt.Errorf("redeliver webhook delivery %d: %w", id, err)
	}
	return nil
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return strings.Clone(sha)
}
