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
// from imageID, published on hostPort, or with hostPort 0 on an ephemeral
// loopback port for the router to reach (SPEC §6, §13: labels, env, restart policy
// unless-stopped, memory/CPU/pids limits, no-new-privileges, no privileged
// mode, no mounts).
func (e *Engine) createContainer(ctx context.Context, instance string, app store.App, d store.Deployment,
	cfg keystoneyml.App, secrets map[string]string, imageID string, hostPort int) (string, error) {
	port := nat.Port(strconv.Itoa(cfg.Port) + "/tcp")
	pids := e.cfg.PidsLimit
	network, err := e.appsNetwork(ctx)
	if err != nil {
		return "", err
	}
	// A deployment recorded before the operator lowered the caps runs
	// under the caps.
	memory, cpus := min(cfg.Memory, e.cfg.MaxMemory), min(cfg.CPUs, e.cfg.MaxCPUs)
	binding := nat.PortBinding{HostPort: strconv.Itoa(hostPort)}
	if hostPort == 0 {
		binding = nat.PortBinding{HostIP: "127.0.0.1"}
	}
	resp, err := e.docker.ContainerCreate(ctx,
		&container.Config{
			Image:        imageID,
			Env:          containerEnv(cfg, secrets),
			Labels:       e.labels(instance, app, d),
			ExposedPorts: nat.PortSet{port: {}},
		},
		&container.HostConfig{
			PortBindings:  nat.PortMap{port: {binding}},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			Resources: container.Resources{
				Memory:     memory,
				MemorySwap: memory, // no swap on top
				NanoCPUs:   int64(cpus * 1e9),
				PidsLimit:  &pids,
			},
			SecurityOpt: []string{"no-new-privileges"},
			CapDrop:     []string{"NET_RAW"},
			Privileged:  false,
			NetworkMode: container.NetworkMode(network),
			LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{
				"max-size": "10m", "max-file": "3",
			}},
		},
		nil, nil, containerName(instance, app, d))
	if err != nil {
		return "", fmt.Errorf("create the container of deployment %d: %w", d.ID, err)
	}
	// Recorded before anything else happens to it: from here on it is
	// Keystone's by its id, whatever any label says.
	if err := e.store.AddOwnedContainer(ctx, resp.ID, app.ID, d.ID); err != nil {
		_ = e.docker.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true})
		return "", err
	}
	return resp.ID, nil
}

// publishedPort returns the host port container id's app port is published
// on (an ephemeral one is known once the container runs).
func (e *Engine) publishedPort(ctx context.Context, id string) (int, error) {
	info, err := e.docker.ContainerInspect(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("inspect container %s: %w", shortID(id), err)
	}
	if info.NetworkSettings != nil {
		for _, bindings := range info.NetworkSettings.Ports {
			for _, b := range bindings {
				if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 {
					return p, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("container %s publishes no port", shortID(id))
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

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
