package deploy

import (
	"context"
	"time"

	"github.com/keystone-app/keystone/internal/store"
)

// ContainerState is what the engine says of an app's serving container,
// for the status page.
type ContainerState struct {
	// State is Docker's (running, exited, restarting…), "missing" when the
	// serving deployment has no container, "" when nothing serves.
	State     string
	StartedAt time.Time
	ImageID   string
	// Output is the container's last lines of output, redacted of the
	// app's secrets.
	Output []string
}

// stateLines is how much output ContainerState returns.
const stateLines = 100

// ContainerState reports the app's serving container.
func (e *Engine) ContainerState(ctx context.Context, app store.App) (ContainerState, error) {
	instance, err := e.instance(ctx)
	if err != nil {
		return ContainerState{}, err
	}
	c, found, err := e.servingContainer(ctx, instance, app)
	switch {
	case err != nil:
		return ContainerState{}, err
	case app.CurrentDeploymentID == 0:
		return ContainerState{}, nil
	case !found:
		return ContainerState{State: "missing"}, nil
	}
	info, err := e.docker.ContainerInspect(ctx, c.ID)
	if err != nil {
		return ContainerState{}, err
	}
	st := ContainerState{State: c.State, ImageID: info.Image}
	if info.State != nil {
		st.StartedAt, _ = time.Parse(time.RFC3339Nano, info.State.StartedAt)
	}
	lines, err := e.containerTail(ctx, c.ID, stateLines)
	if err != nil {
		return st, err
	}
	secrets, err := e.appSecrets(ctx, app.ID)
	if err != nil {
		return st, err
	}
	r := newLogRedactor(secrets)
	for _, l := range lines {
		st.Output = append(st.Output, r.Redact(l))
	}
	return st, nil
}
