package setup

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Manifest is the GitHub App manifest sent to GitHub, as app.yml has it but
// for the URLs, which point at this Keystone.
type Manifest struct {
	Name               string            `json:"name" yaml:"name"`
	Description        string            `json:"description,omitempty" yaml:"description"`
	URL                string            `json:"url" yaml:"url"`
	HookAttributes     HookAttributes    `json:"hook_attributes" yaml:"hook_attributes"`
	RedirectURL        string            `json:"redirect_url" yaml:"-"`
	CallbackURLs       []string          `json:"callback_urls,omitempty" yaml:"callback_urls"`
	Public             bool              `json:"public" yaml:"public"`
	DefaultEvents      []string          `json:"default_events" yaml:"default_events"`
	DefaultPermissions map[string]string `json:"default_permissions" yaml:"default_permissions"`
}

// HookAttributes is where GitHub sends webhooks.
type HookAttributes struct {
	URL    string `json:"url" yaml:"url"`
	Active bool   `json:"active" yaml:"active"`
}

// BuildManifest reads app.yml and points its URLs at publicURL: the home
// page, /webhooks/github, the sign-in callback and setup's own callback.
func BuildManifest(appYML []byte, publicURL *url.URL) (Manifest, error) {
	var m Manifest
	if err := yaml.Unmarshal(appYML, &m); err != nil {
		return Manifest{}, fmt.Errorf("read app.yml: %w", err)
	}
	if m.Name == "" || len(m.DefaultEvents) == 0 || len(m.DefaultPermissions) == 0 {
		return Manifest{}, fmt.Errorf("read app.yml: name, default_events and default_permissions are required")
	}
	base := strings.TrimSuffix(publicURL.String(), "/")
	m.URL = base
	m.HookAttributes = HookAttributes{URL: base + "/webhooks/github", Active: true}
	m.RedirectURL = base + "/setup/callback"
	m.CallbackURLs = []string{base + "/login/github/callback"}
	return m, nil
}

// JSON is the manifest as the form field GitHub reads.
func (m Manifest) JSON() string {
	b, _ := json.Marshal(m) // plain strings, maps and slices: cannot fail
	return string(b)
}
