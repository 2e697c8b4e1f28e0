package deploy

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/store"
)

// tailLines is how much of a new container's output is kept in the log.
const tailLines = 200

// switchTo puts container next in service through the Switcher and records
// the outcome: health, downtime, and success or failure with the previous
// version serving.
func (e *Engine) switchTo(ctx context.Context, r *run, next string, hostPort int) error {
	prev, hasPrev, err := e.servingContainer(ctx, r.app)
	if err != nil {
		return err
	}
	prevCfg := r.cfg
	if hasPrev {
		if raw, err := e.store.DeploymentConfig(ctx, r.app.CurrentDeploymentID); err == nil {
			if c, err := keystoneyml.DecodeApp(raw); err == nil {
				prevCfg = c
			}
		}
	}
	sw := Switch{
		Next:      next,
		CheckNext: func(ctx context.Context) HealthResult { return e.health.check(ctx, next, hostPort, r.cfg) },
		CheckPrev: func(ctx context.Context) HealthResult { return e.health.check(ctx, prev.ID, hostPort, prevCfg) },
		Step: func(step string) {
			desc := map[string]string{StepSwitch: descStarting(r.d.SHA), StepHealth: descChecking,
				StepRestore: "Restoring " + shortSHA(r.servingSHA)}[step]
			if err := e.step(ctx, r, step, desc); err != nil {
				r.logger.WarnContext(ctx, "record step", slog.String("step", step), slog.String("error", err.Error()))
			}
		},
	}
	if hasPrev {
		sw.Prev = prev.ID
	}
	var res SwitchResult
	if hostPort == 0 { // created for the router (pipeline)
		res, err = e.routerSwitch(ctx, r, sw)
	} else if err = e.claimOrDrop(ctx, r, next); err == nil {
		// Domain mode without a router (none at start-up): the names are
		// claimed before the switch, as nothing routes them yet.
		res, err = e.switcher.Switch(ctx, sw)
	}
	if err != nil {
		return err
	}
	if res.Routed {
		if r.d, err = e.store.SetDeploymentDrain(ctx, r.d.ID, res.Drained, res.Failed); err != nil {
			return err
		}
		r.log.Printf("Switched through the router: %d in-flight requests drained, %d failed", res.Drained, res.Failed)
	}
	h := res.Health
	r.d, err = e.store.SetDeploymentHealth(ctx, r.d.ID, store.Health{Status: h.Status, After: healthyAfter(h), Error: h.Err})
	if err != nil {
		return err
	}
	if res.DowntimeMeasured {
		if r.d, err = e.store.SetDeploymentDowntime(ctx, r.d.ID, res.Downtime); err != nil {
			return err
		}
		r.log.Printf("Downtime while switching: %s", seconds(res.Downtime))
	}
	e.keepOutput(ctx, r, next)
	if !h.Healthy {
		e.metrics.health.WithLabelValues("unhealthy").Inc()
		e.endStep(ctx, r, h.Problem())
		if err := e.removeContainer(context.WithoutCancel(ctx), r.instance, next); err != nil {
			r.logger.WarnContext(ctx, "remove the unhealthy container", slog.String("error", err.Error()))
		}
		return e.finish(ctx, r, store.StateFailed, descHealthFailed(h, r.servingSHA, res.Restored))
	}
	e.metrics.health.WithLabelValues("healthy").Inc()
	started := time.Now()
	if r.d.StartedAt != nil {
		started = *r.d.StartedAt
	}
	if err := e.finish(ctx, r, store.StateSucceeded, descDeployed(time.Since(started), h)); err != nil {
		return err
	}
	e.cleanup(ctx, r, prev.ID, hasPrev, res.Routed)
	return nil
}

func healthyAfter(h HealthResult) time.Duration {
	if h.Healthy {
		return max(h.After, time.Millisecond)
	}
	return 0
}

// keepOutput stores the new container's output so far (its last 200 lines)
// in the deployment log, redacted.
func (e *Engine) keepOutput(ctx context.Context, r *run, id string) {
	lines, err := e.containerTail(ctx, id, tailLines)
	if err != nil {
		r.logger.WarnContext(ctx, "read the container's output", slog.String("error", err.Error()))
		return
	}
	if len(lines) == 0 {
		r.log.Printf("The new container printed nothing")
		return
	}
	r.log.Tail(ctx, "Output of the new container (last 200 lines at most):", lines)
}

// cleanup removes the container that served before, or keeps it for
// keep_previous when traffic moved through the router (routed), and prunes
// old images. The deployment has succeeded already: problems here are
// logged only.
func (e *Engine) cleanup(ctx context.Context, r *run, prev string, hasPrev, routed bool) {
	pos, err := e.store.StartStep(ctx, r.d.ID, StepCleanup)
	if err != nil {
		r.logger.WarnContext(ctx, "record cleanup", slog.String("error", err.Error()))
	}
	var problem string
	if hasPrev {
		problem = e.keepOrRemovePrevious(ctx, r, prev, routed)
	}
	if err := e.pruneImages(ctx, r.instance, r.app); err != nil {
		problem = err.Error()
		r.logger.WarnContext(ctx, "prune images", slog.String("error", err.Error()))
	}
	if pos > 0 {
		// Without cancel: a job stopped mid-cleanup must not leave the step open.
		if err := e.store.FinishStep(context.WithoutCancel(ctx), r.d.ID, pos, problem); err != nil {
			r.logger.WarnContext(ctx, "record end of cleanup", slog.String("error", err.Error()))
		}
	}
}

// pruneImages removes the app's images but those of its last KeepImages
// successful deployments, the one serving, and unfinished deployments'.
// Images in use by a container are left by the engine.
func (e *Engine) pruneImages(ctx context.Context, instance string, app store.App) error {
	keep := map[string]bool{}
	succeeded, err := e.store.SucceededDeployments(ctx, app.ID, e.cfg.KeepImages*4)
	if err != nil {
		return err
	}
	kept := 0
	for _, d := range succeeded {
		if d.ImageID != "" && !keep[d.ImageID] && kept < e.cfg.KeepImages {
			keep[d.ImageID] = true
			kept++
		}
	}
	unfinished, err := e.store.UnfinishedDeployments(ctx, app.ID)
	if err != nil {
		return err
	}
	for _, d := range unfinished {
		keep[d.ImageID] = true
	}
	if cur, err := e.store.Deployment(ctx, app.CurrentDeploymentID); err == nil {
		keep[cur.ImageID] = true
	}
	ids, err := e.appImages(ctx, instance, app)
	if err != nil {
		return err
	}
	var removed []string
	for _, id := range ids {
		if keep[id] {
			continue
		}
		if _, err := e.docker.ImageRemove(ctx, id, image.RemoveOptions{PruneChildren: true}); err != nil {
			e.logger.WarnContext(ctx, "remove an old image", slog.String("app", app.Key()),
				slog.String("image", shortID(id)), slog.String("error", err.Error()))
			continue
		}
		removed = append(removed, shortID(id))
	}
	if len(removed) > 0 {
		slices.Sort(removed)
		e.logger.InfoContext(ctx, "old images pruned", slog.String("app", app.Key()), slog.Any("images", removed))
	}
	return nil
}
