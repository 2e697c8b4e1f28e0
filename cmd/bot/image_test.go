package main

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/testwait"
)

// repoRoot is the module's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// requireDocker fails the test under CI=true, and skips it elsewhere, when
// the Docker engine does not answer.
func requireDocker(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Docker is required with CI=true: %v\n%s", err, out)
		}
		t.Skipf("Docker engine not reachable: %v", err)
	}
}

// sh runs name with args in dir and returns its combined output, failing the
// test if it fails.
func sh(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func randomTag(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// imageFiles lists every path of image's filesystem, from `docker export` of
// a container created (never started) from it.
func imageFiles(t *testing.T, image string) map[string]*tar.Header {
	t.Helper()
	id := strings.TrimSpace(sh(t, "", "docker", "create", image, "unused"))
	defer exec.Command("docker", "rm", "-f", id).Run()
	cmd := exec.CommandContext(t.Context(), "docker", "export", id)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read export of %s: %v", image, err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("docker export: %v", err)
	}
	return files
}

// forbiddenInImage returns the paths that must never be in an image: version
// control, local configuration, local data, tests.
func forbiddenInImage(files map[string]*tar.Header) []string {
	var bad []string
	for name := range files {
		for _, part := range strings.Split(name, "/") {
			if part == ".git" || part == ".env" || strings.HasPrefix(part, ".env.") || part == ".dev" || part == ".keystone" ||
				part == "testdata" || strings.HasSuffix(part, "_test.go") || part == "docs" || part == "storetest" {
				bad = append(bad, name)
				break
			}
		}
	}
	return bad
}

// TestBuildContextKeepsOutSecretsAndTests: .dockerignore leaves the compiler
// a context without history, .env files, local data, tests or docs, and that
// context still builds Keystone.
func TestBuildContextKeepsOutSecretsAndTests(t *testing.T) {
	requireDocker(t)
	root := repoRoot(t)
	ctxDir := t.TempDir()
	for _, f := range strings.Split(sh(t, root, "git", "ls-files", "-z", "-co", "--exclude-standard"), "\x00") {
		if b, err := os.ReadFile(filepath.Join(root, f)); f != "" && err == nil {
			writeFile(t, filepath.Join(ctxDir, f), string(b))
		}
	}
	sh(t, ctxDir, "git", "init", "-q")
	planted := map[string]string{
		".env": "KEYSTONE_GITHUB_WEBHOOK_SECRET=planted-secret", ".env.production": "X=planted-secret",
		".dev/pg/data/PG_VERSION": "15", ".keystone/sources/x": "cache", "bin/keystone": "binary", "dist/keystone": "binary",
		"internal/store/storetest/extra_test.go": "package storetest",
	}
	for name, content := range planted {
		writeFile(t, filepath.Join(ctxDir, name), content)
	}
	tag := randomTag("keystone-test-source:")
	sh(t, root, "docker", "build", "-q", "--target", "source", "-f", filepath.Join(root, "Dockerfile"), "-t", tag, ctxDir)
	defer removeImage(tag)
	files := imageFiles(t, tag)
	if bad := forbiddenInImage(files); len(bad) > 0 {
		t.Errorf("the build context holds what .dockerignore must keep out: %v", bad)
	}
	for _, p := range []string{"src/bin", "src/dist", "src/scripts", "src/internal/keystonetest", "src/Makefile"} {
		if files[p] != nil {
			t.Errorf("the build context holds %s", p)
		}
	}
	for _, want := range []string{"src/go.mod", "src/go.sum", "src/cmd/bot/main.go", "src/migrations/00200_secrets_audit.sql"} {
		if files[want] == nil {
			t.Errorf("the build context lacks %s", want)
		}
	}

	// What the compiler gets must build: copy it out and compile it offline.
	out := t.TempDir()
	id := strings.TrimSpace(sh(t, "", "docker", "create", tag, "unused"))
	defer exec.Command("docker", "rm", "-f", id).Run()
	sh(t, "", "docker", "cp", id+":/src/.", out)
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", filepath.Join(t.TempDir(), "keystone"), "./cmd/bot")
	build.Dir = out
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOPROXY=off")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the filtered build context does not build: %v\n%s", err, b)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPrebuiltImage: the image from scripts/image-prebuilt.sh holds no .git
// or .env, runs as a non-root user, serves /healthz against PostgreSQL and
// turns healthy through its HEALTHCHECK (keystone healthcheck).
func TestPrebuiltImage(t *testing.T) {
	requireDocker(t)
	root := repoRoot(t)
	tag := randomTag("keystone-test-image:")
	sh(t, root, "scripts/image-prebuilt.sh", tag)
	defer removeImage(tag)

	user := strings.TrimSpace(sh(t, "", "docker", "image", "inspect", "-f", "{{.Config.User}}", tag))
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Fatalf("image user %q: must be a non-root numeric user", user)
	}
	files := imageFiles(t, tag)
	if bad := forbiddenInImage(files); len(bad) > 0 {
		t.Fatalf("image holds %v", bad)
	}
	if h := files["usr/local/bin/keystone"]; h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("image lacks an executable /usr/local/bin/keystone")
	}
	if h := files["var/lib/keystone"]; h == nil || fmt.Sprint(h.Uid) != strings.Split(user, ":")[0] {
		t.Fatalf("data directory missing or not owned by the image user: %+v", h)
	}

	dbPort := databaseProxy(t, storetest.Fresh(t))
	addr := freeLoopbackAddr(t)
	id := strings.TrimSpace(sh(t, "", "docker", "run", "-d", "--network", "host", "--health-interval", "1s",
		"--health-start-period", "30s", "-e", "KEYSTONE_ADDR="+addr, "-e", "DATABASE_URL="+dbPort, tag))
	defer exec.Command("docker", "rm", "-f", id).Run()

	waitFor(t, 60*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false, err.Error() + "\n" + containerLogs(id)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	top := sh(t, "", "docker", "top", id, "-o", "pid,uid,comm")
	for _, line := range strings.Split(strings.TrimSpace(top), "\n")[1:] {
		if fields := strings.Fields(line); len(fields) < 2 || fields[1] == "0" {
			t.Fatalf("a process in the container runs as root:\n%s", top)
		}
	}
	waitFor(t, 60*time.Second, func() (bool, string) {
		status := strings.TrimSpace(sh(t, "", "docker", "inspect", "-f", "{{.State.Health.Status}}", id))
		return status == "healthy", status
	})
}

// removeImage removes tag and the untagged `source` stage images the legacy
// builder leaves behind (it builds every stage before the target).
func removeImage(tag string) {
	_ = exec.Command("docker", "rmi", "-f", tag).Run()
	_ = exec.Command("docker", "image", "prune", "-f", "--filter", "label=keystone.build.stage=source").Run()
}

func containerLogs(id string) string {
	out, _ := exec.Command("docker", "logs", "--tail", "20", id).CombinedOutput()
	return string(out)
}

// waitFor polls cond until it holds or the timeout passes (testwait);
// cond's state is reported when it does not.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	testwait.Eventually(t, timeout, "condition", func() (bool, error) {
		ok, state := cond()
		return ok, errors.New("state: " + state)
	})
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// databaseProxy makes the test database reachable over TCP on the loopback
// (a container sharing the host's network cannot use the Unix socket of a
// test server in a private directory) and returns the URL to use there.
func databaseProxy(t *testing.T, dbURL string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	network, target := "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") {
		network, target = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer client.Close()
				server, err := net.Dial(network, target)
				if err != nil {
					return
				}
				defer server.Close()
				go func() { _, _ = io.Copy(server, client); server.Close() }()
				_, _ = io.Copy(client, server)
			}()
		}
	}()
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, ln.Addr(), cfg.Database)
}

// TestComposeFile: docker-compose.yml is valid and runs Keystone with
// PostgreSQL (named volume, health check, Keystone waiting for it), the
// Docker socket and the .env file, refusing to start without a password.
func TestComposeFile(t *testing.T) {
	compose, err := exec.LookPath("docker-compose")
	args := []string{}
	if err != nil {
		if exec.Command("docker", "compose", "version").Run() != nil {
			// .ci/run installs docker-compose: in CI a missing one is a failure.
			if os.Getenv("CI") == "true" {
				t.Fatal("neither docker-compose nor the docker compose plugin is installed (CI=true)")
			}
			t.Skip("neither docker-compose nor the docker compose plugin is installed")
		}
		compose, args = "docker", []string{"compose"}
	}
	root := repoRoot(t)
	dir := t.TempDir()
	yml, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "docker-compose.yml"), string(yml))
	filled := strings.NewReplacer("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=pw123\n", "KEYSTONE_DB_PASSWORD=\n", "KEYSTONE_DB_PASSWORD=app456\n",
		"DOCKER_GID=\n", "DOCKER_GID=998\n").Replace(string(example))
	writeFile(t, filepath.Join(dir, ".env"), filled)
	config := sh(t, dir, compose, append(args, "config")...)
	for _, want := range []string{
		"condition: service_healthy", "pg_isready", "pgdata:/var/lib/postgresql/data",
		"/var/run/docker.sock:/var/run/docker.sock", "KEYSTONE_ENV: production",
		"DATABASE_URL: postgres://keystone_app:app456@127.0.0.1:5432/keystone",
		"KEYSTONE_MIGRATE_DATABASE_URL: postgres://keystone:pw123@127.0.0.1:5432/keystone",
		"/docker-entrypoint-initdb.d/10-keystone-app-role.sh", "- '998'", "no-new-privileges:true",
	} {
		if !strings.Contains(config, want) {
			t.Errorf("compose config lacks %q:\n%s", want, config)
		}
	}
	if vols := sh(t, dir, compose, append(args, "config", "--volumes")...); !strings.Contains(vols, "pgdata") {
		t.Errorf("no named volume for PostgreSQL: %s", vols)
	}
	writeFile(t, filepath.Join(dir, ".env"), strings.Replace(filled, "POSTGRES_PASSWORD=pw123", "POSTGRES_PASSWORD=", 1))
	cmd := exec.CommandContext(t.Context(), compose, append(args, "config")...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "POSTGRES_PASSWORD") {
		t.Errorf("compose without a password: %v\n%s", err, out)
	}
}

// TestNoEnvFileIsCommitted: .env files stay out of git; only the example is tracked.
func TestNoEnvFileIsCommitted(t *testing.T) {
	root := repoRoot(t)
	for _, f := range strings.Split(strings.TrimSpace(sh(t, root, "git", "ls-files")), "\n") {
		base := filepath.Base(f)
		if (base == ".env" || strings.HasPrefix(base, ".env.")) && base != ".env.example" {
			t.Errorf("%s is committed", f)
		}
	}
	for _, f := range []string{".env", ".env.local", "deploy/.env.production"} {
		sh(t, root, "git", "check-ignore", "-q", f)
	}
}
