package github_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAppManifest checks app.yml against SPEC §3: the events Keystone acts on,
// the least permissions that work, and the routes Keystone serves.
func TestAppManifest(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "app.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Name           string `yaml:"name"`
		Description    string `yaml:"description"`
		URL            string `yaml:"url"`
		HookAttributes struct {
			URL string `yaml:"url"`
		} `yaml:"hook_attributes"`
		CallbackURLs       []string          `yaml:"callback_urls"`
		DefaultEvents      []string          `yaml:"default_events"`
		DefaultPermissions map[string]string `yaml:"default_permissions"`
	}
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("app.yml: %v", err)
	}
	if m.Name == "" || m.Description == "" || m.URL == "" {
		t.Errorf("name, description and url are required: %+v", m)
	}
	if !strings.HasSuffix(m.HookAttributes.URL, "/webhooks/github") {
		t.Errorf("hook_attributes.url = %q, want Keystone's /webhooks/github", m.HookAttributes.URL)
	}
	for _, u := range m.CallbackURLs {
		if !strings.HasSuffix(u, "/login/github/callback") {
			t.Errorf("callback url %q is not the status page's /login/github/callback", u)
		}
	}
	events := slices.Sorted(slices.Values(m.DefaultEvents))
	if want := []string{"installation", "installation_repositories", "issue_comment", "pull_request", "push"}; !reflect.DeepEqual(events, want) {
		t.Errorf("default_events = %v, want %v", events, want)
	}
	want := map[string]string{"contents": "read", "metadata": "read", "statuses": "write", "issues": "write", "pull_requests": "write",
		"deployments": "write"}
	if !reflect.DeepEqual(m.DefaultPermissions, want) {
		t.Errorf("default_permissions = %v, want exactly %v", m.DefaultPermissions, want)
	}
}
