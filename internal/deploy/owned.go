package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/keystone-app/keystone/internal/store"
)

// Ownership (SPEC §6): Keystone starts, keeps and removes exactly the
// containers whose ids it recorded in the store when it created them, and
// uses and prunes exactly the images whose ids it recorded on deployments.
// Labels are for people and tools, and for listing candidates in one call;
// any Dockerfile can write them, so they never decide anything.

// ownedState is a recorded container as the engine sees it now.
type ownedState struct {
	store.OwnedContainer
	State   string // Docker's state; "" when the container is gone
	Created string
}

// inspectOwned returns the state of the recorded containers cs; one the
// engine no longer has is forgotten and left out.
func (e *Engine) inspectOwned(ctx context.Context, cs []store.OwnedContainer) ([]ownedState, error) {
	var out []ownedState
	for _, c := range cs {
		info, err := e.docker.ContainerInspect(ctx, c.ID)
		if client.IsErrNotFound(err) {
			if err := e.store.ForgetOwnedContainer(ctx, c.ID); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspect container %s: %w", shortID(c.ID), err)
		}
		st := ownedState{OwnedContainer: c, Created: info.Created}
		if info.State != nil {
			st.State = info.State.Status
		}
		out = append(out, st)
	}
	return out, nil
}

// removeContainer stops and removes a container Keystone recorded, then
// forgets it; one already gone is only forgotten. An id Keystone did not
// record is refused.
func (e *Engine) removeContainer(ctx context.Context, instance, id string) error {
	owned, err := e.isOwned(ctx, id)
	if err != nil {
		return err
	}
	if !owned {
		return fmt.Errorf("container %s was not created by Keystone: not removing it", shortID(id))
	}
	info, err := e.docker.ContainerInspect(ctx, id)
	switch {
	case client.IsErrNotFound(err):
		return e.store.ForgetOwnedContainer(ctx, id)
	case err != nil:
		return fmt.Errorf("inspect container %s: %w", shortID(id), err)
	case info.Config == nil || !ours(instance, info.Config.Labels):
		return fmt.Errorf("container %s does not carry this Keystone's labels: not removing it", shortID(id))
	}
	if err := e.docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
	return e.store.ForgetOwnedContainer(ctx, id)
}

// isOwned reports whether Keystone recorded container id.
func (e *Engine) isOwned(ctx context.Context, id string) (bool, error) {
	return e.store.IsOwnedContainer(ctx, id)
}

// removeContainersOf removes what an interrupted attempt left of deployment
// d: its recorded containers, and a container under the deployment's own
// name made from the deployment's recorded image (the attempt crashed
// between creating it and recording it; container names cannot be chosen
// by a build).
func (e *Engine) removeContainersOf(ctx context.Context, instance string, app store.App, d store.Deployment) error {
	list, err := e.store.OwnedContainersOfDeployment(ctx, d.ID)
	if err != nil {
		return err
	}
	for _, c := range list {
		if err := e.removeContainer(ctx, instance, c.ID); err != nil {
			return err
		}
	}
	info, err := e.docker.ContainerInspect(ctx, containerName(instance, app, d))
	if client.IsErrNotFound(err) || errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for a leftover container of deployment %d: %w", d.ID, err)
	}
	if d.ImageID == "" || info.Image != d.ImageID || info.Config == nil || !ours(instance, info.Config.Labels) {
		return fmt.Errorf("a container named %s exists that Keystone cannot tell as its own: remove it by hand", containerName(instance, app, d))
	}
	if err := e.docker.ContainerRemove(ctx, info.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove the leftover container %s: %w", shortID(info.ID), err)
	}
	return nil
}

// servingContainer returns the recorded container of the app's current
// deployment, a running one first, then the newest.
func (e *Engine) servingContainer(ctx context.Context, app store.App) (ownedState, bool, error) {
	if app.CurrentDeploymentID == 0 {
		return ownedState{}, false, nil
	}
	rows, err := e.store.OwnedContainersOfDeployment(ctx, app.CurrentDeploymentID)
	if err != nil {
		return ownedState{}, false, err
	}
	list, err := e.inspectOwned(ctx, rows)
	if err != nil || len(list) == 0 {
		return ownedState{}, false, err
	}
	slices.SortStableFunc(list, func(a, b ownedState) int {
		if (a.State == "running") != (b.State == "running") {
			if a.State == "running" {
				return -1
			}
			return 1
		}
		return -compareStrings(a.Created, b.Created)
	})
	return list[0], true, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// foreignContainers returns the containers that carry app's label but that
// Keystone did not record: reported, never adopted or removed.
func (e *Engine) foreignContainers(ctx context.Context, app store.App) ([]container.Summary, error) {
	list, err := e.docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelApp+"="+app.Key()))})
	if err != nil {
		return nil, fmt.Errorf("list containers labelled %s: %w", app.Key(), err)
	}
	owned, err := e.store.OwnedContainersOfApp(ctx, app.ID)
	if err != nil {
		return nil, err
	}
	var out []container.Summary
	for _, c := range list {
		if !slices.ContainsFunc(owned, func(o store.OwnedContainer) bool { return o.ID == c.ID }) {
			out = append(out, c)
		}
	}
	return out, nil
}

// labelledImages returns the ids of the images that carry this instance's
// labels and app's: candidates, which only a recorded id makes Keystone's.
func (e *Engine) labelledImages(ctx context.Context, instance string, app store.App) (map[string]bool, error) {
	images, err := e.docker.ImageList(ctx, image.ListOptions{Filters: ownFilter(instance, LabelApp+"="+app.Key())})
	if err != nil {
		return nil, fmt.Errorf("list images of %s: %w", app.Key(), err)
	}
	out := map[string]bool{}
	for _, img := range images {
		out[img.ID] = true
	}
	return out, nil
}

// appImages returns the images Keystone recorded on app's deployments that
// the engine still has.
func (e *Engine) appImages(ctx context.Context, instance string, app store.App) ([]string, error) {
	recorded, err := e.store.AppImageIDs(ctx, app.ID)
	if err != nil {
		return nil, err
	}
	present, err := e.labelledImages(ctx, instance, app)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range recorded {
		if present[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// removeImages removes every recorded image of a removed app.
func (e *Engine) removeImages(ctx context.Context, instance string, app store.App) error {
	ids, err := e.appImages(ctx, instance, app)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if _, err := e.docker.ImageRemove(ctx, id, image.RemoveOptions{PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
