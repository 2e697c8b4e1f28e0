package web

import (
	"strings"
	"testing"
	"time"
)

// fullViews returns every page's view model with every field set, so that
// rendering walks every branch of every template that shows data.
func fullViews() []view {
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	t := at(now, now.Add(-3*time.Minute))
	linkedTime := t
	linkedTime.Href = `/deployments/7?"><script>`
	user := &UserView{Name: "ada", Role: "admin", CanDeploy: true, IsAdmin: true}
	chrome := func(title, nav string) Chrome {
		return Chrome{Title: title, User: user, CSRF: "csrf-token-value", Nav: nav}
	}
	commit := Commit{Short: "abc1234", Full: strings.Repeat("a", 40), URL: "https://github.com/o/r/commit/" + strings.Repeat("a", 40)}
	hostile := `<script>alert("x")</script>`
	log := []LogLine{logLine(1, "plain"), logLine(2, "\x1b[1;31m"+hostile+"\x1b[0m")}
	row := DeploymentRow{ID: 7, Path: "/deployments/7", Number: Link{"/deployments/7", "#7"}, Kind: "rollback", Commit: commit, Actor: hostile, Trigger: "page",
		State: Badge{"succeeded", "ok"}, Description: hostile, Health: "healthy (HTTP 200 after 1.2s)", Duration: "12.3s", Queued: t}
	return []view{
		&LoginPage{Chrome: Chrome{Title: "Sign in", CSRF: "login-token"}, Next: "/apps/o/r/web", Name: hostile,
			Error: hostile, Notice: "You are signed out.", GitHub: true, GitHubURL: "/login/github?next=%2F"},
		&AppsPage{Chrome: chrome("Apps", "apps"), Apps: []AppRow{{App: Link{"/apps/o/r/web", hostile},
			Repository: Link{"https://github.com/o/r", "o/r"}, Branch: "main", Serving: &commit, State: Badge{"running", "run"}, Locked: true,
			URL: &Link{"http://apps.example:9000/", hostile}, Health: hostile, LastDeploy: &linkedTime}}},
		&AppsPage{Chrome: chrome("Apps", "apps")},
		&AppPage{Chrome: chrome("o/r/web", "apps"), Owner: "o", Repo: "r", Name: "web", Path: "/apps/o/r/web",
			RepoURL: "https://github.com/o/r", Branch: "main", URL: "http://apps.example:9000/", Removed: true, Serving: &row,
			Lock:      &LockView{By: "octocat", Reason: hostile, At: &t},
			Container: ContainerView{Available: true, State: Badge{"running", "ok"}, Image: "img:1", StartedAt: &t, Output: log},
			History:   []DeploymentRow{row}, OlderPath: "/apps/o/r/web?before=7", NewestPath: "/apps/o/r/web",
			Redeploy:           &ActionForm{Action: "/apps/o/r/web/redeploy", Label: "Redeploy abc1234"},
			Rollback:           &RollbackForm{Action: "/apps/o/r/web/rollback", Targets: []RollbackTarget{{ID: 6, Label: hostile, Selected: true}}},
			ActionsUnavailable: hostile,
			Secrets:            &SecretsView{Names: []string{"API_KEY"}, SetAction: "/apps/o/r/web/secrets", UnsetAction: "/apps/o/r/web/secrets/unset", Problem: hostile},
			Error:              hostile, Notice: "Secret saved."},
		&AppPage{Chrome: chrome("o/r/web", "apps"), Container: ContainerView{Problem: "Docker unreachable"}},
		&DeploymentPage{Chrome: chrome("Deployment #7", "apps"), Deployment: row, AppName: "o/r/web", AppPath: "/apps/o/r/web",
			Ref: "refs/heads/main", Target: &row, Steps: []StepRow{{Name: "build", Started: t, Duration: "4.0s", State: Badge{"failed", "bad"}, Error: hostile}},
			Started: &t, Finished: &t, Log: log, LogTruncated: true, LogCut: true, PlainLogPath: "/deployments/7/log",
			EventsPath: "/deployments/7/events?after=2"},
		&AuditPage{Chrome: chrome("Audit log", "audit"), Events: []AuditRow{{ID: 1, At: t, Actor: hostile, Action: "login.failed",
			Target: "user:x", Details: []KeyValue{{Key: "address", Value: hostile}}}}, OlderPath: "/audit?before=1", NewestPath: "/audit"},
		&AuditPage{Chrome: chrome("Audit log", "audit")},
		&UsersPage{Chrome: chrome("Users", "users"), Users: []UserRow{{Name: "ada", Role: "admin", GitHubLogin: hostile, Password: true, Added: t},
			{Name: "gh", Role: "viewer", GitHubLogin: "octocat", Added: t}}},
		&ErrorPage{Chrome: chrome("Not allowed", ""), Status: 403, Heading: "Not allowed", Message: hostile},
		&ErrorPage{Chrome: Chrome{Title: "Not found"}, Status: 404, Heading: "Not found", Message: "gone"},
	}
}

// TestEveryTemplateRendersFullData renders every page with every field set
// and checks that what came from outside is escaped and the structure is
// whole.
func TestEveryTemplateRendersFullData(t *testing.T) {
	static, err := loadStatic()
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsePages(static)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, v := range fullViews() {
		seen[v.template()] = true
		t.Run(v.template(), func(t *testing.T) {
			out, err := p.execute(v)
			if err != nil {
				t.Fatal(err)
			}
			html := string(out)
			for _, bad := range []string{`<script>alert`, "ZgotmplZ", "<no value>", "\x1b", "%!"} {
				if strings.Contains(html, bad) {
					t.Errorf("rendered page contains %q", bad)
				}
			}
			for _, want := range []string{"<!doctype html>", `<html lang="en">`, `name="viewport"`, `href="#main"`,
				`<main id="main"`, "</html>", "/static/app.css?v="} {
				if !strings.Contains(html, want) {
					t.Errorf("rendered page lacks %q", want)
				}
			}
			if v.chrome().User != nil && !strings.Contains(html, `value="csrf-token-value"`) {
				t.Error("a signed-in page has no CSRF token in its sign-out form")
			}
			if t.Failed() {
				t.Logf("%s", html)
			}
		})
	}
	for _, name := range []string{"login.html", "apps.html", "app.html", "deployment.html", "audit.html", "users.html", "error.html"} {
		if !seen[name] {
			t.Errorf("no full data rendered through %s", name)
		}
	}
}

// TestEveryFormControlHasALabel: inputs, selects and textareas that a
// person fills are labelled.
func TestEveryFormControlHasALabel(t *testing.T) {
	static, _ := loadStatic()
	p, err := parsePages(static)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range fullViews() {
		out, err := p.execute(v)
		if err != nil {
			t.Fatal(err)
		}
		html := string(out)
		for _, tag := range []string{"<input", "<select", "<textarea"} {
			for rest := html; ; {
				i := strings.Index(rest, tag)
				if i < 0 {
					break
				}
				elem := rest[i : i+strings.IndexByte(rest[i:], '>')]
				rest = rest[i+len(tag):]
				if strings.Contains(elem, `type="hidden"`) {
					continue
				}
				id := between(elem, `id="`, `"`)
				if id == "" || !strings.Contains(html, `<label for="`+id+`"`) {
					t.Errorf("%s: %s> has no label", v.template(), elem)
				}
			}
		}
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	return s[:strings.Index(s, end)]
}

// TestTemplatesUseNoInlineScriptOrStyle: the Content-Security-Policy
// forbids them, so a template using one would break in the browser.
func TestTemplatesUseNoInlineScriptOrStyle(t *testing.T) {
	static, _ := loadStatic()
	p, err := parsePages(static)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range fullViews() {
		out, _ := p.execute(v)
		html := string(out)
		for _, bad := range []string{"<script>", "style=", "<style", " onclick=", " onload=", "javascript:"} {
			if strings.Contains(html, bad) {
				t.Errorf("%s uses %q, which the Content-Security-Policy blocks", v.template(), bad)
			}
		}
	}
}
