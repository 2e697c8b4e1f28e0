package githubtest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Creating the App from its manifest (the flow GitHub documents as "Creating
// a GitHub App from a manifest"): a browser posts the manifest to
// /settings/apps/new (or /organizations/ORG/settings/apps/new) with a state;
// GitHub shows what will be created; "Create GitHub App" redirects to the
// manifest's redirect_url with a one-time code and the state; the code is
// converted, without authentication, by POST /app-manifests/{code}/conversions
// into the App's id, private key, webhook secret and OAuth client. The App
// created is the fake's one App (Server.AppID and PrivateKeyPEM).

// ManifestCodeTTL is how long a manifest code converts (GitHub: one hour).
const ManifestCodeTTL = time.Hour

// manifestCode is a code handed to the browser and not yet converted.
type manifestCode struct {
	manifest Manifest
	owner    string
	expires  time.Time
}

// Manifest is the part of an App manifest the fake checks and remembers.
type Manifest struct {
	Name           string `json:"name"`
	URL            string `json:"url"`
	HookAttributes struct {
		URL    string `json:"url"`
		Active *bool  `json:"active,omitempty"`
	} `json:"hook_attributes"`
	RedirectURL        string            `json:"redirect_url"`
	CallbackURLs       []string          `json:"callback_urls"`
	Public             bool              `json:"public"`
	DefaultEvents      []string          `json:"default_events"`
	DefaultPermissions map[string]string `json:"default_permissions"`
}

// manifestState is the fake's manifest flow state, under Server.mu.
type manifestState struct {
	codes    map[string]*manifestCode
	created  *Manifest // the App's manifest once converted
	owner    string
	secret   string // the webhook secret GitHub generated
	refuse   *conversionRefusal
	install  *installTarget
	installs int
}

type conversionRefusal struct {
	status  int
	message string
}

var orgPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)

func (s *Server) manifestRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /settings/apps/new", s.newAppForm)
	m.HandleFunc("POST /organizations/{org}/settings/apps/new", s.newAppForm)
	m.HandleFunc("POST /settings/apps/new/create", s.createApp)
	m.HandleFunc("POST /app-manifests/{code}/conversions", s.convertManifest)
	m.HandleFunc("GET /apps/{slug}/installations/new", s.installPage)
	m.HandleFunc("POST /apps/{slug}/installations/new", s.install)
}

// installTarget is what "Install" installs the App on (SetInstallTarget).
type installTarget struct {
	id      int64
	account string
	repos   []string
}

// SetInstallTarget makes the fake's "Install" button install the App as
// installation id on account's repos (see AddInstallation).
func (s *Server) SetInstallTarget(id int64, account string, repos ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests.install = &installTarget{id: id, account: account, repos: repos}
}

// Installs counts presses of "Install".
func (s *Server) Installs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.manifests.installs
}

var installPage = template.Must(template.New("install").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Install {{.Slug}} · fake GitHub</title></head>
<body><h1>Install {{.Slug}}</h1>
<p>on <strong>{{.Account}}</strong>: {{range .Repos}}<code>{{.}}</code> {{end}}</p>
<form method="post"><button id="install" type="submit">Install</button></form>
</body></html>`))

// installPage is GitHub's "Install App" page of the created App.
func (s *Server) installPage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manifests.created == nil || r.PathValue("slug") != s.Slug || s.manifests.install == nil {
		http.Error(w, "404: no such App (githubtest: create it, and call SetInstallTarget)", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = installPage.Execute(w, map[string]any{"Slug": s.Slug, "Account": s.manifests.install.account, "Repos": s.manifests.install.repos})
}

// install is "Install": the installation is made, and the browser goes to
// the App's home page (its manifest's url), as GitHub does without a setup URL.
func (s *Server) install(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.manifests.created == nil || r.PathValue("slug") != s.Slug || s.manifests.install == nil {
		s.mu.Unlock()
		http.Error(w, "404: no such App", http.StatusNotFound)
		return
	}
	in, home := *s.manifests.install, s.manifests.created.URL
	s.manifests.installs++
	s.mu.Unlock()
	s.AddInstallation(in.id, in.account, in.repos...)
	http.Redirect(w, r, home, http.StatusFound)
}

// validate applies GitHub's manifest rules that matter to Keystone.
func (m Manifest) validate() []string {
	var bad []string
	if strings.TrimSpace(m.Name) == "" || len(m.Name) > 34 {
		bad = append(bad, "name must be 1 to 34 characters")
	}
	for field, u := range map[string]string{"url": m.URL, "hook_attributes.url": m.HookAttributes.URL, "redirect_url": m.RedirectURL} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad = append(bad, field+" must be an absolute http(s) URL")
		}
	}
	return bad
}

var newAppPage = template.Must(template.New("new").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Create GitHub App · fake GitHub</title></head>
<body><h1>Create GitHub App {{.Name}}</h1>
<p>Owner: <strong id="owner">{{.Owner}}</strong></p>
<p>Webhook URL: <code id="hook">{{.Hook}}</code></p>
<p>Events: {{range .Events}}<code>{{.}}</code> {{end}}</p>
<form method="post" action="/settings/apps/new/create">
<input type="hidden" name="manifest" value="{{.Manifest}}">
<input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="owner" value="{{.Owner}}">
<button id="create" type="submit">Create GitHub App for {{.Owner}}</button>
</form></body></html>`))

// newAppForm is the browser posting a manifest: 422 for an invalid one, else
// GitHub's confirmation page.
func (s *Server) newAppForm(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	var m Manifest
	if err := json.Unmarshal([]byte(r.PostForm.Get("manifest")), &m); err != nil {
		http.Error(w, "Invalid GitHub App configuration: the manifest is not JSON", http.StatusUnprocessableEntity)
		return
	}
	if bad := m.validate(); len(bad) > 0 {
		http.Error(w, "Invalid GitHub App configuration: "+strings.Join(bad, "; "), http.StatusUnprocessableEntity)
		return
	}
	s.mu.Lock()
	owner := s.oauth.signedIn
	s.mu.Unlock()
	if org := r.PathValue("org"); org != "" {
		if !orgPattern.MatchString(org) {
			http.Error(w, "404: no such organization", http.StatusNotFound)
			return
		}
		owner = org
	}
	if owner == "" {
		http.Error(w, "Sign in to GitHub to continue (githubtest: call SignIn)", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = newAppPage.Execute(w, map[string]any{
		"Name": m.Name, "Owner": owner, "Hook": m.HookAttributes.URL, "Events": m.DefaultEvents,
		"Manifest": r.PostForm.Get("manifest"), "State": r.URL.Query().Get("state") + r.PostForm.Get("state"),
	})
}

// createApp is "Create GitHub App": a one-time code, and back to the
// manifest's redirect_url with it and the state.
func (s *Server) createApp(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	var m Manifest
	if err := json.Unmarshal([]byte(r.PostForm.Get("manifest")), &m); err != nil || len(m.validate()) > 0 {
		http.Error(w, "Invalid GitHub App configuration", http.StatusUnprocessableEntity)
		return
	}
	code := strings.ToLower(rand.Text())[:20]
	s.mu.Lock()
	s.manifestInit()
	s.manifests.codes[code] = &manifestCode{manifest: m, owner: r.PostForm.Get("owner"), expires: time.Now().Add(ManifestCodeTTL)}
	s.mu.Unlock()
	v := url.Values{"code": {code}}
	if st := r.PostForm.Get("state"); st != "" {
		v.Set("state", st)
	}
	http.Redirect(w, r, m.RedirectURL+"?"+v.Encode(), http.StatusFound)
}

// convertManifest is POST /app-manifests/{code}/conversions: 404 for an
// unknown, used or expired code; 201 with the App's credentials otherwise.
func (s *Server) convertManifest(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifestInit()
	if rf := s.manifests.refuse; rf != nil {
		s.manifests.refuse = nil
		if rf.status == http.StatusUnprocessableEntity {
			writeValidation(w, fieldError{Resource: "Integration", Code: "custom", Message: rf.message})
		} else {
			writeError(w, rf.status, rf.message)
		}
		return
	}
	c, ok := s.manifests.codes[r.PathValue("code")]
	delete(s.manifests.codes, r.PathValue("code")) // good once, whatever happens
	if !ok || !time.Now().Before(c.expires) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	m := c.manifest
	s.manifests.created = &m
	s.manifests.owner = c.owner
	s.manifests.secret = strings.ToLower(rand.Text())
	clientID := fmt.Sprintf("Iv1.%016x", s.AppID)
	clientSecret := strings.ToLower(rand.Text() + rand.Text())
	callback := m.RedirectURL
	if len(m.CallbackURLs) > 0 {
		callback = m.CallbackURLs[0]
	}
	s.oauthInit()
	s.oauth.apps[clientID] = oauthApp{secret: clientSecret, callback: callback}
	body := s.appJSON()
	body["name"] = m.Name
	body["owner"] = s.userJSON(c.owner)
	body["html_url"] = s.AppHTMLURL()
	body["pem"] = string(s.PrivateKeyPEM)
	body["webhook_secret"] = s.manifests.secret
	body["client_id"] = clientID
	body["client_secret"] = clientSecret
	writeJSON(w, http.StatusCreated, body)
}

// manifestInit makes the maps. Callers hold s.mu.
func (s *Server) manifestInit() {
	if s.manifests.codes == nil {
		s.manifests.codes = map[string]*manifestCode{}
	}
}

// AppHTMLURL is the App's page on the fake's web side.
func (s *Server) AppHTMLURL() string { return s.WebURL() + "/apps/" + s.Slug }

// CreatedApp returns the manifest the App was created from, its owner and
// the webhook secret GitHub generated for it; ok is false until a code was
// converted.
func (s *Server) CreatedApp() (m Manifest, owner, webhookSecret string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manifests.created == nil {
		return Manifest{}, "", "", false
	}
	return *s.manifests.created, s.manifests.owner, s.manifests.secret, true
}

// ExpireManifestCodes makes every code handed out so far expired, as an
// hour passing would.
func (s *Server) ExpireManifestCodes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.manifests.codes {
		c.expires = time.Now().Add(-time.Second)
	}
}

// RefuseNextConversion makes the next conversion answer status (404 or 422)
// with message, as GitHub does for a code it will not convert.
func (s *Server) RefuseNextConversion(status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests.refuse = &conversionRefusal{status: status, message: message}
}
