package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"
)

// failure is an outcome that is the app's fault (bad config, build, health):
// the deployment ends failed with this description, and is not retried.
type failure struct{ description string }

func (f *failure) Error() string { return f.description }

var errBuildTimeout = errors.New("build timed out")

// buildMessage is one JSON message of the engine's build stream.
type buildMessage struct {
	ID          string `json:"id"`
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux json.RawMessage `json:"aux"`
}

var (
	buildStepLine = regexp.MustCompile(`(?m)^Step (\d+)/(\d+) :`)
	buildExitCode = regexp.MustCompile(`returned a non-zero code: (\d+)`)
	// engineRace matches the classic builder's errors when a cached layer
	// disappears under it.
	engineRace = regexp.MustCompile(`failed to get digest|[Nn]o such image|unable to find image "sha256:|layer does not exist|unknown parent image`)
)

// buildImage builds r's image from the mirror through the engine's API,
// streaming its output into the log, and returns the image id. The image an
// earlier attempt built for this deployment is used again when its id is
// recorded on the deployment.
func (e *Engine) buildImage(ctx context.Context, r *run) (string, error) {
	if id := e.builtImage(ctx, r); id != "" {
		r.log.Printf("Using the image %s built for this deployment by an earlier attempt", shortID(id))
		return id, nil
	}
	if typ := e.sources.ObjectType(ctx, r.repo, r.d.SHA, r.cfg.Context); typ != "tree" {
		return "", &failure{descBuildFailed(fmt.Sprintf("context %q is not a directory in %s", r.cfg.Context, shortSHA(r.d.SHA)))}
	}
	dockerfile := path.Join(r.cfg.Context, r.cfg.Dockerfile)
	if typ := e.sources.ObjectType(ctx, r.repo, r.d.SHA, dockerfile); typ != "blob" {
		return "", &failure{descBuildFailed(fmt.Sprintf("%s not found in %s", dockerfile, shortSHA(r.d.SHA)))}
	}
	secrets := map[string][]byte{}
	for _, name := range r.cfg.BuildSecrets {
		v, ok := r.secrets[name]
		if !ok {
			return "", &failure{descBuildFailed(fmt.Sprintf("build secret %s is not set for %s: set it as a secret of the app first", name, r.app.Name))}
		}
		secrets[name] = []byte(v)
	}
	if problem := e.undeclaredSecretMount(ctx, r); problem != "" {
		return "", &failure{descBuildFailed(problem)}
	}
	buildkit, err := e.useBuildKit(ctx)
	if err != nil {
		return "", err
	}
	if !buildkit {
		r.log.Printf("This Docker engine has no BuildKit: building with the legacy builder (no RUN --mount, no heredocs, no build secrets)")
		if len(secrets) > 0 {
			return "", &failure{descBuildFailed("build_secrets need BuildKit, which this Docker engine lacks")}
		}
		return e.buildLegacy(ctx, r)
	}
	tar, err := e.sources.Archive(ctx, r.repo, r.d.SHA, r.cfg.Context)
	if err != nil {
		return "", err
	}
	defer tar.Close()
	buildCtx, cancel := context.WithTimeoutCause(ctx, e.cfg.BuildTimeout, errBuildTimeout)
	defer cancel()
	tag := imageRef(r.instance, r.app, r.d.SHA)
	id, failed, err := e.buildWithBuildKit(buildCtx, r, tar, buildkitBuild{Tag: tag, Dockerfile: r.cfg.Dockerfile,
		Labels: e.labels(r.instance, r.app, r.d), Secrets: secrets})
	if err == nil && failed == nil && buildCtx.Err() != nil {
		err = buildCtx.Err()
	}
	if err != nil {
		return "", e.buildError(buildCtx, err)
	}
	if failed != nil {
		if errors.Is(context.Cause(buildCtx), errBuildTimeout) {
			return "", e.buildError(buildCtx, errBuildTimeout)
		}
		r.log.Printf("Build failed: %s", r.log.redactor.Redact(firstLine(failed.message)))
		return "", &failure{descBuildFailed(r.log.redactor.Redact(failed.describe(e.syntaxOf(ctx, r))))}
	}
	if err := tar.Close(); err != nil {
		return "", fmt.Errorf("stream the build context: %w", err)
	}
	return e.builtImageID(ctx, id, tag)
}

// useBuildKit reports whether the engine builds with BuildKit: a Linux
// engine of API 1.39 or later (Docker 18.09), unless Config.Builder says
// "legacy". The answer is asked once.
func (e *Engine) useBuildKit(ctx context.Context) (bool, error) {
	e.builderMu.Lock()
	defer e.builderMu.Unlock()
	if e.builder == "" && e.cfg.Builder == "legacy" {
		e.builder = "legacy"
	}
	if e.builder == "" {
		ping, err := e.docker.Ping(ctx)
		if err != nil {
			return false, fmt.Errorf("Docker unreachable: %w", err)
		}
		e.builder = "legacy"
		if ping.OSType != "windows" && versions.GreaterThanOrEqualTo(ping.APIVersion, "1.39") {
			e.builder = "buildkit"
		}
	}
	return e.builder == "buildkit", nil
}

// syntaxOf returns the frontend image a Dockerfile's first line asks for
// (# syntax=…), or "".
func (e *Engine) syntaxOf(ctx context.Context, r *run) string {
	raw, found, err := e.sources.ReadFile(ctx, r.repo, r.d.SHA, path.Join(r.cfg.Context, r.cfg.Dockerfile), 4096)
	if err != nil || !found {
		return ""
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	if m := syntaxLine.FindStringSubmatch(first); m != nil {
		return m[1]
	}
	return ""
}

// undeclaredSecretMount names the first RUN --mount=type=secret of the
// Dockerfile whose id is not in the app's build_secrets (BuildKit would
// quietly mount nothing), or returns "".
func (e *Engine) undeclaredSecretMount(ctx context.Context, r *run) string {
	raw, found, err := e.sources.ReadFile(ctx, r.repo, r.d.SHA, path.Join(r.cfg.Context, r.cfg.Dockerfile), maxDockerfile)
	if err != nil || !found {
		return ""
	}
	for i, line := range strings.Split(string(raw), "\n") {
		for _, m := range mountFlag.FindAllStringSubmatch(line, -1) {
			id, ok := secretMountID(m[1])
			if ok && !slices.Contains(r.cfg.BuildSecrets, id) {
				return fmt.Sprintf("%s line %d mounts secret %s, which is not in build_secrets", r.cfg.Dockerfile, i+1, id)
			}
		}
	}
	return ""
}

var mountFlag = regexp.MustCompile(`--mount=(\S+)`)

// secretMountID returns the id of a --mount=type=secret,… value: id=, or
// else the target's base name, as BuildKit does.
func secretMountID(spec string) (string, bool) {
	spec = strings.Trim(spec, `"'`)
	opts := map[string]string{}
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		opts[strings.ToLower(k)] = v
	}
	if opts["type"] != "secret" {
		return "", false
	}
	if id := opts["id"]; id != "" {
		return id, true
	}
	for _, k := range []string{"target", "dst", "destination"} {
		if t := opts[k]; t != "" {
			return path.Base(t), true
		}
	}
	return "", false
}

var syntaxLine = regexp.MustCompile(`^#\s*syntax\s*=\s*(\S+)`)

// buildLegacy builds with the classic builder, for engines without
// BuildKit. The labels go in as one appended LABEL instruction (the
// Labels option costs one image commit per label there).
func (e *Engine) buildLegacy(ctx context.Context, r *run) (string, error) {
	tar, err := e.sources.Archive(ctx, r.repo, r.d.SHA, r.cfg.Context)
	if err != nil {
		return "", err
	}
	defer tar.Close()
	body, copied := labelledContext(tar, r.cfg.Dockerfile, e.labels(r.instance, r.app, r.d))
	defer body.Close()

	buildCtx, cancel := context.WithTimeoutCause(ctx, e.cfg.BuildTimeout, errBuildTimeout)
	defer cancel()
	tag := imageRef(r.instance, r.app, r.d.SHA)
	resp, err := e.docker.ImageBuild(buildCtx, body, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  r.cfg.Dockerfile,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
		NetworkMode: "default",
		Memory:      r.cfg.Memory,
		MemorySwap:  r.cfg.Memory,
		CPUPeriod:   100000,
		CPUQuota:    int64(r.cfg.CPUs * 100000),
	})
	if err != nil {
		body.Close()
		if cerr := copied(); errors.Is(cerr, errDockerfileNotRegular) {
			return "", &failure{descBuildFailed(fmt.Sprintf("%s is not a regular file", r.cfg.Dockerfile))}
		}
		return "", e.buildError(buildCtx, fmt.Errorf("start the build: %w", err))
	}
	defer resp.Body.Close()
	id, step, buildErr := e.readBuild(buildCtx, resp.Body, r)
	if buildErr != nil {
		return "", e.buildError(buildCtx, buildErr)
	}
	if step.failed != "" && engineRace.MatchString(step.failed) {
		// Not the app's fault: a layer the cache offered was removed by a
		// prune running at the same time. Another attempt builds again.
		return "", fmt.Errorf("the engine lost a cached layer during the build: %s", firstLine(step.failed))
	}
	if step.failed != "" {
		r.log.Printf("Build failed: %s", step.failed)
		return "", &failure{descBuildFailed(step.describe())}
	}
	if err := copied(); err != nil {
		return "", fmt.Errorf("stream the build context: %w", err)
	}
	if err := tar.Close(); err != nil {
		return "", fmt.Errorf("stream the build context: %w", err)
	}
	return e.builtImageID(ctx, id, tag)
}

// builtImage returns the image an earlier attempt built for this
// deployment: only the id recorded on the deployment's row, and only while
// the engine still has it with this app's and this commit's labels.
func (e *Engine) builtImage(ctx context.Context, r *run) string {
	if r.d.ImageID == "" {
		return ""
	}
	info, err := e.docker.ImageInspect(ctx, r.d.ImageID)
	if err != nil || info.Config == nil || !ours(r.instance, info.Config.Labels) ||
		info.Config.Labels[LabelApp] != r.app.Key() || info.Config.Labels[LabelSHA] != r.d.SHA {
		return ""
	}
	return info.ID
}

// buildStep follows the build's "Step N/M" lines to name the failing one.
type buildStep struct {
	current, total string
	failed         string
}

func (s buildStep) describe() string {
	where := ""
	if s.current != "" {
		// The LABEL line Keystone appends is the last step: not the user's.
		total, _ := strconv.Atoi(s.total)
		current, _ := strconv.Atoi(s.current)
		where = fmt.Sprintf("step %d/%d", current, max(total-1, 1))
		if current >= total {
			where = "labelling the image"
		}
	}
	if m := buildExitCode.FindStringSubmatch(s.failed); m != nil && where != "" {
		return where + " exited " + m[1]
	}
	if where != "" {
		return where + ": " + firstLine(s.failed)
	}
	return firstLine(s.failed)
}

// readBuild copies the build's output into the log as it comes and returns
// the image id the engine announced and the failing step, if any.
func (e *Engine) readBuild(ctx context.Context, body io.Reader, r *run) (string, buildStep, error) {
	var step buildStep
	var id string
	dec := json.NewDecoder(body)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return id, step, nil
			}
			return "", step, fmt.Errorf("read the build output: %w", err)
		}
		if m.Stream != "" {
			for _, s := range buildStepLine.FindAllStringSubmatch(m.Stream, -1) {
				step.current, step.total = s[1], s[2]
			}
			_, _ = r.log.Write([]byte(m.Stream))
		}
		if m.Error != "" || m.ErrorDetail != nil {
			msg := m.Error
			if msg == "" {
				msg = m.ErrorDetail.Message
			}
			step.failed = strings.TrimSpace(r.log.redactor.Redact(msg))
		}
		if len(m.Aux) > 0 {
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil && strings.HasPrefix(aux.ID, "sha256:") {
				id = aux.ID
			}
		}
		if ctx.Err() != nil {
			return "", step, ctx.Err()
		}
	}
}

// buildError tells a build timeout (the app's) from an engine problem.
func (e *Engine) buildError(buildCtx context.Context, err error) error {
	if errors.Is(context.Cause(buildCtx), errBuildTimeout) {
		return &failure{descBuildFailed("timed out after " + wholeSeconds(e.cfg.BuildTimeout))}
	}
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("Docker unreachable: %w", err)
	}
	return err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// builtImageID is the id a build reported, or else the id of the image it
// tagged (both builders report it in their output, but not always).
func (e *Engine) builtImageID(ctx context.Context, id, tag string) (string, error) {
	if id != "" {
		return id, nil
	}
	info, err := e.docker.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("find the built image %s: %w", tag, err)
	}
	return info.ID, nil
}
