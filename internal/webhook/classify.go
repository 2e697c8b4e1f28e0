package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	gh "github.com/google/go-github/v66/github"
)

// Delivery is a verified delivery that implies work. The Recorder stores it and
// that work in one transaction.
type Delivery struct {
	GUID           string
	Event          string // push, issue_comment, pull_request, installation or installation_repositories
	Action         string
	InstallationID int64
	Repository     string // owner/name; empty for installation events
	Payload        []byte // the raw body, as signed
	// Installation is set for installation and installation_repositories events:
	// the change to apply to Keystone's record of installations.
	Installation *InstallationChange
}

// InstallationChange is what an installation event says about an installation.
type InstallationChange struct {
	ID          int64
	Account     string
	AccountType string
	Deleted     bool
	Suspended   bool
	Added       []Repo
	Removed     []Repo
}

// Repo is a repository named in an installation event.
type Repo struct {
	ID       int64
	FullName string
	Private  bool
}

// ignored is a delivery Keystone does not act on; reason goes back in the 200.
type ignored struct{ reason string }

func (i ignored) Error() string { return i.reason }

// badPayload is a body that is not the JSON of its event: answered with 400.
type badPayload struct{ err error }

func (b badPayload) Error() string { return b.err.Error() }

// knownEvents are the event names go-github can parse; others are ignored unread.
var knownEvents = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range gh.MessageTypes() {
		m[t] = true
	}
	return m
}()

var (
	fullNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`)
	shaPattern      = regexp.MustCompile(`^[0-9a-f]{40}$`)
	zeroSHA         = strings.Repeat("0", 40)
)

// classify parses body as event and decides what it means for Keystone: a
// Delivery with work, an ignored error (200), or a badPayload error (400).
// It calls nothing outside this process. webURL is GitHub's web base URL.
func classify(event, guid string, body []byte, webURL string) (Delivery, error) {
	if !knownEvents[event] {
		return Delivery{}, ignored{fmt.Sprintf("event %q is not used by Keystone", clip(event))}
	}
	d := Delivery{GUID: guid, Event: event, Payload: body}
	switch event {
	case "push":
		var p pushPayload
		if err := decode(event, body, &p); err != nil {
			return Delivery{}, err
		}
		return classifyPush(d, &p, webURL)
	case "issue_comment":
		var p commentPayload
		if err := decode(event, body, &p); err != nil {
			return Delivery{}, err
		}
		return classifyComment(d, &p)
	case "pull_request":
		var p pullRequestPayload
		if err := decode(event, body, &p); err != nil {
			return Delivery{}, err
		}
		return classifyPullRequest(d, &p, webURL)
	case "installation":
		var p installationPayload
		if err := decode(event, body, &p); err != nil {
			return Delivery{}, err
		}
		return classifyInstallation(d, &p)
	case "installation_repositories":
		var p installationReposPayload
		if err := decode(event, body, &p); err != nil {
			return Delivery{}, err
		}
		return classifyInstallationRepos(d, &p)
	}
	// Events Keystone does not act on still have to be a JSON object.
	var object map[string]json.RawMessage
	if err := decode(event, body, &object); err != nil {
		return Delivery{}, err
	}
	if event == "ping" {
		return Delivery{}, ignored{"pong"}
	}
	return Delivery{}, ignored{fmt.Sprintf("event %q is not used by Keystone", event)}
}

// ownCloneURL reports whether clone is the URL of repository fullName under
// GitHub's web base URL webURL, with or without ".git", names compared
// without case as GitHub does. Nothing else (another host, user
// information, a path that walks elsewhere) is accepted.
func ownCloneURL(clone, webURL, fullName string) bool {
	want := webURL + "/" + fullName
	return strings.EqualFold(clone, want) || strings.EqualFold(clone, want+".git")
}

// decode unmarshals body into v, or returns the badPayload error naming the event.
func decode(event string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return badPayload{fmt.Errorf("body is not the JSON of a %s event: %v", event, err)}
	}
	return nil
}

func classifyPush(d Delivery, e *pushPayload, webURL string) (Delivery, error) {
	switch {
	case e.Deleted || e.After == zeroSHA:
		return Delivery{}, ignored{"branch or tag deleted"}
	case !strings.HasPrefix(e.Ref, "refs/heads/"):
		return Delivery{}, ignored{fmt.Sprintf("not a branch push (%s)", clip(e.Ref))}
	case e.Installation.ID == 0:
		return Delivery{}, ignored{"no installation: not a GitHub App delivery"}
	case !shaPattern.MatchString(e.After):
		return Delivery{}, badPayload{errors.New("push: after is not a 40-hex commit SHA")}
	case !fullNamePattern.MatchString(e.Repository.FullName):
		return Delivery{}, badPayload{errors.New("push: repository.full_name is not owner/name")}
	case e.Repository.CloneURL == "":
		return Delivery{}, badPayload{errors.New("push: repository.clone_url is missing")}
	case !ownCloneURL(e.Repository.CloneURL, webURL, e.Repository.FullName):
		// Keystone fetches from clone_url with the installation's token.
		return Delivery{}, badPayload{fmt.Errorf("push: repository.clone_url %q is not %s/%s(.git)",
			clip(e.Repository.CloneURL), webURL, e.Repository.FullName)}
	}
	d.InstallationID = e.Installation.ID
	d.Repository = e.Repository.FullName
	return d, nil
}

func classifyComment(d Delivery, e *commentPayload) (Delivery, error) {
	switch {
	case e.Action != "created":
		return Delivery{}, ignored{fmt.Sprintf("comment %s: only new comments are read", clip(e.Action))}
	case e.Installation.ID == 0:
		return Delivery{}, ignored{"no installation: not a GitHub App delivery"}
	case e.Sender.Type == "Bot" || e.Comment.User.Type == "Bot":
		return Delivery{}, ignored{"comment by a bot"}
	case !MentionsCommand(e.Comment.Body):
		return Delivery{}, ignored{"no /keystone command"}
	case !fullNamePattern.MatchString(e.Repository.FullName):
		return Delivery{}, badPayload{errors.New("issue_comment: repository.full_name is not owner/name")}
	case e.Issue.Number <= 0 || e.Comment.ID <= 0:
		return Delivery{}, badPayload{errors.New("issue_comment: issue.number or comment.id is missing")}
	}
	d.Action = "created"
	d.InstallationID = e.Installation.ID
	d.Repository = e.Repository.FullName
	return d, nil
}

// classifyPullRequest keeps the actions that open, move or close a
// pull request's preview (SPEC §14). Whether the repository has apps with
// previews, and whether the head is a fork, is decided by the job.
func classifyPullRequest(d Delivery, e *pullRequestPayload, webURL string) (Delivery, error) {
	switch {
	case e.Action != "opened" && e.Action != "reopened" && e.Action != "synchronize" && e.Action != "closed":
		return Delivery{}, ignored{fmt.Sprintf("pull_request %s: not used by Keystone", clip(e.Action))}
	case e.Installation.ID == 0:
		return Delivery{}, ignored{"no installation: not a GitHub App delivery"}
	case !fullNamePattern.MatchString(e.Repository.FullName):
		return Delivery{}, badPayload{errors.New("pull_request: repository.full_name is not owner/name")}
	case e.Number <= 0:
		return Delivery{}, badPayload{errors.New("pull_request: number is missing")}
	case !shaPattern.MatchString(e.PullRequest.Head.SHA):
		return Delivery{}, badPayload{errors.New("pull_request: pull_request.head.sha is not a 40-hex commit SHA")}
	case e.PullRequest.Base.Ref == "":
		return Delivery{}, badPayload{errors.New("pull_request: pull_request.base.ref is missing")}
	case !ownCloneURL(e.Repository.CloneURL, webURL, e.Repository.FullName):
		// A preview is fetched from clone_url with the installation's token.
		return Delivery{}, badPayload{fmt.Errorf("pull_request: repository.clone_url %q is not %s/%s(.git)",
			clip(e.Repository.CloneURL), webURL, e.Repository.FullName)}
	}
	d.Action = e.Action
	d.InstallationID = e.Installation.ID
	d.Repository = e.Repository.FullName
	return d, nil
}

// MentionsCommand reports whether any line of body starts with /keystone
// (case-insensitive, leading blanks allowed). The comment parser is stricter;
// this only spares a job for the many comments that are conversation.
func MentionsCommand(body string) bool {
	for line := range strings.SplitSeq(body, "\n") {
		line = strings.TrimLeft(line, " \t\r")
		if len(line) >= len("/keystone") && strings.EqualFold(line[:len("/keystone")], "/keystone") {
			return true
		}
	}
	return false
}

func classifyInstallation(d Delivery, e *installationPayload) (Delivery, error) {
	change, err := installationChange(e.Installation)
	if err != nil {
		return Delivery{}, err
	}
	switch e.Action {
	case "created", "new_permissions_accepted", "unsuspend":
		change.Added, err = repos(e.Repositories)
	case "deleted":
		change.Deleted = true
	case "suspend":
		change.Suspended = true
	default:
		return Delivery{}, ignored{fmt.Sprintf("installation %s: not used by Keystone", clip(e.Action))}
	}
	if err != nil {
		return Delivery{}, err
	}
	d.Action = e.Action
	d.InstallationID = change.ID
	d.Installation = change
	return d, nil
}

func classifyInstallationRepos(d Delivery, e *installationReposPayload) (Delivery, error) {
	change, err := installationChange(e.Installation)
	if err != nil {
		return Delivery{}, err
	}
	switch e.Action {
	case "added", "removed":
	default:
		return Delivery{}, ignored{fmt.Sprintf("installation_repositories %s: not used by Keystone", clip(e.Action))}
	}
	if change.Added, err = repos(e.RepositoriesAdded); err != nil {
		return Delivery{}, err
	}
	if change.Removed, err = repos(e.RepositoriesRemoved); err != nil {
		return Delivery{}, err
	}
	d.Action = e.Action
	d.InstallationID = change.ID
	d.Installation = change
	return d, nil
}

func installationChange(in payloadInstallation) (*InstallationChange, error) {
	if in.ID <= 0 {
		return nil, badPayload{errors.New("installation.id is missing")}
	}
	return &InstallationChange{
		ID:          in.ID,
		Account:     in.Account.Login,
		AccountType: in.Account.Type,
		Suspended:   len(in.SuspendedAt) > 0 && string(in.SuspendedAt) != "null",
	}, nil
}

func repos(list []payloadRepository) ([]Repo, error) {
	out := make([]Repo, 0, len(list))
	for _, r := range list {
		if r.ID <= 0 || !fullNamePattern.MatchString(r.FullName) {
			return nil, badPayload{errors.New("repositories: an entry lacks id or owner/name full_name")}
		}
		out = append(out, Repo{ID: r.ID, FullName: r.FullName, Private: r.Private})
	}
	return out, nil
}

// clip keeps sender-controlled text short in answers and logs.
func clip(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}
