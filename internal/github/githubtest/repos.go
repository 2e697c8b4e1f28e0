package githubtest

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// GitHub's limits on commit statuses.
const (
	maxStatusDescription = 140  // characters
	maxStatusesPerSHA    = 1000 // per sha and context
)

// repo is one repository and everything the fake keeps about it.
type repo struct {
	fullName     string
	id           int64
	installation int64
	roles        map[string]string // lower-case login → role
	statuses     []Status
	comments     []*Comment
	reactions    []Reaction
	pulls        map[string][]int // lower-case sha → PR numbers
	deployments  []*Deployment    // oldest first
	prs          map[int]PullRequest
}

func newRepo(fullName string, id, inst int64) *repo {
	return &repo{
		fullName: fullName, id: id, installation: inst,
		roles: make(map[string]string), pulls: make(map[string][]int),
	}
}

func repoKey(fullName string) string { return strings.ToLower(fullName) }

// lookupRepo returns the repository, failing the call when the test did not
// add it: a typo there would otherwise look like a product bug. Callers hold
// s.mu.
func (s *Server) lookupRepo(fullName string) *repo {
	rp := s.repos[repoKey(fullName)]
	if rp == nil {
		panic(fmt.Sprintf("githubtest: repository %q was not added with AddInstallation", fullName))
	}
	return rp
}

// RepositoryID returns the id the fake gave repository fullName.
func (s *Server) RepositoryID(fullName string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupRepo(fullName).id
}

// permissionOf maps a repository role to the legacy permission GitHub
// reports next to it.
var permissionOf = map[string]string{
	"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "none": "none",
}

// SetPermission gives user role on repository fullName: admin, maintain,
// write, triage, read or none. The user becomes a known GitHub user.
func (s *Server) SetPermission(fullName, user, role string) {
	if _, ok := permissionOf[role]; !ok {
		panic(fmt.Sprintf("githubtest: unknown role %q", role))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knowUser(user)
	s.lookupRepo(fullName).roles[strings.ToLower(user)] = role
}

// getPermission answers a known user's permission ("none" by default);
// an unknown user is 404, as on GitHub.
func (s *Server) getPermission(w http.ResponseWriter, r *http.Request, rp *repo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	login := r.PathValue("user")
	if _, ok := s.userIDs[strings.ToLower(login)]; !ok {
		notFound(w, r)
		return
	}
	role, ok := rp.roles[strings.ToLower(login)]
	if !ok {
		role = "none"
	}
	roleName := role
	if role == "none" {
		roleName = ""
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"permission": permissionOf[role], "role_name": roleName, "user": s.userJSON(login),
	})
}

// Status is a commit status as the fake stored it.
type Status struct {
	ID          int64
	SHA         string
	State       string
	TargetURL   string
	Description string
	Context     string
	CreatedAt   time.Time
}

var shaRE = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

var statusStates = []string{"error", "failure", "pending", "success"}

// statusInput is the body of POST .../statuses/{sha}.
type statusInput struct {
	State       *string `json:"state"`
	TargetURL   *string `json:"target_url"`
	Description *string `json:"description"`
	Context     *string `json:"context"`
}

// createStatus validates like GitHub (state required and one of four,
// description at most 140 characters, a full SHA, at most 1000 statuses per
// sha and context) and stores the status.
func (s *Server) createStatus(w http.ResponseWriter, r *http.Request, rp *repo) {
	var in statusInput
	if !decodeBody(w, r, &in) {
		return
	}
	sha := r.PathValue("sha")
	switch {
	case !shaRE.MatchString(sha):
		writeError(w, http.StatusUnprocessableEntity, "No commit found for SHA: "+sha)
		return
	case in.State == nil:
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\n\"state\" wasn't supplied.")
		return
	case !slices.Contains(statusStates, *in.State):
		writeValidation(w, fieldError{Resource: "Status", Field: "state", Code: "custom", Message: "state is not included in the list"})
		return
	case in.Description != nil && utf8.RuneCountInString(*in.Description) > maxStatusDescription:
		writeValidation(w, fieldError{Resource: "Status", Field: "description", Code: "custom",
			Message: fmt.Sprintf("description is too long (maximum is %d characters)", maxStatusDescription)})
		return
	}
	st := Status{SHA: strings.ToLower(sha), State: *in.State, Context: "default", CreatedAt: time.Now().UTC()}
	if in.Context != nil && *in.Context != "" {
		st.Context = *in.Context
	}
	if in.TargetURL != nil {
		st.TargetURL = *in.TargetURL
	}
	if in.Description != nil {
		st.Description = *in.Description
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, old := range rp.statuses {
		if old.SHA == st.SHA && old.Context == st.Context {
			n++
		}
	}
	if n >= maxStatusesPerSHA {
		writeValidation(w, fieldError{Resource: "Status", Code: "custom",
			Message: "This SHA and context has reached the maximum number of statuses."})
		return
	}
	st.ID = s.newID()
	rp.statuses = append(rp.statuses, st)
	writeJSON(w, http.StatusCreated, s.statusJSON(rp, st))
}

// statusJSON renders a status. Callers hold s.mu.
func (s *Server) statusJSON(rp *repo, st Status) map[string]any {
	opt := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	return map[string]any{
		"url": s.URL + "repos/" + rp.fullName + "/statuses/" + st.SHA, "id": st.ID,
		"node_id": fmt.Sprintf("SC_%d", st.ID), "state": st.State, "description": opt(st.Description),
		"target_url": opt(st.TargetURL), "context": st.Context, "avatar_url": nil,
		"created_at": timestamp(st.CreatedAt), "updated_at": timestamp(st.CreatedAt),
		"creator": s.userJSON(s.botLogin()),
	}
}

// Statuses returns the statuses of sha in repository fullName, every
// context, oldest first.
func (s *Server) Statuses(fullName, sha string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, st := range s.lookupRepo(fullName).statuses {
		if st.SHA == strings.ToLower(sha) {
			out = append(out, st)
		}
	}
	return out
}

// listStatuses lists the statuses of a full SHA, newest first, paginated
// with per_page and page like GitHub.
func (s *Server) listStatuses(w http.ResponseWriter, r *http.Request, rp *repo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := strings.ToLower(r.PathValue("sha"))
	var all []Status
	for i := len(rp.statuses) - 1; i >= 0; i-- {
		if rp.statuses[i].SHA == sha {
			all = append(all, rp.statuses[i])
		}
	}
	lo, hi := s.paginate(w, r, len(all))
	out := make([]map[string]any, 0, hi-lo)
	for _, st := range all[lo:hi] {
		out = append(out, s.statusJSON(rp, st))
	}
	writeJSON(w, http.StatusOK, out)
}

// SetPullsForCommit makes GET .../commits/{sha}/pulls list the open pull
// requests numbers for sha in repository fullName.
func (s *Server) SetPullsForCommit(fullName, sha string, numbers ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookupRepo(fullName).pulls[strings.ToLower(sha)] = slices.Clone(numbers)
}

func (s *Server) listPullsForCommit(w http.ResponseWriter, r *http.Request, rp *repo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := strings.ToLower(r.PathValue("sha"))
	out := []map[string]any{}
	for _, n := range rp.pulls[sha] {
		out = append(out, map[string]any{
			"id": rp.id*100000 + int64(n), "number": n, "state": "open", "title": fmt.Sprintf("Pull request #%d", n),
			"url":      fmt.Sprintf("%srepos/%s/pulls/%d", s.URL, rp.fullName, n),
			"html_url": fmt.Sprintf("https://github.com/%s/pull/%d", rp.fullName, n),
			"head":     map[string]any{"sha": sha, "ref": fmt.Sprintf("pr-%d", n)},
			"base":     map[string]any{"ref": "main"},
		})
	}
	writeJSON(w, http.StatusOK, out)
}
