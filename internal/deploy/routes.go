package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/container"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/store"
)

// RouteTable is the router's admin API as the engine drives it (SPEC §13);
// *routerapi.Client implements it.
type RouteTable interface {
	Health(ctx context.Context) error
	Put(ctx context.Context, service string, body routerapi.RouteBody) (router.Route, error)
	Switch(ctx context.Context, service string, body routerapi.SwitchBody) (router.SwitchResult, error)
	Routes(ctx context.Context) ([]router.Route, error)
	Delete(ctx context.Context, service string) error
}

// RouteService is the router's name of an app's route: its id, which never
// changes and, unlike owner/repo/name, fits the router's service names.
func RouteService(app store.App) string { return "app-" + strconv.FormatInt(app.ID, 10) }

// DefaultHost is an app's host name under the apps domain (appurl.Host).
func DefaultHost(app store.App, domain string) string { return appurl.Host(app, domain) }

// RouterReady checks that the router answers, for /readyz.
func (e *Engine) RouterReady(ctx context.Context) error {
	if e.routes == nil {
		return errors.New("router not in use")
	}
	if err := e.routes.Health(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return nil
}

// routed reports whether the engine puts apps' routes in the router: in
// domain mode by host name, in IP mode by the app's host port, which the
// router then owns (SPEC §13); containers publish on loopback ports only.
// A deployment decides once, when it creates its container (see pipeline).
func (e *Engine) routed() bool { return e.routes != nil && (e.present == nil || e.present()) }

// routeBody is app's route to target: its host names in domain mode, its
// host port in IP mode.
func (e *Engine) routeBody(app store.App, target string) routerapi.RouteBody {
	if e.cfg.AppsDomain != "" {
		return routerapi.RouteBody{Hosts: e.routeHosts(app), Target: target}
	}
	return routerapi.RouteBody{Port: app.HostPort, Target: target}
}

// holdsHostPort reports whether a container published on port holds the
// app's host port itself: one started before the router served IP mode.
// The router cannot listen on that port until the container lets it go.
func (e *Engine) holdsHostPort(app store.App, port int) bool {
	return e.cfg.AppsDomain == "" && app.HostPort != 0 && port == app.HostPort
}

// SyncRoutes puts every live app's route in the router, from the database:
// its host names to the container serving it on its host port. It
// runs at start-up and with every reconciliation, so a router that was down
// or restarted catches up; the router keeps routes it already has as they
// are when one cannot be put. An app whose deployment runs is skipped: that
// job routes it. Without a router it does nothing.
func (e *Engine) SyncRoutes(ctx context.Context) error {
	if !e.routed() {
		return nil
	}
	apps, err := e.store.AllApps(ctx)
	if err != nil {
		return fmt.Errorf("sync routes: %w", err)
	}
	have, err := e.routes.Routes(ctx)
	if err != nil {
		return fmt.Errorf("sync routes: list the router's routes: %w", err)
	}
	routed := map[string]bool{}
	for _, r := range have {
		routed[r.Service] = true
	}
	var errs []error
	for _, app := range apps {
		if app.RemovedAt != nil {
			// A removed app's route goes, even when the removal's own
			// teardown was cut short (a crash after the app was removed).
			if routed[RouteService(app)] {
				errs = append(errs, e.dropRoute(ctx, app))
			}
			continue
		}
		// Under the app's lock: a deployment running now switches the route
		// itself and must not see it put back to the container it replaces.
		errs = append(errs, e.withAppLock(ctx, app.ID, func(ctx context.Context) error {
			fresh, err := e.store.App(ctx, app.ID)
			if err != nil {
				return err
			}
			return e.putRoute(ctx, fresh)
		}))
	}
	return errors.Join(errs...)
}

// dropRoute removes a removed app's route from the router.
func (e *Engine) dropRoute(ctx context.Context, app store.App) error {
	if !e.routed() {
		return nil
	}
	var apiErr *routerapi.APIError
	if err := e.routes.Delete(ctx, RouteService(app)); errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return nil // never routed, or removed already
	} else if err != nil {
		return fmt.Errorf("remove the route of %s: %w", app.Key(), err)
	}
	e.logger.InfoContext(ctx, "route removed", slog.String("app", app.Key()))
	return nil
}

// putRoute puts one app's route to the container serving it, if one runs.
func (e *Engine) putRoute(ctx context.Context, app store.App) error {
	if !e.routed() || app.RemovedAt != nil || app.CurrentDeploymentID == 0 {
		return nil
	}
	serving, ok, err := e.servingContainer(ctx, app)
	if err != nil || !ok || serving.State != "running" {
		return err // one not running is started by reconciliation, then routed
	}
	port, err := e.publishedPort(ctx, serving.ID)
	if err != nil {
		return fmt.Errorf("put the route of %s: %w", app.Key(), err)
	}
	if e.holdsHostPort(app, port) {
		return nil // served on its port without the router until its next deploy
	}
	body := e.routeBody(app, net.JoinHostPort(e.cfg.ProbeHost, strconv.Itoa(port)))
	if err := e.putRouteBody(ctx, RouteService(app), body); err != nil {
		return fmt.Errorf("put the route of %s: %w", app.Key(), err)
	}
	return nil
}

// routeAfterDeploy puts the app's route after a deployment ended. The
// deployment's outcome stands whatever happens here: a route not put is
// logged and put again by the next reconciliation.
func (e *Engine) routeAfterDeploy(ctx context.Context, r *run) {
	if !e.routed() {
		return
	}
	app, err := e.store.App(ctx, r.app.ID)
	if err == nil {
		err = e.putRoute(ctx, app)
	}
	if err != nil {
		r.logger.WarnContext(ctx, "route after deploy", slog.String("error", err.Error()))
	}
}

// routerSwitch is the zero-downtime switch (SPEC §13): the new container
// starts beside the serving one on its loopback port, is checked directly,
// then the router moves the app's route to it and returns once the old
// container's in-flight requests drained; the caller then removes the old
// container. A new container that fails its check never gets traffic: the
// old one stays routed and serving throughout.
func (e *Engine) routerSwitch(ctx context.Context, r *run, sw Switch) (SwitchResult, error) {
	var res SwitchResult
	sw.Step(StepSwitch)
	if err := e.docker.ContainerStart(ctx, sw.Next, container.StartOptions{}); err != nil {
		return res, fmt.Errorf("start the new container: %w", err)
	}
	port, err := e.publishedPort(ctx, sw.Next)
	if err != nil {
		return res, err
	}
	sw.Step(StepHealth)
	res.Health = e.health.check(ctx, sw.Next, port, r.cfg)
	if !res.Health.Healthy {
		res.Restored = sw.Prev != "" // it never stopped serving
		return res, nil
	}
	if err := e.claimOrDrop(ctx, r, sw.Next); err != nil {
		return res, err // the serving version keeps its route and names
	}
	if err := e.freeHostPort(ctx, r, sw.Prev); err != nil {
		return res, err
	}
	out, err := e.moveRouteWhenUp(ctx, r, net.JoinHostPort(e.cfg.ProbeHost, strconv.Itoa(port)))
	if err != nil {
		return res, err
	}
	// Requests still in flight when the drain timed out are cut when the
	// old container stops: they count as failed.
	res.Routed, res.Drained, res.Failed = true, int(out.Drained), int(out.Failed+out.DrainTimedOut)
	return res, nil
}

// freeHostPort stops prev when it holds the app's host port itself (it was
// started before the router served IP mode), so that the router can take
// the port: a short gap, once per app, logged as such. Any other prev keeps
// serving until the router has switched.
func (e *Engine) freeHostPort(ctx context.Context, r *run, prev string) error {
	if prev == "" || e.cfg.AppsDomain != "" {
		return nil
	}
	port, err := e.publishedPort(ctx, prev)
	if err != nil || !e.holdsHostPort(r.app, port) {
		return nil // gone or not publishing: nothing holds the port
	}
	r.log.Printf("The serving container holds port %d itself (started before the router): stopping it so the router can take the port; this one switch has a short gap", port)
	timeout := int(e.cfg.StopTimeout.Seconds())
	if err := e.docker.ContainerStop(ctx, prev, container.StopOptions{Timeout: &timeout}); err != nil {
		return fmt.Errorf("stop the container holding port %d: %w", port, err)
	}
	return nil
}
