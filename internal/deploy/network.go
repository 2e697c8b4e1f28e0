package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// AppsNetwork is the Docker network every app container joins: a bridge
// with inter-container communication disabled, so that no app reaches
// another app's container, while published ports (the router, health
// checks) still reach each. One network for all apps, not one per app:
// Docker's default address pools run out after about 30 bridge networks.
const AppsNetwork = "keystone-apps"

// iccOption is the bridge driver's switch for traffic between containers.
const iccOption = "com.docker.network.bridge.enable_icc"

// NetworkAPI is the part of the Engine API that makes the apps' network.
type NetworkAPI interface {
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	NetworkRemove(ctx context.Context, networkID string) error
}

// appsNetwork makes sure AppsNetwork exists with inter-container traffic
// off, and returns its id. Docker allows two networks of one name, and two
// Keystones (or tests) starting at once may each create one: all then use
// the oldest, and the others are removed. A network of that name that
// allows traffic between containers is refused, not used.
func (e *Engine) appsNetwork(ctx context.Context) (string, error) {
	e.builderMu.Lock()
	defer e.builderMu.Unlock()
	if e.network != "" {
		return e.network, nil
	}
	list, err := e.namedNetworks(ctx)
	if err != nil {
		return "", err
	}
	if len(list) == 0 {
		_, err := e.docker.NetworkCreate(ctx, AppsNetwork, network.CreateOptions{
			Driver:  "bridge",
			Options: map[string]string{iccOption: "false"},
			Labels:  map[string]string{"io.keystone.network": "apps"},
		})
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			return "", fmt.Errorf("create the apps' network %s: %w", AppsNetwork, err)
		}
		if list, err = e.namedNetworks(ctx); err != nil {
			return "", err
		}
	}
	if len(list) == 0 {
		return "", fmt.Errorf("the apps' network %s disappeared as it was made", AppsNetwork)
	}
	oldest := list[0]
	for _, extra := range list[1:] {
		if err := e.docker.NetworkRemove(ctx, extra.ID); err != nil && !client.IsErrNotFound(err) {
			e.logger.WarnContext(ctx, "remove a duplicate of the apps' network", "network", shortID(extra.ID), "error", err.Error())
		}
	}
	if oldest.Driver != "bridge" || oldest.Options[iccOption] != "false" {
		return "", fmt.Errorf("network %s exists but lets containers talk to each other (%s is not false): remove it and Keystone makes it again",
			AppsNetwork, iccOption)
	}
	e.network = oldest.ID
	return e.network, nil
}

// namedNetworks lists the networks named exactly AppsNetwork, oldest first.
func (e *Engine) namedNetworks(ctx context.Context) ([]network.Summary, error) {
	all, err := e.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", AppsNetwork))})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	var out []network.Summary
	for _, n := range all {
		if n.Name == AppsNetwork {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b network.Summary) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
