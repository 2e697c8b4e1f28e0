// Package outbox is the durable outbox of everything Keystone says to
// GitHub: commit statuses, comments (posted once, then edited), reactions,
// and GitHub Deployments with their statuses. Callers add entries in the transaction of the change that causes
// them (Enqueue*); the Dispatcher sends them, in order per ordering key —
// (repository, SHA, context) for statuses, (repository, comment thread) for
// comments, (repository, environment) for deployments — with one installation's requests sent one at a time across all
// Keystone processes, waiting as GitHub asks through outages and rate limits.
// An outage delays what Keystone says; it never loses, repeats or reorders it.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/store"
)

// Entry kinds.
const (
	KindStatus   = "status"
	KindComment  = "comment"
	KindReaction = "reaction"
	// KindDeployment creates a GitHub Deployment, KindDeploymentStatus
	// posts one of its statuses (SPEC §14).
	KindDeployment       = "deployment"
	KindDeploymentStatus = "deployment_status"
)

// Target is the repository an entry speaks to, through its installation.
type Target struct {
	InstallationID int64
	Owner, Repo    string
}

func (t Target) validate() error {
	if t.InstallationID <= 0 || t.Owner == "" || t.Repo == "" {
		return fmt.Errorf("outbox: target needs an installation, an owner and a repository, got %+v", t)
	}
	return nil
}

func (t Target) fullName() string { return strings.ToLower(t.Owner + "/" + t.Repo) }

// Status is a commit status to post.
type Status struct {
	SHA         string `json:"sha"`
	State       string `json:"state"` // pending, success, failure or error
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
	Context     string `json:"context"`
}

// Thread names one Keystone comment that is posted once and then edited: on
// issue or pull request Issue, or, when Issue is 0, on the pull request that
// commit PullOfSHA came from (no comment when there is none). Key tells the
// thread apart from Keystone's other comments there, e.g. "deploy:web".
type Thread struct {
	Issue     int    `json:"issue,omitempty"`
	PullOfSHA string `json:"pull_of_sha,omitempty"`
	Key       string `json:"key"`
}

// Marker is the hidden line every comment of the thread carries, by which
// Keystone finds a comment it posted without learning that it did.
func (th Thread) Marker() string { return "<!-- keystone:thread=" + th.Key + " -->" }

type commentPayload struct {
	Thread
	Body string `json:"body"`
}

type reactionPayload struct {
	CommentID int64  `json:"comment_id"`
	Content   string `json:"content"`
}

var (
	shaPattern       = regexp.MustCompile(`^[0-9a-f]{40}$`)
	threadKeyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9:=._/-]{0,99}$`)
	statusStates     = map[string]bool{"pending": true, "success": true, "failure": true, "error": true}
)

// The Enqueue functions must be called with queries bound to a
// transaction: the transaction that makes the change.

// EnqueueStatus adds s for target in q's transaction, unless it is the same
// as the last status of its SHA and context: GitHub keeps at most 1000 per
// SHA and context, so only changes are posted. The description is cut to
// GitHub's 140 characters. queued tells whether an entry was added.
func EnqueueStatus(ctx context.Context, q *store.Queries, t Target, s Status) (queued bool, err error) {
	if err := t.validate(); err != nil {
		return false, err
	}
	s.SHA = strings.ToLower(s.SHA)
	switch {
	case !shaPattern.MatchString(s.SHA):
		return false, fmt.Errorf("outbox: status: SHA %q is not 40 hex digits", s.SHA)
	case !statusStates[s.State]:
		return false, fmt.Errorf("outbox: status: unknown state %q", s.State)
	case s.Context == "":
		return false, errors.New("outbox: status: context is empty")
	}
	s.Description = Cut(s.Description, github.MaxStatusDescription)
	key := "status:" + t.fullName() + "@" + s.SHA + ":" + s.Context
	return enqueue(ctx, q, t, KindStatus, key, s)
}

// EnqueueComment sets the body of thread th for target in q's transaction:
// the first entry of a thread posts the comment, later ones edit it. An
// entry that equals the thread's last one is not added. Bodies are cut to
// fit GitHub's limit with the marker.
func EnqueueComment(ctx context.Context, q *store.Queries, t Target, th Thread, body string) (queued bool, err error) {
	if err := t.validate(); err != nil {
		return false, err
	}
	th.PullOfSHA = strings.ToLower(th.PullOfSHA)
	switch {
	case !threadKeyPattern.MatchString(th.Key):
		return false, fmt.Errorf("outbox: comment: thread key %q is not [a-z0-9:=._/-]{1,100}", th.Key)
	case th.Issue < 0 || (th.Issue == 0) == (th.PullOfSHA == ""):
		return false, fmt.Errorf("outbox: comment: thread %s needs an issue number or a commit, not both", th.Key)
	case th.Issue == 0 && !shaPattern.MatchString(th.PullOfSHA):
		return false, fmt.Errorf("outbox: comment: commit %q is not 40 hex digits", th.PullOfSHA)
	case strings.TrimSpace(body) == "":
		return false, fmt.Errorf("outbox: comment: thread %s: empty body", th.Key)
	}
	where := fmt.Sprintf("#%d", th.Issue)
	if th.Issue == 0 {
		where = ":pull-of-commit" // one key for every commit: an app's deploy comments stay in order
	}
	key := "comment:" + t.fullName() + where + ":" + th.Key
	body = Cut(body, github.MaxCommentBody-utf8.RuneCountInString(th.Marker())-2)
	return enqueue(ctx, q, t, KindComment, key, commentPayload{Thread: th, Body: body})
}

// EnqueueReaction adds a reaction (e.g. "eyes") to issue comment commentID
// of target in q's transaction.
func EnqueueReaction(ctx context.Context, q *store.Queries, t Target, commentID int64, content string) (queued bool, err error) {
	if err := t.validate(); err != nil {
		return false, err
	}
	if commentID <= 0 || content == "" {
		return false, fmt.Errorf("outbox: reaction: needs a comment id and a content, got %d %q", commentID, content)
	}
	key := fmt.Sprintf("reaction:%s:%d", t.fullName(), commentID)
	return enqueue(ctx, q, t, KindReaction, key, reactionPayload{CommentID: commentID, Content: content})
}

func enqueue(ctx context.Context, q *store.Queries, t Target, kind, key string, payload any) (bool, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return false, fmt.Errorf("outbox: encode %s: %w", kind, err)
	}
	last, err := q.LastOutboxEntry(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return false, err
	case last.State != store.OutboxFailed && sameJSON(last.Payload, raw):
		return false, nil
	}
	if _, err := q.InsertOutboxEntry(ctx, store.OutboxEntry{
		InstallationID: t.InstallationID, Owner: t.Owner, Repo: t.Repo, Kind: kind, OrderingKey: key, Payload: raw,
	}); err != nil {
		return false, err
	}
	return true, nil
}

// sameJSON compares two JSON objects by value (jsonb reorders keys).
func sameJSON(a, b []byte) bool {
	var x, y map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ax, _ := json.Marshal(x) // map keys marshal sorted
	by, _ := json.Marshal(y)
	return string(ax) == string(by)
}

// Cut returns s cut to at most max characters (runes, never splitting one),
// ending with "…" when it was cut. Invalid UTF-8 is replaced and NUL
// characters (which PostgreSQL cannot store) are dropped first.
func Cut(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if max <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return strings.TrimRightFunc(string(r[:max-1]), func(r rune) bool { return r == ' ' || r == '\n' }) + "…"
}
