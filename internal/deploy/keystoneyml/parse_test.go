package keystoneyml_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
)

// specExample is the example of SPEC §5, every key set.
const specExample = `apps:
  - name: web                 # [a-z0-9-]{1,40}, unique in the repository
    branch: main              # pushes to this branch deploy
    dockerfile: Dockerfile    # default Dockerfile, relative to context
    context: .                # default .
    port: 8080                # the port the container listens on (required)
    health_check_path: /healthz   # optional; GET must answer 2xx/3xx
    health_check_timeout: 30s     # default 30s
    env:                      # plain, non-secret variables
      LOG_LEVEL: info
    memory: 512m              # default 512m
    cpus: 1.0                 # default 1.0
`

func TestParseValid(t *testing.T) {
	cases := []struct {
		name, yaml, defaultBranch string
		want                      []keystoneyml.App
	}{
		{"spec example", specExample, "", []keystoneyml.App{{
			Name: "web", Branch: "main", Dockerfile: "Dockerfile", Context: ".", Port: 8080,
			HealthCheckPath: "/healthz", HealthCheckTimeout: 30 * time.Second,
			Env: map[string]string{"LOG_LEVEL": "info"}, Memory: 512 << 20, CPUs: 1,
		}}},
		{"preview", "apps:\n  - name: api\n    port: 3000\n    preview: true\n", "main", []keystoneyml.App{{
			Name: "api", Branch: "main", Dockerfile: "Dockerfile", Context: ".", Port: 3000,
			HealthCheckTimeout: 30 * time.Second, Memory: 512 << 20, CPUs: 1, Preview: true,
		}}},
		{"defaults and default branch", "apps:\n  - name: api\n    port: 3000\n", "trunk", []keystoneyml.App{{
			Name: "api", Branch: "trunk", Dockerfile: "Dockerfile", Context: ".", Port: 3000,
			HealthCheckTimeout: 30 * time.Second, Memory: 512 << 20, CPUs: 1,
		}}},
		{"two apps, values of every form", `
apps:
  - name: web
    branch: release/1.x
    context: ./services/web/
    dockerfile: docker/Dockerfile.prod
    port: 80
    health_check_timeout: 2m
    env: {WORKERS: 4, DEBUG: true, EMPTY: "", RATIO: 0.5}
    memory: 1G
    cpus: 2
  - name: worker-2
    branch: main
    port: 9000
    memory: 268435456
    cpus: 0.25
`, "", []keystoneyml.App{
			{Name: "web", Branch: "release/1.x", Dockerfile: "docker/Dockerfile.prod", Context: "services/web", Port: 80,
				HealthCheckTimeout: 2 * time.Minute, Memory: 1 << 30, CPUs: 2,
				Env: map[string]string{"WORKERS": "4", "DEBUG": "true", "EMPTY": "", "RATIO": "0.5"}},
			{Name: "worker-2", Branch: "main", Dockerfile: "Dockerfile", Context: ".", Port: 9000,
				HealthCheckTimeout: 30 * time.Second, Memory: 256 << 20, CPUs: 0.25},
		}},
		{"anchors and aliases", `
common: &env {A: "1"}
`[:0] + `apps:
  - name: a
    branch: main
    port: 1
    env: &shared {A: "1"}
  - name: b
    branch: main
    port: 2
    env: *shared
`, "", []keystoneyml.App{
			{Name: "a", Branch: "main", Dockerfile: "Dockerfile", Context: ".", Port: 1, HealthCheckTimeout: 30 * time.Second,
				Memory: 512 << 20, CPUs: 1, Env: map[string]string{"A": "1"}},
			{Name: "b", Branch: "main", Dockerfile: "Dockerfile", Context: ".", Port: 2, HealthCheckTimeout: 30 * time.Second,
				Memory: 512 << 20, CPUs: 1, Env: map[string]string{"A": "1"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := keystoneyml.Parse([]byte(c.yaml), c.defaultBranch)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(f.Apps, c.want) {
				t.Fatalf("apps\n got %+v\nwant %+v", f.Apps, c.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       string // the first problem, as a commit status shows it
		count      int    // how many problems, 0: don't check
	}{
		{"unknown key (SPEC §7 example)", "apps:\n  - name: web\n    branch: main\n    prot: 8080\n", `line 4: unknown key "prot"`, 2},
		{"port missing", "apps:\n  - name: web\n    branch: main\n", `line 2: app "web": port is required`, 1},
		{"name missing", "apps:\n  - branch: main\n    port: 80\n", `line 2: app: name is required`, 1},
		{"branch missing without default", "apps:\n  - name: web\n    port: 80\n", `line 2: app "web": branch is required`, 1},
		{"bad name", "apps:\n  - name: Web_1\n    branch: main\n    port: 80\n", `line 2: name "Web_1" must be 1 to 40 characters of a-z, 0-9 and -`, 1},
		{"name too long", "apps:\n  - name: " + strings.Repeat("a", 41) + "\n    branch: main\n    port: 80\n", "line 2: name \"" + strings.Repeat("a", 40) + "…\" must be 1 to 40 characters of a-z, 0-9 and -", 1},
		{"duplicate app", "apps:\n  - name: web\n    branch: main\n    port: 80\n  - name: web\n    branch: main\n    port: 81\n", `line 5: app "web" is defined twice (first at line 2)`, 1},
		{"duplicate key", "apps:\n  - name: web\n    branch: main\n    port: 80\n    port: 81\n", `line 5: duplicate key "port" (first at line 4)`, 1},
		{"port as string", "apps:\n  - name: web\n    branch: main\n    port: \"80\"\n", `line 4: port must be a whole number, got the string "80"`, 1},
		{"port out of range", "apps:\n  - name: web\n    branch: main\n    port: 70000\n", `line 4: port must be from 1 to 65535, got 70000`, 1},
		{"port is a list", "apps:\n  - name: web\n    branch: main\n    port: [80]\n", `line 4: port must be a whole number, got a list`, 1},
		{"timeout not a duration", "apps:\n  - name: web\n    branch: main\n    port: 80\n    health_check_timeout: 30\n", `line 5: health_check_timeout must be a duration like 30s or 2m, got the number 30`, 1},
		{"timeout too long", "apps:\n  - name: web\n    branch: main\n    port: 80\n    health_check_timeout: 1h\n", `line 5: health_check_timeout must be from 1s to 10m0s, got 1h`, 1},
		{"health path relative", "apps:\n  - name: web\n    branch: main\n    port: 80\n    health_check_path: healthz\n", `line 5: health_check_path "healthz" must be a URL path starting with / (no spaces)`, 1},
		{"memory bad", "apps:\n  - name: web\n    branch: main\n    port: 80\n    memory: lots\n", `line 5: memory must be a size like 512m or 1g, got the string "lots"`, 1},
		{"memory too small", "apps:\n  - name: web\n    branch: main\n    port: 80\n    memory: 1m\n", `line 5: memory must be from 6m to 1024g, got 1m`, 1},
		{"cpus bad", "apps:\n  - name: web\n    branch: main\n    port: 80\n    cpus: one\n", `line 5: cpus must be a number like 0.5 or 2, got the string "one"`, 1},
		{"cpus zero", "apps:\n  - name: web\n    branch: main\n    port: 80\n    cpus: 0\n", `line 5: cpus must be from 0.01 to 256, got 0`, 1},
		{"env not a mapping", "apps:\n  - name: web\n    branch: main\n    port: 80\n    env: [A]\n", `line 5: env must be a mapping of keys to values, got a list`, 1},
		{"env PORT", "apps:\n  - name: web\n    branch: main\n    port: 80\n    env:\n      PORT: 1\n", `line 6: env PORT is set by Keystone to the app's port: remove it`, 1},
		{"env bad name", "apps:\n  - name: web\n    branch: main\n    port: 80\n    env:\n      1X: a\n", `line 6: env name "1X" must be letters, digits and _ and not start with a digit`, 1},
		{"env null", "apps:\n  - name: web\n    branch: main\n    port: 80\n    env:\n      A:\n", `line 6: env A must be a plain value (quote it: "" for empty), got nothing`, 1},
		{"context escapes", "apps:\n  - name: web\n    branch: main\n    port: 80\n    context: ../other\n", `line 5: context "../other" must stay inside the repository`, 1},
		{"dockerfile absolute", "apps:\n  - name: web\n    branch: main\n    port: 80\n    dockerfile: /etc/passwd\n", `line 5: dockerfile "/etc/passwd" must be relative to the repository`, 1},
		{"branch with refs/heads", "apps:\n  - name: web\n    branch: refs/heads/main\n    port: 80\n", `line 3: branch "refs/heads/main" is not a valid git branch name (give the name without refs/heads/)`, 1},
		{"branch boolean", "apps:\n  - name: web\n    branch: true\n    port: 80\n", `line 3: branch must be a string, got the boolean true`, 1},
		{"unknown top-level key", "apps:\n  - name: web\n    branch: main\n    port: 80\nversion: 2\n", `line 5: unknown key "version"`, 1},
		{"apps missing", "name: web\n", `line 1: unknown key "name"`, 2},
		{"preview not a boolean", "apps:\n  - name: web\n    branch: main\n    port: 80\n    preview: yes\n", `line 5: preview must be true or false, got the string "yes"`, 1},
		{"preview a string", "apps:\n  - name: web\n    branch: main\n    port: 80\n    preview: \"true\"\n", `line 5: preview must be true or false, got the string "true"`, 1},
		{"apps empty", "apps: []\n", `line 1: apps is empty: list at least one app`, 1},
		{"apps not a list", "apps: web\n", `line 1: apps must be a list of apps, got the string "web"`, 1},
		{"top level list", "- name: web\n", `line 1: the top level must be a mapping of keys to values, got a list`, 1},
		{"empty file", "", `the file is empty: it needs an apps list`, 1},
		{"only a comment", "# nothing yet\n", `the file is empty: it needs an apps list`, 1},
		{"syntax error", "apps:\n  - name: web\n   port: 80\n", `line 3: did not find expected '-' indicator`, 1},
		{"tab indentation", "apps:\n\t- name: web\n", `line 2: found character that cannot start any token`, 1},
		{"two documents", "apps:\n  - name: web\n    branch: main\n    port: 80\n---\napps: []\n", `line 5: only one YAML document is allowed`, 1},
		{"not UTF-8", "apps:\n  - name: \xff\n", `the file is not valid UTF-8`, 1},
		{"too large", "apps:\n" + strings.Repeat("#", keystoneyml.MaxSize), `the file is larger than 64 KiB`, 1},
		{"merge key", "apps:\n  - <<: {name: web}\n    branch: main\n    port: 80\n", `line 2: unknown key "<<"`, 2},
		{"build_secrets not a list", "apps:\n  - name: web\n    branch: main\n    port: 80\n    build_secrets: NPM_TOKEN\n", `line 5: build_secrets must be a list of secret names like [NPM_TOKEN], got the string "NPM_TOKEN"`, 1},
		{"build_secrets bad name", "apps:\n  - name: web\n    branch: main\n    port: 80\n    build_secrets: [NPM_TOKEN, 1X]\n", `line 5: build_secrets: the string "1X" is not a secret name (letters, digits and _, not starting with a digit)`, 1},
		{"build_secrets twice", "apps:\n  - name: web\n    branch: main\n    port: 80\n    build_secrets:\n      - A\n      - A\n", `line 7: build_secrets: A is listed twice`, 1},
		{"several problems in line order", "apps:\n  - name: Web\n    branch: main\n    port: 0\n    bogus: 1\n", `line 2: name "Web" must be 1 to 40 characters of a-z, 0-9 and -`, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := keystoneyml.Parse([]byte(c.yaml), "")
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", f)
			}
			var pe *keystoneyml.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *keystoneyml.Error", err, err)
			}
			if c.want != "" && err.Error() != c.want {
				t.Errorf("first problem\n got %q\nwant %q", err.Error(), c.want)
			}
			if c.count != 0 && len(pe.Problems) != c.count {
				t.Errorf("%d problems, want %d: %q", len(pe.Problems), c.count, pe.Lines())
			}
		})
	}
}

// TestOperatorCaps: KEYSTONE_MAX_MEMORY and KEYSTONE_MAX_CPUS bound what an
// app may ask for, naming the line and the cap, and lower the defaults.
func TestOperatorCaps(t *testing.T) {
	limits := keystoneyml.Limits{Memory: 1 << 30, CPUs: 2}
	cases := []struct{ name, extra, want string }{
		{"memory above the cap", "    memory: 2g\n", `line 5: memory 2g is above the operator's cap KEYSTONE_MAX_MEMORY=1g`},
		{"cpus above the cap", "    cpus: 2.5\n", `line 5: cpus 2.5 is above the operator's cap KEYSTONE_MAX_CPUS=2`},
		{"at the caps", "    memory: 1g\n    cpus: 2\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := keystoneyml.ParseLimited([]byte("apps:\n  - name: web\n    branch: main\n    port: 80\n"+c.extra), "", limits)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Fatalf("got %v (%+v), want %q", err, f, c.want)
			}
		})
	}
	f, err := keystoneyml.ParseLimited([]byte("apps:\n  - name: web\n    branch: main\n    port: 80\n"), "",
		keystoneyml.Limits{Memory: 256 << 20, CPUs: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if a := f.Apps[0]; a.Memory != 256<<20 || a.CPUs != 0.5 {
		t.Errorf("defaults under low caps: memory %d, cpus %g; want the caps", a.Memory, a.CPUs)
	}
}

func TestStoredFormRoundTrips(t *testing.T) {
	f, err := keystoneyml.Parse([]byte(specExample), "")
	if err != nil {
		t.Fatal(err)
	}
	raw := mustJSON(t, f.Apps[0])
	got, err := keystoneyml.DecodeApp(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f.Apps[0]) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, f.Apps[0])
	}
	if _, err := keystoneyml.DecodeApp([]byte(`{}`)); err == nil {
		t.Fatal("an empty stored configuration was accepted")
	}
}

func TestTracking(t *testing.T) {
	f, err := keystoneyml.Parse([]byte("apps:\n  - {name: a, branch: main, port: 1}\n  - {name: b, branch: dev, port: 2}\n  - {name: c, branch: main, port: 3}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range f.Tracking("main") {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "a,c" {
		t.Fatalf("tracking main: %v, want a,c", names)
	}
	if a, ok := f.App("b"); !ok || a.Port != 2 {
		t.Fatalf("App(b) = %+v, %v", a, ok)
	}
}
