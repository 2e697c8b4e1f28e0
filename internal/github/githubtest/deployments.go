package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Deployment is a GitHub Deployment as the fake stored it, with its
// statuses oldest first.
type Deployment struct {
	ID                    int64
	SHA, Ref, Task        string
	Environment           string
	Description           string
	Payload               json.RawMessage
	ProductionEnvironment bool
	TransientEnvironment  bool
	Creator               string
	CreatedAt             time.Time
	Statuses              []DeploymentStatus
}

// DeploymentStatus is one status of a Deployment.
type DeploymentStatus struct {
	ID             int64
	State          string
	Description    string
	LogURL         string
	EnvironmentURL string
	Environment    string
	Creator        string
	CreatedAt      time.Time
}

// deploymentStatusStates are the states GitHub accepts for a deployment
// status.
var deploymentStatusStates = []string{"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}

// deploymentInput is the body of POST .../deployments. Pointers tell an
// absent field from a zero one, as GitHub's defaults depend on it.
type deploymentInput struct {
	Ref                   *string         `json:"ref"`
	Task                  *string         `json:"task"`
	AutoMerge             *bool           `json:"auto_merge"`
	RequiredContexts      *[]string       `json:"required_contexts"`
	Payload               json.RawMessage `json:"payload"`
	Environment           *string         `json:"environment"`
	Description           *string         `json:"description"`
	TransientEnvironment  *bool           `json:"transient_environment"`
	ProductionEnvironment *bool           `json:"production_environment"`
}

// createDeployment creates a deployment the way GitHub decides:
//   - ref is required; the fake knows no branches, so it must be a full SHA
//     (422 "No ref found" otherwise);
//   - auto_merge defaults to true, and GitHub then merges the default branch
//     into the ref first: the fake, knowing no history, answers 409 as
//     GitHub does when that merge is needed, unless auto_merge is false;
//   - required_contexts absent means every context of the ref's commit
//     statuses must be success: any pending, failing or erroring context
//     (Keystone's own pending status included) is 409. A given list checks
//     only those contexts; [] checks none;
//   - environment defaults to "production", production_environment to
//     whether the environment is "production", transient_environment to
//     false. (GitHub documents no length limit on a deployment's
//     description, only on a status's: the fake sets none.)
func (s *Server) createDeployment(w http.ResponseWriter, r *http.Request, rp *repo) {
	var in deploymentInput
	if !decodeBody(w, r, &in) {
		return
	}
	switch {
	case in.Ref == nil || *in.Ref == "":
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\n\"ref\" wasn't supplied.")
		return
	case !shaRE.MatchString(*in.Ref):
		writeError(w, http.StatusUnprocessableEntity, "No ref found for: "+*in.Ref)
		return
	case in.AutoMerge == nil || *in.AutoMerge:
		writeError(w, http.StatusConflict, "Conflict merging main into "+*in.Ref+".")
		return
	}
	sha := strings.ToLower(*in.Ref)
	s.mu.Lock()
	defer s.mu.Unlock()
	if bad := unmetContexts(rp, sha, in.RequiredContexts); len(bad) > 0 {
		writeJSON(w, http.StatusConflict, map[string]any{
			"message": "Conflict: Commit status checks failed for " + *in.Ref + ".",
			"errors": []map[string]any{{"contexts": bad, "resource": "Deployment", "field": "required_contexts",
				"code": "invalid"}},
			"documentation_url": docsURL, "status": "409",
		})
		return
	}
	d := &Deployment{ID: s.newID(), SHA: sha, Ref: *in.Ref, Task: "deploy", Environment: "production",
		Payload: json.RawMessage(`{}`), Creator: s.botLogin(), CreatedAt: time.Now().UTC()}
	if in.Task != nil && *in.Task != "" {
		d.Task = *in.Task
	}
	if in.Environment != nil && *in.Environment != "" {
		d.Environment = *in.Environment
	}
	if in.Description != nil {
		d.Description = *in.Description
	}
	if len(in.Payload) > 0 && string(in.Payload) != "null" {
		d.Payload = slices.Clone(in.Payload)
	}
	d.ProductionEnvironment = d.Environment == "production"
	if in.ProductionEnvironment != nil {
		d.ProductionEnvironment = *in.ProductionEnvironment
	}
	if in.TransientEnvironment != nil {
		d.TransientEnvironment = *in.TransientEnvironment
	}
	rp.deployments = append(rp.deployments, d)
	writeJSON(w, http.StatusCreated, s.deploymentJSON(rp, d))
}

// unmetContexts returns the contexts of sha's newest commit statuses that
// block a deployment: every context that is not success when required is
// nil, else the required ones that are not success (missing included).
// Callers hold s.mu.
func unmetContexts(rp *repo, sha string, required *[]string) []map[string]string {
	latest := map[string]string{}
	var order []string
	for _, st := range rp.statuses {
		if st.SHA != sha {
			continue
		}
		if _, ok := latest[st.Context]; !ok {
			order = append(order, st.Context)
		}
		latest[st.Context] = st.State
	}
	check := order
	if required != nil {
		check = *required
	}
	var bad []map[string]string
	for _, c := range check {
		state, ok := latest[c]
		if !ok {
			state = "missing"
		}
		if state != "success" {
			bad = append(bad, map[string]string{"context": c, "state": state})
		}
	}
	return bad
}

// lookupDeployment returns the deployment named by the path's {id}, nil when
// the repository has none such. Callers hold s.mu.
func lookupDeployment(rp *repo, r *http.Request) *Deployment {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	i := slices.IndexFunc(rp.deployments, func(d *Deployment) bool { return d.ID == id })
	if i < 0 {
		return nil
	}
	return rp.deployments[i]
}

// listDeployments lists deployments newest first, filtered by the sha, ref,
// task and environment parameters like GitHub, paginated.
func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request, rp *repo) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*Deployment
	for i := len(rp.deployments) - 1; i >= 0; i-- {
		d := rp.deployments[i]
		if (q.Get("sha") != "" && !strings.EqualFold(q.Get("sha"), d.SHA)) ||
			(q.Get("ref") != "" && q.Get("ref") != d.Ref) ||
			(q.Get("task") != "" && q.Get("task") != d.Task) ||
			(q.Get("environment") != "" && q.Get("environment") != d.Environment) {
			continue
		}
		all = append(all, d)
	}
	lo, hi := s.paginate(w, r, len(all))
	out := make([]map[string]any, 0, hi-lo)
	for _, d := range all[lo:hi] {
		out = append(out, s.deploymentJSON(rp, d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request, rp *repo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := lookupDeployment(rp, r)
	if d == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, s.deploymentJSON(rp, d))
}

// deploymentStatusInput is the body of POST .../deployments/{id}/statuses.
type deploymentStatusInput struct {
	State          *string `json:"state"`
	TargetURL      *string `json:"target_url"`
	LogURL         *string `json:"log_url"`
	Description    *string `json:"description"`
	Environment    *string `json:"environment"`
	EnvironmentURL *string `json:"environment_url"`
	AutoInactive   *bool   `json:"auto_inactive"`
}

// createDeploymentStatus validates like GitHub (state required and one of
// seven, description at most 140 characters, an existing deployment) and
// stores the status. A success with auto_inactive (default true) marks
// inactive the earlier successful deployments of the environment that are
// neither production nor transient, as GitHub documents; production ones
// are left as they are, so their owner must mark them itself.
func (s *Server) createDeploymentStatus(w http.ResponseWriter, r *http.Request, rp *repo) {
	var in deploymentStatusInput
	if !decodeBody(w, r, &in) {
		return
	}
	switch {
	case in.State == nil:
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\n\"state\" wasn't supplied.")
		return
	case !slices.Contains(deploymentStatusStates, *in.State):
		writeValidation(w, fieldError{Resource: "DeploymentStatus", Field: "state", Code: "custom",
			Message: "state is not included in the list"})
		return
	case in.Description != nil && utf8.RuneCountInString(*in.Description) > maxStatusDescription:
		writeValidation(w, fieldError{Resource: "DeploymentStatus", Field: "description", Code: "custom",
			Message: fmt.Sprintf("description is too long (maximum is %d characters)", maxStatusDescription)})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := lookupDeployment(rp, r)
	if d == nil {
		notFound(w, r)
		return
	}
	st := DeploymentStatus{State: *in.State, Creator: s.botLogin(), CreatedAt: time.Now().UTC()}
	for _, f := range []struct {
		dst *string
		src *string
	}{{&st.Description, in.Description}, {&st.LogURL, in.TargetURL}, {&st.LogURL, in.LogURL},
		{&st.EnvironmentURL, in.EnvironmentURL}, {&d.Environment, in.Environment}} {
		if f.src != nil && *f.src != "" {
			*f.dst = *f.src
		}
	}
	st.Environment = d.Environment
	st.ID = s.newID()
	d.Statuses = append(d.Statuses, st)
	if st.State == "success" && (in.AutoInactive == nil || *in.AutoInactive) {
		s.autoInactive(rp, d)
	}
	writeJSON(w, http.StatusCreated, s.deploymentStatusJSON(rp, d, st))
}

// autoInactive adds an inactive status to the earlier deployments of d's
// environment whose newest status is success, when they are neither
// production nor transient. Callers hold s.mu.
func (s *Server) autoInactive(rp *repo, d *Deployment) {
	for _, old := range rp.deployments {
		if old == d || old.Environment != d.Environment || old.ProductionEnvironment || old.TransientEnvironment ||
			len(old.Statuses) == 0 || old.Statuses[len(old.Statuses)-1].State != "success" {
			continue
		}
		old.Statuses = append(old.Statuses, DeploymentStatus{ID: s.newID(), State: "inactive",
			Environment: old.Environment, Creator: s.botLogin(), CreatedAt: time.Now().UTC()})
	}
}

// listDeploymentStatuses lists a deployment's statuses newest first,
// paginated.
func (s *Server) listDeploymentStatuses(w http.ResponseWriter, r *http.Request, rp *repo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := lookupDeployment(rp, r)
	if d == nil {
		notFound(w, r)
		return
	}
	lo, hi := s.paginate(w, r, len(d.Statuses))
	out := make([]map[string]any, 0, hi-lo)
	for i := len(d.Statuses) - 1 - lo; i >= len(d.Statuses)-hi; i-- {
		out = append(out, s.deploymentStatusJSON(rp, d, d.Statuses[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// Deployments returns the deployments of repository fullName, oldest first,
// each with its statuses oldest first.
func (s *Server) Deployments(fullName string) []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Deployment
	for _, d := range s.lookupRepo(fullName).deployments {
		c := *d
		c.Payload = slices.Clone(d.Payload)
		c.Statuses = slices.Clone(d.Statuses)
		out = append(out, c)
	}
	return out
}

// deploymentJSON renders a deployment. Callers hold s.mu.
func (s *Server) deploymentJSON(rp *repo, d *Deployment) map[string]any {
	url := fmt.Sprintf("%srepos/%s/deployments/%d", s.URL, rp.fullName, d.ID)
	return map[string]any{
		"url": url, "id": d.ID, "node_id": fmt.Sprintf("DE_%d", d.ID), "sha": d.SHA, "ref": d.Ref, "task": d.Task,
		"payload": d.Payload, "original_environment": d.Environment, "environment": d.Environment,
		"description": d.Description, "creator": s.userJSON(d.Creator),
		"created_at": timestamp(d.CreatedAt), "updated_at": timestamp(d.CreatedAt),
		"statuses_url": url + "/statuses", "repository_url": s.URL + "repos/" + rp.fullName,
		"transient_environment": d.TransientEnvironment, "production_environment": d.ProductionEnvironment,
	}
}

// deploymentStatusJSON renders a deployment status. Callers hold s.mu.
func (s *Server) deploymentStatusJSON(rp *repo, d *Deployment, st DeploymentStatus) map[string]any {
	url := fmt.Sprintf("%srepos/%s/deployments/%d", s.URL, rp.fullName, d.ID)
	return map[string]any{
		"url": fmt.Sprintf("%s/statuses/%d", url, st.ID), "id": st.ID, "node_id": fmt.Sprintf("DES_%d", st.ID),
		"state": st.State, "creator": s.userJSON(st.Creator), "description": st.Description,
		"environment": st.Environment, "target_url": st.LogURL, "log_url": st.LogURL,
		"environment_url": st.EnvironmentURL, "created_at": timestamp(st.CreatedAt), "updated_at": timestamp(st.CreatedAt),
		"deployment_url": url, "repository_url": s.URL + "repos/" + rp.fullName,
	}
}
