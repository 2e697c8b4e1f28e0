package deploy_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// cacheDockerfile builds with a cache mount and a secret mount in one RUN
// before the one-line behaviour.json is copied, so that a change of that
// line reuses every step above it.
// The nonce keeps the engine's build cache, shared by every build on it,
// from holding these steps already.
func cacheDockerfile(nonce string) string {
	return "FROM scratch\nCOPY app /app\n" +
		"RUN --mount=type=cache,target=/cache --mount=type=secret,id=NPM_TOKEN [\"/app\", \"build-step\", \"NPM_TOKEN\", \"" + nonce + "\"]\n" +
		"COPY behaviour.json /behaviour.json\nENTRYPOINT [\"/app\"]\n"
}

// TestBuildKitSecretAndCache: a Dockerfile with RUN --mount=type=cache and
// --mount=type=secret builds through BuildKit; the build secret is there at
// build time (the step writes its hash into the image) and nowhere in the
// image's history, its layers or the log; a second build of a one-line
// change reuses the cached steps, as its log says.
func TestBuildKitSecretAndCache(t *testing.T) {
	h := newHarness(t, "buildkit")
	const secret = "npm_6f1c0ffee-build-only-token"
	yml := ymlApp("web", "build_secrets: [NPM_TOKEN]")
	// The app must exist for its secrets to be set: a first deploy of it
	// asks for a secret it does not have yet, and fails naming it.
	files := deploytest.Files(t, yml, gittest.Behaviour{Version: "v1"})
	nonce := rand.Text()
	files["Dockerfile"] = []byte(cacheDockerfile(nonce))
	sha1 := h.push(t, "main", files)
	d1 := h.deployOf(t, "web", sha1)
	mustState(t, d1, store.StateFailed)
	if want := "Build failed: build secret NPM_TOKEN is not set for web: set it as a secret of the app first"; d1.Description != want {
		t.Errorf("description %q, want %q", d1.Description, want)
	}
	app := h.App(t, "web")
	h.secrets.set(app.ID, map[string]string{"NPM_TOKEN": secret})

	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2", "print": ["` + nonce + `"]}`)})
	d2 := h.deployOf(t, "web", sha2)
	mustState(t, d2, store.StateSucceeded)
	sum := sha256.Sum256([]byte(secret))
	if _, body, err := deploytest.Get(app.HostPort, "/build-secret"); err != nil || body != hex.EncodeToString(sum[:]) {
		t.Fatalf("the build step saw no secret: GET /build-secret = %q (%v)", body, err)
	}
	assertNoSecretInImage(t, h, d2.ImageID, secret)
	log2 := strings.Join(h.Log(t, d2.ID), "\n")
	if strings.Contains(log2, secret) {
		t.Errorf("the log holds the build secret:\n%s", log2)
	}

	// One line changes: every step above COPY behaviour.json is cached.
	sha3 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v3", "print": ["` + nonce + `"]}`)})
	d3 := h.deployOf(t, "web", sha3)
	mustState(t, d3, store.StateSucceeded)
	if !deploytest.Serves(app.HostPort, "v3") {
		t.Fatal("v3 does not serve")
	}
	log3 := strings.Join(h.Log(t, d3.ID), "\n")
	for _, step := range []string{`COPY app /app`, `RUN --mount=type=cache`} {
		re := regexp.MustCompile(`(?m)^#\d+ \[(?:\S+ )?\d/\d\] ` + regexp.QuoteMeta(step) + `.* CACHED$`)
		if !re.MatchString(log3) {
			t.Errorf("the one-line change did not reuse %q; log:\n%s", step, log3)
		}
		if re.MatchString(log2) && step == `RUN --mount=type=cache` {
			t.Errorf("the first build with the secret claims a cached RUN; log:\n%s", log2)
		}
	}
	if !regexp.MustCompile(`(?m)^#\d+ \[(?:\S+ )?\d/\d\] COPY behaviour.json /behaviour.json$`).MatchString(log3) {
		t.Errorf("the changed step was not built again; log:\n%s", log3)
	}
}

// assertNoSecretInImage looks for value in the image's history and in
// every file of every layer (docker save).
func assertNoSecretInImage(t *testing.T, h *harness, id, value string) {
	t.Helper()
	ctx := context.Background()
	hist, err := h.Docker.ImageHistory(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, layer := range hist {
		if strings.Contains(layer.CreatedBy, value) || strings.Contains(layer.Comment, value) {
			t.Errorf("the image history holds the secret: %q", layer.CreatedBy)
		}
	}
	rc, err := h.Docker.ImageSave(ctx, []string{id})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := 0
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files++
		if bytes.Contains(b, []byte(value)) {
			t.Errorf("%s of the saved image holds the secret", hdr.Name)
		}
		if strings.HasSuffix(hdr.Name, ".tar") || strings.HasSuffix(hdr.Name, "/layer.tar") {
			assertNoSecretInLayer(t, hdr.Name, b, value)
		}
	}
	if files == 0 {
		t.Fatal("docker save gave nothing to look at")
	}
}

func assertNoSecretInLayer(t *testing.T, name string, layer []byte, value string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return
		}
		if strings.Contains(hdr.Name, "NPM_TOKEN") {
			t.Errorf("layer %s holds a file %s", name, hdr.Name)
		}
		b, _ := io.ReadAll(tr)
		if bytes.Contains(b, []byte(value)) {
			t.Errorf("layer %s: %s holds the secret", name, hdr.Name)
		}
	}
}

// TestBuildBadInput: a Dockerfile that mounts a secret the app does not
// declare, or whose # syntax= frontend cannot be pulled, fails naming the
// line, and the app serving before keeps serving.
func TestBuildBadInput(t *testing.T) {
	h := newHarness(t, "badinput")
	v1, port := deployV1(t, h)
	cases := []struct{ name, dockerfile, want string }{
		{"undeclared secret", "FROM scratch\nCOPY app /app\nRUN --mount=type=secret,id=AWS_KEY [\"/app\", \"build-step\"]\n",
			"Build failed: Dockerfile line 3 mounts secret AWS_KEY, which is not in build_secrets"},
		{"frontend not pullable", "# syntax=docker/dockerfile:1.99\nFROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n",
			"Build failed: line 1 `# syntax=docker/dockerfile:1.99` needs a frontend image that cannot be pulled"},
	}
	for _, c := range cases {
		sha := h.push(t, "main", map[string][]byte{"Dockerfile": []byte(c.dockerfile)})
		d := h.deployOf(t, "web", sha)
		mustState(t, d, store.StateFailed)
		if d.Description != c.want {
			t.Errorf("%s: description %q, want %q", c.name, d.Description, c.want)
		}
		stillServesV1(t, h, v1, port)
	}
}

// TestLegacyBuilderFallback: where the engine has no BuildKit (forced
// here) the legacy builder builds and the log says so; build_secrets,
// which only BuildKit can mount, fail the deploy saying why.
func TestLegacyBuilderFallback(t *testing.T) {
	h := newHarness(t, "legacy", func(o *options) { o.cfg.Builder = "legacy" })
	v1, port := deployV1(t, h)
	if log := strings.Join(h.Log(t, v1.ID), "\n"); !strings.Contains(log, "building with the legacy builder") {
		t.Errorf("the log does not say the legacy builder built:\n%s", log)
	}
	h.secrets.set(h.App(t, "web").ID, map[string]string{"NPM_TOKEN": "x"})
	sha := h.push(t, "main", map[string][]byte{".keystone.yml": ymlApp("web", "build_secrets: [NPM_TOKEN]")})
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateFailed)
	if want := "Build failed: build_secrets need BuildKit, which this Docker engine lacks"; d.Description != want {
		t.Errorf("description %q, want %q", d.Description, want)
	}
	stillServesV1(t, h, v1, port)
}
