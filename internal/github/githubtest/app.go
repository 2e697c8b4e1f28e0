package githubtest

import (
	"cmp"
	"crypto/rand"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// routes registers the REST subset the fake speaks; anything else is 404.
func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /app", s.requireJWT(s.getApp))
	m.HandleFunc("GET /app/installations", s.requireJWT(s.listInstallations))
	m.HandleFunc("GET /app/installations/{id}", s.requireJWT(s.getInstallation))
	m.HandleFunc("POST /app/installations/{id}/access_tokens", s.requireJWT(s.createToken))
	m.HandleFunc("GET /app/hook/deliveries", s.requireJWT(s.listDeliveries))
	m.HandleFunc("POST /app/hook/deliveries/{id}/attempts", s.requireJWT(s.redeliver))

	const r = "/repos/{owner}/{repo}"
	m.HandleFunc("GET "+r+"/collaborators/{user}/permission", s.requireRepo(s.getPermission))
	m.HandleFunc("POST "+r+"/statuses/{sha}", s.requireRepo(s.createStatus))
	m.HandleFunc("GET "+r+"/commits/{sha}/pulls", s.requireRepo(s.listPullsForCommit))
	m.HandleFunc("GET "+r+"/pulls/{number}", s.requireRepo(s.getPullRequest))
	m.HandleFunc("GET "+r+"/commits/{sha}/statuses", s.requireRepo(s.listStatuses))
	m.HandleFunc("POST "+r+"/deployments", s.requireRepo(s.createDeployment))
	m.HandleFunc("GET "+r+"/deployments", s.requireRepo(s.listDeployments))
	m.HandleFunc("GET "+r+"/deployments/{id}", s.requireRepo(s.getDeployment))
	m.HandleFunc("POST "+r+"/deployments/{id}/statuses", s.requireRepo(s.createDeploymentStatus))
	m.HandleFunc("GET "+r+"/deployments/{id}/statuses", s.requireRepo(s.listDeploymentStatuses))
	m.HandleFunc("GET "+r+"/issues/{number}/comments", s.requireRepo(s.listComments))
	m.HandleFunc("POST "+r+"/issues/{number}/comments", s.requireRepo(s.createComment))
	m.HandleFunc("PATCH "+r+"/issues/comments/{id}", s.requireRepo(s.editComment))
	m.HandleFunc("POST "+r+"/issues/comments/{id}/reactions", s.requireRepo(s.createReaction))
	m.HandleFunc("GET /login/oauth/authorize", s.authorize)
	m.HandleFunc("POST /login/oauth/access_token", s.accessToken)
	m.HandleFunc("GET /user", s.getUser)
	s.manifestRoutes(m)
	m.HandleFunc("/", notFound)
	s.mux = m
}

// AddInstallation installs the App on account with the given repositories,
// each "owner/name" or just "name" (then owned by account). A repository
// already installed elsewhere moves to this installation.
func (s *Server) AddInstallation(id int64, account string, repos ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installations[id] = &installation{id: id, account: account}
	s.knowUser(account)
	for _, name := range repos {
		if !strings.Contains(name, "/") {
			name = account + "/" + name
		}
		k := repoKey(name)
		if rp, ok := s.repos[k]; ok {
			rp.installation = id
			continue
		}
		s.repos[k] = newRepo(name, s.newID(), id)
	}
}

// AddUser makes logins known GitHub users (commenters, collaborators).
func (s *Server) AddUser(logins ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logins {
		s.knowUser(l)
	}
}

// knowUser registers login and returns its user id. Callers hold s.mu.
func (s *Server) knowUser(login string) int64 {
	k := strings.ToLower(login)
	if id, ok := s.userIDs[k]; ok {
		return id
	}
	id := s.newID()
	s.userIDs[k] = id
	return id
}

// botLogin is the login of the App's bot user.
func (s *Server) botLogin() string { return s.Slug + "[bot]" }

// userJSON renders a user. Callers hold s.mu.
func (s *Server) userJSON(login string) map[string]any {
	typ := "User"
	if login == s.botLogin() {
		typ = "Bot"
	}
	id := s.knowUser(login)
	return map[string]any{
		"login": login, "id": id, "node_id": fmt.Sprintf("U_%d", id), "type": typ, "site_admin": false,
		"url": s.URL + "users/" + login, "html_url": "https://github.com/" + login,
	}
}

// appJSON renders the App. Callers hold s.mu.
func (s *Server) appJSON() map[string]any {
	return map[string]any{
		"id": s.AppID, "slug": s.Slug, "node_id": fmt.Sprintf("A_%d", s.AppID), "name": "Keystone Test",
		"owner": s.userJSON("keystone-app"), "html_url": "https://github.com/apps/" + s.Slug,
		"external_url": "https://keystone.example", "description": "Fake App of githubtest",
		"created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
		"permissions": map[string]string{
			"contents": "read", "metadata": "read", "statuses": "write", "issues": "write", "pull_requests": "write",
			"deployments": "write",
		},
		"events": []string{"push", "issue_comment", "installation", "installation_repositories", "pull_request"},
	}
}

func (s *Server) getApp(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.appJSON())
}

// lookupInstallation returns the installation named by the path's {id}.
// Callers hold s.mu.
func (s *Server) lookupInstallation(r *http.Request) *installation {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	return s.installations[id]
}

func (s *Server) getInstallation(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.lookupInstallation(r)
	if in == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, s.installationJSON(in))
}

// installationJSON renders an installation. Callers hold s.mu.
func (s *Server) installationJSON(in *installation) map[string]any {
	return map[string]any{
		"id": in.id, "account": s.userJSON(in.account), "app_id": s.AppID, "app_slug": s.Slug,
		"target_type": "Organization", "repository_selection": "selected",
		"permissions": s.appJSON()["permissions"],
	}
}

// listInstallations is GET /app/installations, by id, paginated.
func (s *Server) listInstallations(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(s.installations))
	lo, hi := s.paginate(w, r, len(ids))
	out := make([]map[string]any, 0, hi-lo)
	for _, id := range ids[lo:hi] {
		out = append(out, s.installationJSON(s.installations[id]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.lookupInstallation(r)
	if in == nil {
		notFound(w, r)
		return
	}
	tok, exp := s.issueToken(in.id, s.now())
	writeJSON(w, http.StatusCreated, map[string]any{
		"token": tok, "expires_at": timestamp(exp),
		"permissions": s.appJSON()["permissions"], "repository_selection": "selected",
	})
}

// Delivery is one delivery of the App's webhook, as GET /app/hook/deliveries
// lists it.
type Delivery struct {
	ID             int64
	GUID           string
	DeliveredAt    time.Time
	Redelivery     bool
	Duration       float64
	Status         string
	StatusCode     int
	Event          string
	Action         string
	InstallationID int64
	RepositoryID   int64
}

// AddDelivery records a delivery and returns it completed: a fresh ID when
// zero, a random GUID when empty, DeliveredAt now when zero, StatusCode 200
// when zero and Status "OK" (2xx) or "Invalid HTTP Response: N" when empty.
func (s *Server) AddDelivery(d Delivery) Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addDelivery(d)
}

func (s *Server) addDelivery(d Delivery) Delivery {
	if d.ID == 0 {
		d.ID = s.newID()
	}
	s.nextID = max(s.nextID, d.ID)
	if d.GUID == "" {
		d.GUID = newGUID()
	}
	if d.DeliveredAt.IsZero() {
		d.DeliveredAt = time.Now()
	}
	if d.StatusCode == 0 {
		d.StatusCode = http.StatusOK
	}
	if d.Status == "" {
		d.Status = "OK"
		if d.StatusCode/100 != 2 {
			d.Status = fmt.Sprintf("Invalid HTTP Response: %d", d.StatusCode)
		}
	}
	s.deliveries = append(s.deliveries, d)
	return d
}

// Deliveries returns every delivery, redeliveries included, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// Redelivered returns the deliveries made by POST .../attempts, in order.
func (s *Server) Redelivered() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.redelivered)
}

// OnRedeliver sets fn to be called with the new delivery (same GUID,
// Redelivery true) each time a redelivery is requested, after the 202 has
// been sent, so that a test can send the webhook again.
func (s *Server) OnRedeliver(fn func(d Delivery)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRedeliver = fn
}

func deliveryJSON(d Delivery) map[string]any {
	nullable := func(v any, zero bool) any {
		if zero {
			return nil
		}
		return v
	}
	return map[string]any{
		"id": d.ID, "guid": d.GUID, "delivered_at": timestamp(d.DeliveredAt), "redelivery": d.Redelivery,
		"duration": d.Duration, "status": d.Status, "status_code": d.StatusCode, "event": d.Event,
		"action":          nullable(d.Action, d.Action == ""),
		"installation_id": nullable(d.InstallationID, d.InstallationID == 0),
		"repository_id":   nullable(d.RepositoryID, d.RepositoryID == 0),
		"throttled_at":    nil,
	}
}

// listDeliveries lists deliveries newest first, per_page at a time (default
// 30, at most 100). The cursor is opaque to clients: "v1_<id>" starts the
// page at that delivery, so new deliveries do not shift later pages.
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 30
	}
	per = min(per, 100)
	from := int64(-1)
	if c := q.Get("cursor"); c != "" {
		id, err := strconv.ParseInt(strings.TrimPrefix(c, "v1_"), 10, 64)
		if err != nil || !strings.HasPrefix(c, "v1_") {
			writeError(w, http.StatusBadRequest, "Invalid cursor")
			return
		}
		from = id
	}
	s.mu.Lock()
	all := slices.Clone(s.deliveries)
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b Delivery) int { return cmp.Compare(b.ID, a.ID) })
	page := make([]map[string]any, 0, per)
	for _, d := range all {
		if from >= 0 && d.ID > from {
			continue
		}
		if len(page) == per {
			q.Set("cursor", fmt.Sprintf("v1_%d", d.ID))
			q.Set("per_page", strconv.Itoa(per))
			w.Header().Set("Link", "<"+s.srv.URL+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
			break
		}
		page = append(page, deliveryJSON(d))
	}
	writeJSON(w, http.StatusOK, page)
}

// redeliver answers 202 and records a new delivery of the same webhook.
func (s *Server) redeliver(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.deliveries, func(d Delivery) bool { return d.ID == id })
	if i < 0 {
		notFound(w, r)
		return
	}
	d := s.deliveries[i]
	d.ID, d.DeliveredAt, d.Redelivery, d.Status, d.StatusCode = 0, time.Time{}, true, "", 0
	d = s.addDelivery(d)
	s.redelivered = append(s.redelivered, d)
	if fn := s.onRedeliver; fn != nil {
		runAfter(r, func() { fn(d) })
	}
	writeJSON(w, http.StatusAccepted, map[string]any{})
}

// newGUID returns a random delivery GUID shaped like GitHub's (a UUID).
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
