package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/store"
)

// keep_previous (SPEC §5, §13). After a successful switch
// through the router, the replaced container is not removed: it stays
// running, unrouted, recorded as Keystone's (owned_containers) with a
// keep-until time. Reconciliation leaves it alone until then and removes
// it after. A rollback to its deployment inside the window is a switch of
// routes to it: no image is started. At most one container per app is kept:
// keeping one removes any other kept before.

// moveRoute moves the app's route to target through the router, waiting up
// to the app's drain_timeout for the old target's in-flight requests. A
// route the router does not have (a first deploy, a router that lost it) is
// put instead: nothing to drain.
func (e *Engine) moveRoute(ctx context.Context, r *run, target string) (router.SwitchResult, error) {
	service := RouteService(r.app)
	out, err := e.routes.Switch(ctx, service, routerapi.SwitchBody{Target: target, DrainTimeout: r.cfg.Drain().String()})
	var apiErr *routerapi.APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		out = router.SwitchResult{}
		var fresh store.App
		if fresh, err = e.store.App(ctx, r.app.ID); err == nil { // with the names just claimed
			err = e.putRouteBody(ctx, service, e.routeBody(fresh, target))
		}
	}
	if err != nil {
		return out, fmt.Errorf("switch the route of %s: %w", r.app.Key(), err)
	}
	return out, nil
}

// keepOrRemovePrevious is cleanup's choice for the container that served
// before: kept for the app's keep_previous after a switch through the
// router, removed otherwise. It returns a problem to record, "" if none.
func (e *Engine) keepOrRemovePrevious(ctx context.Context, r *run, prev string, routed bool) string {
	if r.cfg.KeepPrevious > 0 && routed {
		until := e.now().Add(r.cfg.KeepPrevious)
		if err := e.store.KeepOwnedContainer(ctx, prev, until); err == nil {
			r.log.Printf("Keeping the previous container %s running, unrouted, until %s for an instant rollback (keep_previous %s)",
				shortID(prev), until.UTC().Format("15:04:05 MST"), r.cfg.KeepPrevious)
			return e.dropOtherKept(ctx, r, prev)
		} else {
			r.logger.WarnContext(ctx, "keep the previous container", slog.String("error", err.Error()))
		}
	} else if r.cfg.KeepPrevious > 0 {
		r.log.Printf("keep_previous needs the router (keystone proxy) to switch through: the previous container is removed")
	}
	if err := e.removeContainer(ctx, r.instance, prev); err != nil {
		r.logger.WarnContext(ctx, "remove the previous container", slog.String("error", err.Error()))
		return err.Error()
	}
	return ""
}

// dropOtherKept removes the app's kept containers other than keep.
func (e *Engine) dropOtherKept(ctx context.Context, r *run, keep string) string {
	owned, err := e.store.OwnedContainersOfApp(ctx, r.app.ID)
	if err != nil {
		return err.Error()
	}
	var problem string
	for _, c := range owned {
		if c.ID == keep || c.KeepUntil == nil {
			continue
		}
		if err := e.removeContainer(ctx, r.instance, c.ID); err != nil {
			r.logger.WarnContext(ctx, "remove an older kept container", slog.String("error", err.Error()))
			problem = err.Error()
			continue
		}
		r.log.Printf("Removed the older kept container %s", shortID(c.ID))
	}
	return problem
}

// rollbackToKept rolls back by a switch of routes when the target
// deployment's container is kept and answers: the route moves to it, it
// becomes this deployment's container, and the container left is kept in
// turn. done is false when there is no such container (the window passed,
// IP mode, not a rollback): the rollback then starts the target's image.
func (e *Engine) rollbackToKept(ctx context.Context, r *run) (done bool, err error) {
	if r.d.Kind != store.KindRollback || !e.routed() || r.d.TargetDeploymentID == 0 {
		return false, nil
	}
	kept, port, health, ok, err := e.keptContainerOf(ctx, r, r.d.TargetDeploymentID)
	if err != nil || !ok {
		return false, err
	}
	if err := e.step(ctx, r, StepSwitch, "Switching back to "+shortSHA(r.d.SHA)); err != nil {
		return false, err
	}
	prev, hasPrev, err := e.servingContainer(ctx, r.app)
	if err != nil {
		return false, err
	}
	began := time.Now()
	if r.d.StartedAt != nil {
		began = *r.d.StartedAt
	}
	if err := e.claimHosts(ctx, r); err != nil {
		return false, err // the target's domains: are another app's now: a failure naming the host
	}
	out, err := e.moveRoute(ctx, r, net.JoinHostPort(e.cfg.ProbeHost, strconv.Itoa(port)))
	if err != nil {
		return false, err
	}
	answering := time.Since(began)
	// The route moved first: an attempt cut short here finds the container
	// still kept and switches to it again.
	if err := e.store.AdoptKeptContainer(ctx, kept.ID, r.d.ID); err != nil {
		return false, err
	}
	target, err := e.store.Deployment(ctx, r.d.TargetDeploymentID)
	if err != nil {
		return false, err
	}
	if r.d, err = e.store.SetDeploymentImage(ctx, r.d.ID, target.ImageID); err != nil {
		return false, err
	}
	if r.d, err = e.store.SetDeploymentContainer(ctx, r.d.ID, kept.ID); err != nil {
		return false, err
	}
	failed := int(out.Failed + out.DrainTimedOut)
	if r.d, err = e.store.SetDeploymentDrain(ctx, r.d.ID, int(out.Drained), failed); err != nil {
		return false, err
	}
	if r.d, err = e.store.SetDeploymentHealth(ctx, r.d.ID, store.Health{Status: health.Status, After: healthyAfter(health)}); err != nil {
		return false, err
	}
	r.log.Printf("Rolled back by a route switch to the kept container %s of deployment #%d: no image started; %s answering %s after the job started",
		shortID(kept.ID), target.ID, shortSHA(target.SHA), answering.Round(time.Millisecond))
	r.log.Printf("Switched through the router: %d in-flight requests drained, %d failed", out.Drained, failed)
	e.metrics.health.WithLabelValues("healthy").Inc()
	desc := clipDescription(fmt.Sprintf("Rolled back in %s by a route switch to the kept container", seconds(time.Since(began))))
	if err := e.finish(ctx, r, store.StateSucceeded, desc); err != nil {
		return true, err
	}
	e.cleanup(ctx, r, prev.ID, hasPrev, true)
	return true, nil
}

// keptContainerOf returns the kept, running container of deployment
// deploymentID that answers on its loopback port, if there is one.
func (e *Engine) keptContainerOf(ctx context.Context, r *run, deploymentID int64) (ownedState, int, HealthResult, bool, error) {
	var none HealthResult
	rows, err := e.store.OwnedContainersOfDeployment(ctx, deploymentID)
	if err != nil {
		return ownedState{}, 0, none, false, err
	}
	now := e.now()
	for _, c := range rows {
		if c.AppID != r.app.ID || !c.KeptAt(now) {
			continue
		}
		list, err := e.inspectOwned(ctx, []store.OwnedContainer{c})
		if err != nil {
			return ownedState{}, 0, none, false, err
		}
		if len(list) == 0 || list[0].State != "running" {
			continue
		}
		port, err := e.publishedPort(ctx, c.ID)
		if err != nil {
			return ownedState{}, 0, none, false, err
		}
		if h := e.keptAnswers(ctx, r, c.ID, port); h.Healthy {
			return list[0], port, h, true, nil
		}
		r.log.Printf("The kept container %s of deployment #%d does not answer: starting its image instead", shortID(c.ID), deploymentID)
	}
	return ownedState{}, 0, none, false, nil
}

// keptAnswers checks a kept container before traffic goes back to it: its
// health path answers 2xx/3xx, or, without one, its port accepts a
// connection (it has run far longer than the usual 5 s already).
func (e *Engine) keptAnswers(ctx context.Context, r *run, id string, port int) HealthResult {
	if r.cfg.HealthCheckPath != "" {
		return e.health.check(ctx, id, port, r.cfg)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok := dialOK(ctx, net.JoinHostPort(e.cfg.ProbeHost, strconv.Itoa(port)))
	return HealthResult{Healthy: ok, Answered: time.Now(), After: time.Since(start)}
}
