package githubtest

import (
	"fmt"
	"net/http"
	"strconv"
)

// PullRequest is what the fake knows of one pull request, for GET
// /repos/{o}/{r}/pulls/{n}.
type PullRequest struct {
	Number     int
	State      string // open or closed
	HeadRef    string
	HeadSHA    string
	HeadRepoID int64 // the repository's own id unless the head is a fork's
}

// SetPullRequest adds or replaces pull request pr of repository fullName.
func (s *Server) SetPullRequest(fullName string, pr PullRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.lookupRepo(fullName)
	if rp.prs == nil {
		rp.prs = map[int]PullRequest{}
	}
	rp.prs[pr.Number] = pr
}

func (s *Server) getPullRequest(w http.ResponseWriter, r *http.Request, rp *repo) {
	n, err := strconv.Atoi(r.PathValue("number"))
	s.mu.Lock()
	pr, ok := rp.prs[n]
	s.mu.Unlock()
	if err != nil || !ok {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": rp.id*100000 + int64(n), "number": n, "state": pr.State, "title": fmt.Sprintf("Pull request #%d", n),
		"html_url": fmt.Sprintf("https://github.com/%s/pull/%d", rp.fullName, n),
		"head": map[string]any{"ref": pr.HeadRef, "sha": pr.HeadSHA,
			"repo": map[string]any{"id": pr.HeadRepoID}},
		"base": map[string]any{"ref": "main", "repo": map[string]any{"id": rp.id, "full_name": rp.fullName}},
	})
}
