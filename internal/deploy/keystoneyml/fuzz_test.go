package keystoneyml_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
)

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lineBreaks counts what YAML takes for line breaks, an upper bound of the
// file's last line.
func lineBreaks(data []byte) int {
	n := 0
	for _, r := range string(data) {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}

var problemShape = regexp.MustCompile(`^(line [1-9][0-9]*: )?\S`)

// FuzzParse: whatever the bytes, Parse neither panics nor hangs; a rejected
// file gets problems shaped "line N: message" with N a line of the file; an accepted one
// holds only valid, unique apps with defaults applied, and survives the trip
// through its stored JSON form.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		specExample,
		"apps:\n  - name: web\n    port: 80\n",
		"apps:\n  - {name: a, branch: main, port: 1, env: {A: 1}}\n  - {name: a, port: 2}\n",
		"apps: &x [*x]\n",
		"apps:\n  - name: web\n    prot: 8080\n",
		"apps:\n  - <<: *a\n",
		"--- \n...\n---\n",
		"apps:\n  - name: web\n    port: 0x50\n    memory: 1.5g\n    cpus: .5\n    health_check_timeout: 1m30s\n",
		"{apps: [{name: \"\\u0000\", port: 1}]}",
	} {
		f.Add([]byte(seed), "main")
	}
	f.Fuzz(func(t *testing.T, data []byte, defaultBranch string) {
		file, err := keystoneyml.Parse(data, defaultBranch)
		if err != nil {
			var pe *keystoneyml.Error
			if !errors.As(err, &pe) || len(pe.Problems) == 0 {
				t.Fatalf("error %T %v carries no problems", err, err)
			}
			for _, p := range pe.Problems {
				s := p.String()
				if !problemShape.MatchString(s) || !utf8.ValidString(s) || p.Line > lineBreaks(data)+1 {
					t.Fatalf("problem %q is not shaped like \"line N: message\" with N in the file", s)
				}
			}
			return
		}
		if len(file.Apps) == 0 {
			t.Fatal("accepted a file without apps")
		}
		seen := map[string]bool{}
		for _, a := range file.Apps {
			switch {
			case seen[a.Name]:
				t.Fatalf("duplicate app %q accepted", a.Name)
			case !regexp.MustCompile(`^[a-z0-9-]{1,40}$`).MatchString(a.Name):
				t.Fatalf("bad name %q accepted", a.Name)
			case a.Port < 1 || a.Port > 65535:
				t.Fatalf("port %d accepted", a.Port)
			case a.Branch == "" || a.Dockerfile == "" || a.Context == "":
				t.Fatalf("defaults missing: %+v", a)
			case strings.HasPrefix(a.Context, "..") || strings.HasPrefix(a.Dockerfile, "/"):
				t.Fatalf("path outside the repository accepted: %+v", a)
			case a.Memory < keystoneyml.MinMemory || a.CPUs <= 0 || a.HealthCheckTimeout < keystoneyml.MinHealthCheckTimeout:
				t.Fatalf("limit out of range accepted: %+v", a)
			}
			if _, ok := a.Env["PORT"]; ok {
				t.Fatal("env PORT accepted")
			}
			seen[a.Name] = true
			back, err := keystoneyml.DecodeApp(mustJSON(t, a))
			if err != nil || back.Name != a.Name || back.Port != a.Port || len(back.Env) != len(a.Env) {
				t.Fatalf("stored form does not round-trip: %+v -> %+v, %v", a, back, err)
			}
		}
	})
}
