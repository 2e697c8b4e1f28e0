package webhook

import "encoding/json"

// The payload types below hold only the fields Keystone reads. Decoding into
// them checks the body is JSON and that those fields have GitHub's types,
// at a fraction of the cost of go-github's full event types (which were
// most of the intake's CPU).

type payloadInstallation struct {
	ID      int64 `json:"id"`
	Account struct {
		Login string `json:"login"`
		Type  string `json:"type"`
	} `json:"account"`
	// SuspendedAt is null unless suspended; its form is not Keystone's concern.
	SuspendedAt json.RawMessage `json:"suspended_at"`
}

type payloadRepository struct {
	ID       int64  `json:"id"`
	FullName string `json:"full_name"`
	CloneURL string `json:"clone_url"`
	Private  bool   `json:"private"`
}

type payloadUser struct {
	Login string `json:"login"`
	Type  string `json:"type"`
}

type pushPayload struct {
	Ref          string              `json:"ref"`
	After        string              `json:"after"`
	Deleted      bool                `json:"deleted"`
	Installation payloadInstallation `json:"installation"`
	Repository   payloadRepository   `json:"repository"`
}

type commentPayload struct {
	Action       string              `json:"action"`
	Installation payloadInstallation `json:"installation"`
	Repository   payloadRepository   `json:"repository"`
	Sender       payloadUser         `json:"sender"`
	Issue        struct {
		Number int `json:"number"`
	} `json:"issue"`
	Comment struct {
		ID   int64       `json:"id"`
		Body string      `json:"body"`
		User payloadUser `json:"user"`
	} `json:"comment"`
}

type installationPayload struct {
	Action       string              `json:"action"`
	Installation payloadInstallation `json:"installation"`
	Repositories []payloadRepository `json:"repositories"`
}

type installationReposPayload struct {
	Action              string              `json:"action"`
	Installation        payloadInstallation `json:"installation"`
	RepositoriesAdded   []payloadRepository `json:"repositories_added"`
	RepositoriesRemoved []payloadRepository `json:"repositories_removed"`
}

type pullRequestPayload struct {
	Action       string              `json:"action"`
	Number       int                 `json:"number"`
	Installation payloadInstallation `json:"installation"`
	Repository   payloadRepository   `json:"repository"`
	PullRequest  struct {
		Head struct {
			Ref  string `json:"ref"`
			SHA  string `json:"sha"`
			Repo *struct {
				ID int64 `json:"id"`
			} `json:"repo"` // null once a fork is deleted
		} `json:"head"`
		Base struct {
			Ref string `json:"ref"`
		} `json:"base"`
	} `json:"pull_request"`
}
