// Package keystoneyml reads a repository's .keystone.yml (SPEC §5). Parse is
// strict: an unknown key, a value of the wrong type or out of range, a bad
// name or a duplicate is a Problem naming its line, and nothing is guessed.
// Defaults are applied to what is valid.
package keystoneyml

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// FileName is where Keystone looks for the configuration, at the root of the
// pushed commit.
const FileName = ".keystone.yml"

// MaxSize bounds the file Keystone reads; a larger one is refused.
const MaxSize = 64 << 10

// Defaults (SPEC §5).
const (
	DefaultDockerfile         = "Dockerfile"
	DefaultContext            = "."
	DefaultHealthCheckTimeout = 30 * time.Second
	DefaultMemory             = 512 << 20
	DefaultCPUs               = 1.0
	DefaultDrainTimeout       = 30 * time.Second
)

// Limits of the values Keystone accepts.
const (
	MinHealthCheckTimeout = time.Second
	MaxHealthCheckTimeout = 10 * time.Minute
	MinMemory             = 6 << 20 // Docker refuses less
	MaxMemory             = 1 << 40
	MaxCPUs               = 256.0
	MinDrainTimeout       = time.Second
	MaxDrainTimeout       = 10 * time.Minute
	MaxKeepPrevious       = 24 * time.Hour
	maxEnvValue           = 32 << 10
	maxPath               = 255
)

// File is a parsed, valid .keystone.yml.
type File struct {
	Apps []App `json:"apps"`
}

// App is one entry of the apps list with the defaults applied. Its JSON form
// is what Keystone stores as an app's and a deployment's configuration.
type App struct {
	Name            string `json:"name"`
	Branch          string `json:"branch"`
	Dockerfile      string `json:"dockerfile"`
	Context         string `json:"context"`
	Port            int    `json:"port"`
	HealthCheckPath string `json:"health_check_path,omitempty"`
	// HealthCheckTimeout bounds the health check (JSON: nanoseconds).
	HealthCheckTimeout time.Duration     `json:"health_check_timeout"`
	Env                map[string]string `json:"env,omitempty"`
	Memory             int64             `json:"memory"` // bytes
	CPUs               float64           `json:"cpus"`
	// Domains are the host names the app claims in domain mode (SPEC §13),
	// in file order; the first is its URL.
	Domains []string `json:"domains,omitempty"`
	// BuildSecrets name the app's secrets a build may mount with
	// RUN --mount=type=secret,id=NAME (never build arguments).
	BuildSecrets []string `json:"build_secrets,omitempty"`
	// Preview: every same-repository pull request into Branch gets a
	// preview (SPEC §14). Only the file on the app's branch decides it.
	Preview bool `json:"preview,omitempty"`
	// DrainTimeout bounds how long the replaced version's in-flight
	// requests may take at a switch (SPEC §13); 0 means
	// DefaultDrainTimeout (JSON: nanoseconds). See Drain.
	DrainTimeout time.Duration `json:"drain_timeout,omitempty"`
	// KeepPrevious is how long the replaced container stays running,
	// unrouted, after a successful update in domain mode, so that a
	// rollback to it is only a switch of routes; 0 is off.
	KeepPrevious time.Duration `json:"keep_previous,omitempty"`
}

// Drain is the app's drain timeout with the default applied.
func (a App) Drain() time.Duration {
	if a.DrainTimeout <= 0 {
		return DefaultDrainTimeout
	}
	return a.DrainTimeout
}

// FormatMemory writes a byte count the way .keystone.yml does: 4g, 512m.
func FormatMemory(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%d", n)
}

// HealthCheck describes the check in words, e.g. "GET /healthz"; "" when the
// app has no health_check_path.
func (a App) HealthCheck() string {
	if a.HealthCheckPath == "" {
		return ""
	}
	return "GET " + a.HealthCheckPath
}

// EnvNames returns the names of Env in sorted order.
func (a App) EnvNames() []string {
	names := make([]string, 0, len(a.Env))
	for k := range a.Env {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// App returns the entry named name, and whether there is one.
func (f *File) App(name string) (App, bool) {
	for _, a := range f.Apps {
		if a.Name == name {
			return a, true
		}
	}
	return App{}, false
}

// Tracking returns the apps whose branch is branch, in file order.
func (f *File) Tracking(branch string) []App {
	var out []App
	for _, a := range f.Apps {
		if a.Branch == branch {
			out = append(out, a)
		}
	}
	return out
}

// DecodeApp reads an App from its stored JSON form.
func DecodeApp(raw []byte) (App, error) {
	var a App
	if err := json.Unmarshal(raw, &a); err != nil {
		return App{}, fmt.Errorf("decode stored app configuration: %w", err)
	}
	if a.Name == "" || a.Port == 0 {
		return App{}, fmt.Errorf("decode stored app configuration: no name or port")
	}
	return a, nil
}

// Problem is one thing wrong with the file. Line is 1-based; 0 when the
// problem is not on one line (the file is too large, not UTF-8, empty).
type Problem struct {
	Line    int
	Message string
}

func (p Problem) String() string {
	if p.Line <= 0 {
		return p.Message
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Message)
}

// Error lists every problem found, in line order. Its message is the first
// problem, which is what a commit status has room for.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return "invalid " + FileName
	}
	return e.Problems[0].String()
}

// Lines returns every problem as "line N: message".
func (e *Error) Lines() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.String()
	}
	return out
}

// clipValue shortens a value quoted back in a problem so that one long value
// cannot fill a commit status.
func clipValue(s string) string {
	const max = 40
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
