package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/store"
)

// containerEnv is the container's environment: the config's env, then the
// app's secrets, then PORT; a later source overrides an earlier one.
func containerEnv(cfg keystoneyml.App, secrets map[string]string) []string {
	vars := map[string]string{}
	for k, v := range cfg.Env {
		vars[k] = v
	}
	for k, v := range secrets {
		vars[k] = v
	}
	vars["PORT"] = strconv.Itoa(cfg.Port)
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// createContainer creates, without starting, the container of deployment d
// from imageID, published on hostPort (SPEC §6: labels, env, restart policy
// unless-stopped, memory/CPU/pids limits, no-new-privileges, no privileged
// mode, no mounts).
func (e *Engine) createContainer(ctx context.Context, instance string, app store.App, d store.Deployment,
	cfg keystoneyml.App, secrets map[string]string, imageID string, hostPort int) (string, error) {
	port := nat.Port(strconv.Itoa(cfg.Port) + "/tcp")
	pids := e.cfg.PidsLimit
	resp, err := e.docker.ContainerCreate(ctx,
		&container.Config{
			Image:        imageID,
			Env:          containerEnv(cfg, secrets),
			Labels:       e.labels(instance, app, d),
			ExposedPorts: nat.PortSet{port: {}},
		},
		&container.HostConfig{
			PortBindings:  nat.PortMap{port: {{HostPort: strconv.Itoa(hostPort)}}},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			Resources: container.Resources{
				Memory:     cfg.Memory,
				MemorySwap: cfg.Memory, // no swap on top
				NanoCPUs:   int64(cfg.CPUs * 1e9),
				PidsLimit:  &pids,
			},
			SecurityOpt: []string{"no-new-privileges"},
			Privileged:  false,
			LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{
				"max-size": "10m", "max-file": "3",
			}},
		},
		nil, nil, containerName(instance, app, d))
	if err != nil {
		return "", fmt.Errorf("create the container of deployment %d: %w", d.ID, err)
	}
	return resp.ID, nil
}

// containers lists this instance's containers (running or not) carrying
// the labels given as "key=value".
func (e *Engine) containers(ctx context.Context, instance string, labels ...string) ([]container.Summary, error) {
	list, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: ownFilter(instance, labels...)})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	// The filter is the engine's; check again before touching anything.
	out := list[:0]
	for _, c := range list {
		if ours(instance, c.Labels) {
			out = append(out, c)
		}
	}
	return out, nil
}

// removeContainer stops and removes a container of this instance; one
// already gone is not an error.
func (e *Engine) removeContainer(ctx context.Context, instance, id string) error {
	info, err := e.docker.ContainerInspect(ctx, id)
	if client.IsErrNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", shortID(id), err)
	}
	if info.Config == nil || !ours(instance, info.Config.Labels) {
		return fmt.Errorf("container %s is not Keystone's: not removing it", shortID(id))
	}
	if err := e.docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
	return nil
}

// containerTail returns the last n lines of a container's output.
func (e *Engine) containerTail(ctx context.Context, id string, n int) ([]string, error) {
	rc, err := e.docker.ContainerLogs(ctx, id, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n),
	})
	if err != nil {
		return nil, fmt.Errorf("read the output of container %s: %w", shortID(id), err)
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		pw.CloseWithError(err)
	}()
	var lines []string
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes*2)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), "\r"))
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// servingContainer finds the container of the app's current deployment.
func (e *Engine) servingContainer(ctx context.Context, instance string, app store.App) (container.Summary, bool, error) {
	if app.CurrentDeploymentID == 0 {
		return container.Summary{}, false, nil
	}
	list, err := e.containers(ctx, instance, LabelDeployment+"="+strconv.FormatInt(app.CurrentDeploymentID, 10))
	if err != nil || len(list) == 0 {
		return container.Summary{}, false, err
	}
	// Prefer a running one if an interrupted restore left two.
	slices.SortFunc(list, func(a, b container.Summary) int {
		if (a.State == "running") != (b.State == "running") {
			if a.State == "running" {
				return -1
			}
			return 1
		}
		return int(b.Created - a.Created)
	})
	return list[0], true, nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// appFilter selects the containers and images of one app.
func appFilter(instance string, app store.App) filters.Args {
	return ownFilter(instance, LabelApp+"="+app.Key())
}
