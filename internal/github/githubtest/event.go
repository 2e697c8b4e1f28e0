package githubtest

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Event is the issue_comment webhook payload (action "created") GitHub
// sends for c, a comment on pull request c.Issue of repo ("owner/name")
// in installation installationID: what tests deliver to Keystone after
// storing the comment with AddComment.
func (c Comment) Event(repo string, installationID int64) []byte {
	owner, name, _ := strings.Cut(repo, "/")
	user := map[string]any{"login": c.User, "id": 7, "type": "User"}
	b, err := json.Marshal(map[string]any{
		"action": "created",
		"comment": map[string]any{"id": c.ID, "body": c.Body, "user": user, "performed_via_github_app": nil,
			"created_at": c.CreatedAt, "updated_at": c.UpdatedAt},
		"issue": map[string]any{"number": c.Issue, "title": "t", "user": user,
			"pull_request": map[string]any{"url": fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", repo, c.Issue)}},
		"repository": map[string]any{"id": 1, "name": name, "full_name": repo, "owner": map[string]any{"login": owner},
			"clone_url": "https://github.com/" + repo + ".git"},
		"sender":       user,
		"installation": map[string]any{"id": installationID},
	})
	if err != nil {
		panic(fmt.Sprintf("githubtest: marshal comment event: %v", err)) // maps of plain values always marshal
	}
	return b
}
