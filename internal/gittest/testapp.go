package gittest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Behaviour is what the test app does, written to behaviour.json in its
// commit. Changing one field is a one-line change of the repository.
type Behaviour struct {
	// Version is answered by GET / as "version=<Version>".
	Version string `json:"version"`
	// Health is the status of GET /healthz; 0 means 200.
	Health int `json:"health,omitempty"`
	// StartDelay is how long the app waits before listening.
	StartDelay time.Duration `json:"-"`
	// Print lines are printed at start; PrintEnv prints NAME=value of each.
	Print    []string `json:"print,omitempty"`
	PrintEnv []string `json:"print_env,omitempty"`
	// Exit, when set, makes the app exit at once with this code.
	Exit *int `json:"exit,omitempty"`
	// IgnoreTerm makes the app ignore SIGTERM (a stop then takes the whole
	// grace period).
	IgnoreTerm bool `json:"ignore_term,omitempty"`
	// BuildStep adds a RUN step to the Dockerfile that prints BuildPrint,
	// sleeps BuildSleep and exits with BuildExit.
	BuildStep  bool          `json:"-"`
	BuildPrint []string      `json:"build_print,omitempty"`
	BuildSleep time.Duration `json:"-"`
	BuildExit  int           `json:"build_exit,omitempty"`
	// BuildSecret names a build secret the RUN step mounts
	// (--mount=type=secret) and writes the SHA-256 of to
	// /build-secret.sha256, which GET /build-secret answers.
	BuildSecret string `json:"build_secret,omitempty"`
	// BuildNonce is set by AppFiles when the Dockerfile has a RUN step: it
	// makes behaviour.json, copied before the RUN, unique, so that the
	// engine's build cache (shared by every build on the engine, across
	// test runs) never answers the step instead of running it.
	BuildNonce string `json:"build_nonce,omitempty"`
}

// MarshalJSON writes durations as Go duration strings.
func (b Behaviour) MarshalJSON() ([]byte, error) {
	type plain Behaviour
	out := struct {
		plain
		StartDelay string `json:"start_delay,omitempty"`
		BuildSleep string `json:"build_sleep,omitempty"`
	}{plain: plain(b)}
	if b.StartDelay > 0 {
		out.StartDelay = b.StartDelay.String()
	}
	if b.BuildSleep > 0 {
		out.BuildSleep = b.BuildSleep.String()
	}
	return json.Marshal(out)
}

// AppFiles returns the files of a repository holding the test app: its
// static binary "app", behaviour.json and a Dockerfile FROM scratch. Merge
// them with a .keystone.yml to commit. dir prefixes every path ("" for the
// root).
func AppFiles(t testing.TB, dir string, b Behaviour) map[string][]byte {
	t.Helper()
	if b.BuildStep || b.BuildSecret != "" {
		b.BuildNonce = rand.Text()
	}
	behaviour, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := "FROM scratch\nCOPY app /app\nCOPY behaviour.json /behaviour.json\n"
	switch {
	case b.BuildSecret != "":
		dockerfile += "RUN --mount=type=secret,id=" + b.BuildSecret + " [\"/app\", \"build-step\"]\n"
	case b.BuildStep:
		dockerfile += "RUN [\"/app\", \"build-step\"]\n"
	}
	dockerfile += "ENTRYPOINT [\"/app\"]\n"
	return map[string][]byte{
		filepath.Join(dir, "app"):            TestAppBinaryOf(t),
		filepath.Join(dir, "behaviour.json"): append(behaviour, '\n'),
		filepath.Join(dir, "Dockerfile"):     []byte(dockerfile),
	}
}

// KeystoneYML returns a one-app .keystone.yml for the test app, with
// extra lines (already indented by four spaces) appended to the app.
func KeystoneYML(app, branch string, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apps:\n  - name: %s\n    branch: %s\n    port: 8080\n    health_check_path: /healthz\n    health_check_timeout: 10s\n", app, branch)
	for _, l := range extra {
		b.WriteString("    " + l + "\n")
	}
	return []byte(b.String())
}

// TestAppBinaryOf is TestAppBinary with t's name appended (the program
// ignores it): the same within a test, so its updates reuse the image layer
// of the binary, and different between tests, so that tests running at
// once never share that layer, which one test's clean-up could remove under
// another's build.
func TestAppBinaryOf(t testing.TB) []byte {
	t.Helper()
	return append(slices.Clone(TestAppBinary(t)), []byte("\x00keystone-test:"+t.Name())...)
}

var testApp struct {
	once sync.Once
	bin  []byte
	err  error
}

// TestAppBinary compiles testdata/testapp statically (CGO_ENABLED=0) once per
// test binary and returns it. The build is cached on disk by the hash of the
// source, so test packages and runs share it.
func TestAppBinary(t testing.TB) []byte {
	t.Helper()
	testApp.once.Do(func() { testApp.bin, testApp.err = buildTestApp() })
	if testApp.err != nil {
		t.Fatalf("gittest: build the test app: %v", testApp.err)
	}
	return testApp.bin
}

func buildTestApp() ([]byte, error) {
	_, self, _, _ := runtime.Caller(0)
	srcDir := filepath.Join(filepath.Dir(self), "testdata", "testapp")
	src, err := os.ReadFile(filepath.Join(srcDir, "main.go"))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append(src, runtime.Version()...))
	cached := filepath.Join(os.TempDir(), "keystone-testapp-"+hex.EncodeToString(sum[:8]))
	if bin, err := os.ReadFile(cached); err == nil && len(bin) > 0 {
		return bin, nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", cached, os.Getpid())
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, ".")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, cached); err != nil { // atomic: parallel packages race here
		return nil, err
	}
	return os.ReadFile(cached)
}
