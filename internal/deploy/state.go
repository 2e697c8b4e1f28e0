package deploy

import (
	"context"
	"strings"
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
	// Foreign are containers that carry the app's label but that Keystone
	// did not create: shown, never adopted or removed.
	Foreign []ForeignContainer
}

// ForeignContainer is a container labelled as an app's that Keystone did
// not create.
type ForeignContainer struct {
	ID, Name, Image, State string
}

// stateLines is how much output ContainerState returns.
const stateLines = 100

// ContainerState reports the app's serving container.
func (e *Engine) ContainerState(ctx context.Context, app store.App) (ContainerState, error) {
	foreign, err := e.foreignContainers(ctx, app)
	if err != nil {
		return ContainerState{}, err
	}
	var others []ForeignContainer
	for _, c := range foreign {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		others = append(others, ForeignContainer{ID: shortID(c.ID), Name: name, Image: c.Image, State: c.State})
	}
	c, found, err := e.servingContainer(ctx, app)
	switch {
	case err != nil:
		return ContainerState{}, err
	case app.CurrentDeploymentID == 0:
		return ContainerState{Foreign: others}, nil
	case !found:
		return ContainerState{State: "missing", Foreign: others}, nil
	}
	info, err := e.docker.ContainerInspect(ctx, c.ID)
	if err != nil {
		return ContainerState{}, err
	}
	st := ContainerState{State: c.State, ImageID: info.Image, Foreign: others}
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
