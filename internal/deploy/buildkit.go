package deploy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	controlapi "github.com/moby/buildkit/api/services/control"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
)

// BuildKit through the Engine API, as `docker buildx` does with its docker
// driver: moby/buildkit's client session, attached to the engine with
// POST /session (DialHijack), serves the build secrets; the build context
// is the commit's tar in the request body, which the engine hands to its
// BuildKit. moby/buildkit is used for the session and the progress format
// only: both are BuildKit's wire protocol, not worth writing again.

// buildkitTrace is the aux id of BuildKit's progress in the build stream.
const buildkitTrace = "moby.buildkit.trace"

// buildkitBuild is one build through the engine's BuildKit.
type buildkitBuild struct {
	Tag        string
	Dockerfile string
	Labels     map[string]string
	// Secrets are the app's build_secrets, by name, for
	// RUN --mount=type=secret only.
	Secrets map[string][]byte
}

// buildWithBuildKit builds the context tar body with the engine's BuildKit,
// writing the progress into r's log, and returns the image id and, when the
// Dockerfile failed, what failed.
func (e *Engine) buildWithBuildKit(ctx context.Context, r *run, body io.Reader, b buildkitBuild) (string, *buildFailure, error) {
	sess, err := session.NewSession(ctx, "keystone")
	if err != nil {
		return "", nil, fmt.Errorf("start a build session: %w", err)
	}
	sess.Allow(secretsprovider.FromMap(b.Secrets))
	sessCtx, stopSession := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan error, 1)
	go func() {
		ran <- sess.Run(sessCtx, func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return e.docker.DialHijack(ctx, "/session", proto, meta)
		})
	}()
	defer func() {
		_ = sess.Close()
		stopSession()
		<-ran
	}()

	buildID := "keystone-" + strings.ToLower(rand.Text())
	resp, err := e.docker.ImageBuild(ctx, body, build.ImageBuildOptions{
		Version:     build.BuilderBuildKit,
		SessionID:   sess.ID(),
		BuildID:     buildID,
		Tags:        []string{b.Tag},
		Dockerfile:  b.Dockerfile,
		Labels:      b.Labels,
		NetworkMode: "default", // BuildKit's own sandbox network: never the host's
		Remove:      true,
		ForceRemove: true,
	})
	if err != nil {
		return "", nil, fmt.Errorf("start the build: %w", err)
	}
	defer resp.Body.Close()
	stopped := context.AfterFunc(ctx, func() {
		// The engine goes on building after the client leaves; ask it to stop.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.docker.BuildCancel(cctx, buildID)
	})
	defer stopped()
	p := newProgress(r.log)
	id, failed, err := p.read(ctx, resp.Body)
	p.flush()
	return id, failed, err
}

// buildFailure is what made a build fail: the step (BuildKit's vertex
// name, e.g. `[2/3] RUN make`) when one failed, and the message.
type buildFailure struct {
	step    string
	message string
}

// progress turns BuildKit's status stream into log lines in the style of
// `docker build --progress=plain`: "#3 [2/3] RUN make", the step's output
// as "#3 <line>", then "#3 CACHED", "#3 DONE 1.2s" or "#3 ERROR: …".
type progress struct {
	log      io.Writer
	numbers  map[string]int
	names    map[string]string
	started  map[string]bool
	done     map[string]bool
	partial  map[string]string
	failed   *buildFailure
	lastStep string
}

func newProgress(log io.Writer) *progress {
	return &progress{log: log, numbers: map[string]int{}, names: map[string]string{}, started: map[string]bool{},
		done: map[string]bool{}, partial: map[string]string{}}
}

func (p *progress) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(p.log, format+"\n", args...)
}

func (p *progress) number(digest string) int {
	n, ok := p.numbers[digest]
	if !ok {
		n = len(p.numbers) + 1
		p.numbers[digest] = n
	}
	return n
}

// read decodes the engine's build stream until it ends.
func (p *progress) read(ctx context.Context, body io.Reader) (string, *buildFailure, error) {
	var id string
	dec := json.NewDecoder(body)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return id, p.failed, nil
			}
			if ctx.Err() != nil {
				return "", nil, ctx.Err()
			}
			return "", nil, fmt.Errorf("read the build output: %w", err)
		}
		switch {
		case m.ID == buildkitTrace && len(m.Aux) > 0:
			var raw []byte
			if err := json.Unmarshal(m.Aux, &raw); err != nil {
				return "", nil, fmt.Errorf("read the build progress: %w", err)
			}
			var st controlapi.StatusResponse
			if err := st.UnmarshalVT(raw); err != nil {
				return "", nil, fmt.Errorf("read the build progress: %w", err)
			}
			p.status(&st)
		case m.ID == "moby.image.id" && len(m.Aux) > 0:
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil {
				id = aux.ID
			}
		case m.Stream != "":
			_, _ = io.WriteString(p.log, m.Stream)
		}
		if m.Error != "" || m.ErrorDetail != nil {
			msg := m.Error
			if msg == "" {
				msg = m.ErrorDetail.Message
			}
			if p.failed == nil {
				p.failed = &buildFailure{}
			}
			p.failed.message = strings.TrimSpace(msg)
		}
	}
}

// status prints what one progress message says.
func (p *progress) status(st *controlapi.StatusResponse) {
	for _, v := range st.Vertexes {
		n := p.number(v.Digest)
		p.names[v.Digest] = v.Name
		if v.Started != nil && !p.started[v.Digest] && !v.Cached {
			p.started[v.Digest] = true
			p.printf("#%d %s", n, v.Name)
		}
		if v.Completed == nil || p.done[v.Digest] {
			continue
		}
		p.done[v.Digest] = true
		p.flushVertex(v.Digest)
		switch {
		case v.Cached:
			p.printf("#%d %s CACHED", n, v.Name)
		case v.Error != "":
			p.printf("#%d ERROR: %s", n, firstLine(v.Error))
			if p.failed == nil && !strings.Contains(v.Error, context.Canceled.Error()) {
				p.failed = &buildFailure{step: v.Name, message: v.Error}
			}
		default:
			took := time.Duration(0)
			if v.Started != nil {
				took = v.Completed.AsTime().Sub(v.Started.AsTime())
			}
			p.printf("#%d DONE %.1fs", n, took.Seconds())
		}
	}
	for _, l := range st.Logs {
		n := p.number(l.Vertex)
		text := p.partial[l.Vertex] + string(l.Msg)
		lines := strings.Split(text, "\n")
		p.partial[l.Vertex] = lines[len(lines)-1]
		for _, line := range lines[:len(lines)-1] {
			p.printf("#%d %s", n, strings.TrimRight(line, "\r"))
		}
	}
}

func (p *progress) flushVertex(digest string) {
	if rest := p.partial[digest]; rest != "" {
		p.printf("#%d %s", p.number(digest), rest)
		delete(p.partial, digest)
	}
}

// flush prints output left without a line end.
func (p *progress) flush() {
	for digest := range p.partial {
		p.flushVertex(digest)
	}
}

var (
	buildkitStep     = regexp.MustCompile(`^\[(?:([^\]\s]+) )?(\d+)/(\d+)\] (.*)$`)
	buildkitExitCode = regexp.MustCompile(`exit code: (\d+)`)
	secretNotFound   = regexp.MustCompile(`secret ([^\s:]+)(?:: not found| not found)`)
)

// describe says what failed, for the deployment's description: the step
// and its instruction, the exit code or the first line of the error; a
// secret mount the app did not declare is named.
func (f *buildFailure) describe(syntax string) string {
	msg := f.message
	if m := secretNotFound.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s mounts secret %s, which is not in build_secrets", f.where(), m[1])
	}
	if syntax != "" && (strings.HasPrefix(f.step, "resolve image config for") || strings.Contains(msg, syntax)) {
		return fmt.Sprintf("line 1 `# syntax=%s` needs a frontend image that cannot be pulled", syntax)
	}
	where := f.where()
	if m := buildkitExitCode.FindStringSubmatch(msg); m != nil && f.step != "" {
		return where + " exited " + m[1]
	}
	if where != "" {
		return where + ": " + lastClause(msg)
	}
	return lastClause(msg)
}

// where names the failed step: "step 2/3 (RUN make)", with the stage when
// the Dockerfile names several.
func (f *buildFailure) where() string {
	m := buildkitStep.FindStringSubmatch(f.step)
	if m == nil {
		return f.step
	}
	stage := ""
	if m[1] != "" && m[1] != "stage-0" {
		stage = " of stage " + m[1]
	}
	return fmt.Sprintf("step %s/%s%s (%s)", m[2], m[3], stage, m[4])
}

// lastClause keeps the end of BuildKit's "failed to solve: …: …" chains,
// which is the part that says what is wrong.
func lastClause(msg string) string {
	msg = firstLine(msg)
	for _, prefix := range []string{"failed to solve with frontend dockerfile.v0: ", "failed to solve: ", "failed to build LLB: ",
		"failed to create LLB definition: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}
