package conversation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/templates"
)

// Links says where the links Keystone writes to GitHub point.
type Links struct {
	// PublicURL is Keystone's base URL (KEYSTONE_PUBLIC_URL).
	PublicURL string
	// GitHubWebURL is GitHub's web base URL (KEYSTONE_GITHUB_WEB_URL).
	GitHubWebURL string
	// Apps says where apps are served (KEYSTONE_APP_HOST, the apps domain).
	Apps appurl.Config
}

// DeploymentURL is the status page of deployment id.
func (l Links) DeploymentURL(id int64) string {
	return strings.TrimSuffix(l.PublicURL, "/") + "/deployments/" + strconv.FormatInt(id, 10)
}

// CommitURL is the GitHub page of a commit.
func (l Links) CommitURL(owner, repo, sha string) string {
	return strings.TrimSuffix(l.GitHubWebURL, "/") + "/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/commit/" + sha
}

// AppURL is where app serves (SPEC §6, §13, §14; appurl.Config.URL).
func (l Links) AppURL(app store.App) string { return l.Apps.URL(app) }

// renderer fills the comment templates.
type renderer struct {
	links Links
	tmpl  *template.Template
}

func newRenderer(links Links) (*renderer, error) {
	t, err := template.New("comments").Funcs(template.FuncMap{
		"md": markdownText, "code": codeText, "mention": mention,
	}).ParseFS(templates.Comments, "comments/*.md")
	if err != nil {
		return nil, fmt.Errorf("parse comment templates: %w", err)
	}
	return &renderer{links: links, tmpl: t}, nil
}

func (r *renderer) render(name string, data any) (string, error) {
	var b bytes.Buffer
	if err := r.tmpl.ExecuteTemplate(&b, name+".md", data); err != nil {
		return "", fmt.Errorf("render %s comment: %w", name, err)
	}
	return strings.TrimSpace(b.String()), nil
}

// deploymentView is what deployment.md shows.
type deploymentView struct {
	Headline                    string
	ShortSHA, CommitURL, Branch string
	Actor, Trigger, Description string
	Finished                    bool
	AppURL, Health, LogsURL     string
}

// deployment renders the comment about deployment d of app.
func (r *renderer) deployment(app store.App, d store.Deployment) (string, error) {
	branch := d.Ref
	branch = strings.TrimPrefix(branch, "refs/heads/")
	if branch == "" && d.Trigger == store.TriggerPush {
		branch = app.Branch
	}
	v := deploymentView{
		Headline: headline(app, d), ShortSHA: short(d.SHA), CommitURL: r.links.CommitURL(app.Owner, app.Repo, d.SHA),
		Branch: branch, Actor: d.Actor, Trigger: d.Trigger, Description: describe(d), Finished: d.Finished(),
		AppURL: r.links.AppURL(app), Health: healthResult(app, d), LogsURL: r.links.DeploymentURL(d.ID),
	}
	if d.Finished() && d.State != store.StateSucceeded && app.CurrentDeploymentID == 0 {
		v.AppURL = ""
	}
	return r.render("deployment", v)
}

// kindWords are how a kind of deployment is said: doing, done, noun.
var kindWords = map[string][3]string{
	store.KindDeploy:   {"Deploying", "Deployed", "Deploy"},
	store.KindUpdate:   {"Deploying", "Deployed", "Deploy"},
	store.KindRollback: {"Rolling back", "Rolled back", "Rollback"},
	store.KindRedeploy: {"Redeploying", "Redeployed", "Redeploy"},
}

func words(kind string) [3]string {
	if w, ok := kindWords[kind]; ok {
		return w
	}
	return kindWords[store.KindDeploy]
}

func headline(app store.App, d store.Deployment) string {
	w := words(d.Kind)
	prep := "at"
	if d.Kind == store.KindRollback {
		prep = "to"
	}
	subject := fmt.Sprintf("**%s** %s `%s`", app.Name, prep, short(d.SHA))
	switch d.State {
	case store.StateQueued:
		return fmt.Sprintf("⏳ %s %s: queued", w[0], subject)
	case store.StateRunning:
		return fmt.Sprintf("🔄 %s %s", w[0], subject)
	case store.StateSucceeded:
		return fmt.Sprintf("✅ %s %s", w[1], subject)
	case store.StateFailed:
		return fmt.Sprintf("❌ %s of %s failed", w[2], subject)
	case store.StateSuperseded:
		return fmt.Sprintf("⏭️ %s of %s was not run: a newer push came first", w[2], subject)
	}
	return fmt.Sprintf("⚠️ %s of %s did not complete", w[2], subject)
}

// healthResult says how the deployment's health check went.
func healthResult(app store.App, d store.Deployment) string {
	check := "the container"
	if path := healthPath(app); path != "" {
		check = "GET " + path
	}
	switch {
	case d.HealthError != "":
		return "unhealthy: " + d.HealthError
	case d.HealthStatus > 0:
		return fmt.Sprintf("healthy: %s answered %d after %s", check, d.HealthStatus, millis(d.HealthMS))
	case d.HealthMS > 0:
		return fmt.Sprintf("healthy: %s running after %s", check, millis(d.HealthMS))
	}
	return "not checked"
}

// healthPath reads health_check_path from the app's stored config.
func healthPath(app store.App) string {
	var cfg struct {
		Path string `json:"health_check_path"`
	}
	if json.Unmarshal(app.Config, &cfg) != nil {
		return ""
	}
	return cfg.Path
}

func millis(ms int) string {
	return fmt.Sprintf("%.1fs", (time.Duration(ms) * time.Millisecond).Seconds())
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// markdownText makes text written by others (errors, reasons, names) show
// as itself: no markup, no links, no HTML (so no hidden marker), no
// @-mention, one line.
func markdownText(s string) string {
	s = clip(strings.Join(strings.Fields(s), " "), 1000)
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '@':
			b.WriteString("@\u200b") // no notification
		case '\\', '`', '*', '_', '[', ']', '|', '~':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// codeText makes text safe inside a single-backtick code span.
func codeText(s string) string { return clip(strings.Join(strings.Fields(s), " "), 200) }

var loginPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?$`)

// mention is @login for a GitHub login, or the name as text for anyone else.
func mention(login string) string {
	if loginPattern.MatchString(login) {
		return "@" + login
	}
	return markdownText(login)
}
