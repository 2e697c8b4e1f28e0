package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// failure is an outcome that is the app's fault (bad config, build, health):
// the deployment ends failed with this description, and is not retried.
type failure struct{ description string }

func (f *failure) Error() string { return f.description }

var errBuildTimeout = errors.New("build timed out")

// buildMessage is one JSON message of the engine's build stream.
type buildMessage struct {
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
// streaming its output into the log, and returns the image id. An image
// already built for this deployment (by an attempt that was interrupted
// afterwards) is used again.
func (e *Engine) buildImage(ctx context.Context, r *run) (string, error) {
	if id := e.builtImage(ctx, r); id != "" {
		r.log.Printf("Using the image built for this deployment by an earlier attempt")
		return id, nil
	}
	if typ := e.sources.ObjectType(ctx, r.repo, r.d.SHA, r.cfg.Context); typ != "tree" {
		return "", &failure{descBuildFailed(fmt.Sprintf("context %q is not a directory in %s", r.cfg.Context, shortSHA(r.d.SHA)))}
	}
	if typ := e.sources.ObjectType(ctx, r.repo, r.d.SHA, path.Join(r.cfg.Context, r.cfg.Dockerfile)); typ != "blob" {
		return "", &failure{descBuildFailed(fmt.Sprintf("%s not found in %s", path.Join(r.cfg.Context, r.cfg.Dockerfile), shortSHA(r.d.SHA)))}
	}
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
	if id == "" {
		info, err := e.docker.ImageInspect(ctx, tag)
		if err != nil {
			return "", fmt.Errorf("find the built image %s: %w", tag, err)
		}
		id = info.ID
	}
	return id, nil
}

// builtImage returns the image an earlier attempt built for this
// deployment, if it exists.
func (e *Engine) builtImage(ctx context.Context, r *run) string {
	images, err := e.docker.ImageList(ctx, image.ListOptions{
		Filters: ownFilter(r.instance, LabelDeployment+"="+strconv.FormatInt(r.d.ID, 10)),
	})
	if err != nil || len(images) == 0 {
		return ""
	}
	return images[0].ID
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
