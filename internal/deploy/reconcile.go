package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/store"
)

// RunReconciler reconciles at once and then every ReconcileInterval until
// ctx ends (SPEC §6: after a crash nothing is orphaned and the last good
// deployment serves).
func (e *Engine) RunReconciler(ctx context.Context) error {
	t := time.NewTicker(e.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		if err := e.Reconcile(ctx); err != nil && ctx.Err() == nil {
			e.logger.WarnContext(ctx, "reconcile", slog.String("error", err.Error()))
		}
		if err := e.SyncRoutes(ctx); err != nil && ctx.Err() == nil {
			e.logger.WarnContext(ctx, "sync routes", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reconcile matches the containers Keystone recorded against the database,
// one app at a time under the app's lock (an app whose job runs is skipped:
// the job owns it):
//   - a deployment no job will finish (its job is gone or out of attempts)
//     ends errored;
//   - a recorded container that is not the app's current deployment is
//     removed, unless it is kept for a rollback (keep_previous) and its
//     time has not passed;
//   - the current deployment's container is started if stopped, and created
//     again from its recorded image if it disappeared;
//   - a removed app's recorded containers and images are removed.
//
// A container carrying Keystone's labels that Keystone did not record is
// logged (and shown on the app's page), never adopted or removed.
func (e *Engine) Reconcile(ctx context.Context) error {
	instance, err := e.instance(ctx)
	if err != nil {
		return err
	}
	var errs []error
	stranded, err := e.strandedDeployments(ctx)
	if err != nil {
		return err
	}
	for _, s := range stranded {
		errs = append(errs, e.withAppLock(ctx, s.AppID, func(ctx context.Context) error { return e.endStranded(ctx, instance, s) }))
	}
	apps, err := e.store.AllApps(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	owned, err := e.store.OwnedContainers(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	// One look at the engine, then work only on the apps that need it. The
	// listing by label only tells the states of recorded containers and
	// which labelled ones are foreign.
	listed, err := e.docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelApp))})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list containers: %w", err))...)
	}
	images, err := e.docker.ImageList(ctx, image.ListOptions{Filters: ownFilter(instance)})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	state := map[string]string{}
	labelled := map[string][]container.Summary{}
	for _, c := range listed {
		state[c.ID] = c.State
		labelled[c.Labels[LabelApp]] = append(labelled[c.Labels[LabelApp]], c)
	}
	ownedOf := map[int64][]store.OwnedContainer{}
	isOwned := map[string]bool{}
	for _, c := range owned {
		ownedOf[c.AppID] = append(ownedOf[c.AppID], c)
		isOwned[c.ID] = true
	}
	imagesOf := map[string]int{}
	for _, img := range images {
		imagesOf[img.Labels[LabelApp]]++
	}
	for _, app := range apps {
		for _, c := range labelled[app.Key()] {
			if !isOwned[c.ID] {
				e.logger.WarnContext(ctx, "a container carries this app's labels but Keystone did not create it: leaving it alone",
					slog.String("app", app.Key()), slog.String("container", shortID(c.ID)), slog.String("image", c.Image))
			}
		}
		if !needsReconcile(app, ownedOf[app.ID], state, imagesOf[app.Key()], e.now()) {
			continue
		}
		errs = append(errs, e.withAppLock(ctx, app.ID, func(ctx context.Context) error {
			app, err := e.store.App(ctx, app.ID) // fresh, under the lock
			if err != nil {
				return err
			}
			return e.reconcileApp(ctx, instance, app, e.logger.With(slog.String("app", app.Key())))
		}))
	}
	return errors.Join(errs...)
}

// needsReconcile reports whether what the engine has of app's recorded
// containers differs from what the database says, as far as one listing
// can tell (a recorded container missing from the listing is gone). A
// container kept for a rollback (keep_previous) is as it should be until
// its time passes at now.
func needsReconcile(app store.App, owned []store.OwnedContainer, state map[string]string, images int, now time.Time) bool {
	if app.RemovedAt != nil {
		return len(owned) > 0 || images > 0
	}
	running, current := false, 0
	for _, c := range owned {
		if c.DeploymentID != app.CurrentDeploymentID {
			if c.KeptAt(now) {
				continue
			}
			return true
		}
		current++
		running = running || state[c.ID] == "running" || state[c.ID] == "restarting"
	}
	return app.CurrentDeploymentID != 0 && (!running || current > 1)
}

// withAppLock runs fn holding the app's lock; it skips the app when a job
// of it runs. fn gets the lock's context, which ends if the lock is lost.
func (e *Engine) withAppLock(ctx context.Context, appID int64, fn func(ctx context.Context) error) error {
	held, release, ok, err := e.store.TryLockApp(ctx, appID)
	if err != nil || !ok {
		return err
	}
	defer release()
	return fn(held)
}

// waitAppLock runs fn holding the app's lock, waiting up to wait for a job
// of the app to let go of it; after that it skips the app, as withAppLock.
func (e *Engine) waitAppLock(ctx context.Context, appID int64, wait time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for first := true; ; first = false {
		held, release, ok, err := e.store.TryLockApp(ctx, appID)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if ok {
			defer release()
			return fn(held)
		}
		if first {
			e.logger.InfoContext(ctx, "app busy: waiting for its job to let go of it", slog.Int64("app_id", appID))
		}
		select {
		case <-ctx.Done():
			e.logger.InfoContext(ctx, "app busy: leaving it to its job's end and to reconciliation", slog.Int64("app_id", appID))
			return nil
		case <-tick.C:
		}
	}
}

// reconcileApp brings one app's recorded containers in line with the
// database. The caller holds the app's lock.
func (e *Engine) reconcileApp(ctx context.Context, instance string, app store.App, logger *slog.Logger) error {
	rows, err := e.store.OwnedContainersOfApp(ctx, app.ID)
	if err != nil {
		return err
	}
	list, err := e.inspectOwned(ctx, rows)
	if err != nil {
		return err
	}
	var errs []error
	var current, stale []ownedState
	now := e.now()
	for _, c := range list {
		switch {
		case app.RemovedAt == nil && app.CurrentDeploymentID != 0 && c.DeploymentID == app.CurrentDeploymentID:
			current = append(current, c)
		case app.RemovedAt == nil && c.KeptAt(now):
			// kept for a rollback (keep_previous) until c.KeepUntil
		default:
			stale = append(stale, c)
		}
	}
	if len(stale) > 0 {
		// The router may route to a container about to go: an attempt that
		// failed after its switch (its deployment never became current).
		// The app's route goes back to the container that serves first.
		errs = append(errs, e.putRoute(ctx, app))
	}
	for _, c := range stale {
		logger.InfoContext(ctx, "removing a container that does not serve", slog.String("container", shortID(c.ID)),
			slog.Int64("deployment_id", c.DeploymentID), slog.String("state", c.State))
		errs = append(errs, e.removeContainer(ctx, instance, c.ID))
	}
	if app.RemovedAt != nil {
		return errors.Join(append(errs, e.removeImages(ctx, instance, app))...)
	}
	if app.CurrentDeploymentID == 0 {
		return errors.Join(errs...)
	}
	return errors.Join(append(errs, e.keepServing(ctx, instance, app, current, logger))...)
}

// keepServing makes the current deployment's container run: one of the
// recorded containers found is started if none runs, extra ones are
// removed, and if there is none it is created again from the deployment's
// recorded image.
func (e *Engine) keepServing(ctx context.Context, instance string, app store.App, found []ownedState, logger *slog.Logger) error {
	var keep *ownedState
	var errs []error
	for i := range found {
		c := &found[i]
		switch {
		case keep == nil:
			keep = c
		case c.State == "running" && keep.State != "running":
			errs = append(errs, e.removeContainer(ctx, instance, keep.ID))
			keep = c
		default:
			errs = append(errs, e.removeContainer(ctx, instance, c.ID))
		}
	}
	if keep != nil {
		if keep.State == "running" || keep.State == "restarting" {
			return errors.Join(errs...)
		}
		logger.InfoContext(ctx, "starting the serving container again", slog.String("container", shortID(keep.ID)), slog.String("state", keep.State))
		if err := e.docker.ContainerStart(ctx, keep.ID, container.StartOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("start the container of %s: %w", app.Key(), err))
		}
		return errors.Join(errs...)
	}
	return errors.Join(append(errs, e.recreate(ctx, instance, app, logger))...)
}

// recreate starts the current deployment again from its image after its
// container disappeared.
func (e *Engine) recreate(ctx context.Context, instance string, app store.App, logger *slog.Logger) error {
	d, err := e.store.Deployment(ctx, app.CurrentDeploymentID)
	if err != nil {
		return err
	}
	raw, err := e.store.DeploymentConfig(ctx, d.ID)
	if err != nil {
		return err
	}
	cfg, err := keystoneyml.DecodeApp(raw)
	if err != nil {
		return err
	}
	if d.ImageID == "" || !e.imageKept(ctx, instance, d.ImageID) {
		return fmt.Errorf("the serving container of %s is gone and so is its image: redeploy it", app.Key())
	}
	if app.HostPort == 0 {
		return fmt.Errorf("%s has no host port to serve on", app.Key())
	}
	secrets, err := e.appSecrets(ctx, app.ID)
	if err != nil {
		return err
	}
	port := app.HostPort
	if e.routed() {
		port = 0 // the router's route follows at the next SyncRoutes
	}
	id, err := e.createContainer(ctx, instance, app, d, cfg, secrets, d.ImageID, port)
	if err != nil {
		return err
	}
	if err := e.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start the recreated container of %s: %w", app.Key(), err)
	}
	if _, err := e.store.SetDeploymentContainer(ctx, d.ID, id); err != nil {
		return err
	}
	logger.WarnContext(ctx, "the serving container had disappeared: created again from its image",
		slog.String("container", shortID(id)), slog.Int64("deployment_id", d.ID))
	return nil
}

// endStranded ends a deployment no job will finish, after putting its app
// back as it was.
func (e *Engine) endStranded(ctx context.Context, instance string, s store.StrandedDeployment) error {
	d, err := e.store.Deployment(ctx, s.ID) // fresh, under the lock
	if err != nil || d.Finished() {
		return err
	}
	app, err := e.store.App(ctx, d.AppID)
	if err != nil {
		return err
	}
	logger := e.logger.With(slog.String("app", app.Key()), slog.Int64("deployment_id", d.ID))
	if err := e.reconcileApp(ctx, instance, app, logger); err != nil {
		return err
	}
	serving := ""
	if cur, err := e.store.Deployment(ctx, app.CurrentDeploymentID); err == nil {
		serving = cur.SHA
	}
	secrets, err := e.appSecrets(ctx, app.ID)
	if err != nil {
		return err
	}
	redactor := newLogRedactor(secrets)
	reason := redactor.Redact(strandedReason(s)) // the job's last error may hold a secret
	log := newDeployLog(e.store, d.ID, redactor, e.cfg.LogLimit, logger)
	log.Printf("This deployment's job ended without finishing it: %s", reason)
	log.Close()
	_, err = e.update(ctx, func(q *store.Queries) (store.Deployment, error) {
		if err := q.FinishOpenSteps(ctx, d.ID, "interrupted"); err != nil {
			return d, err
		}
		d, err := q.FinishDeployment(ctx, d.ID, store.StateErrored, descErrored(reason, serving))
		if err != nil {
			return d, err
		}
		return d, auditFinished(ctx, q, app, d)
	})
	logger.WarnContext(ctx, "ended a deployment no job will finish", slog.String("reason", reason))
	return err
}

// strandedReason says why a deployment's job ended without finishing it.
func strandedReason(s store.StrandedDeployment) string {
	switch {
	case s.Attempts == 0:
		return "its job was lost"
	case strings.Contains(s.LastError, "process running this job died"):
		return fmt.Sprintf("Keystone stopped during it %d times", s.Attempts)
	case s.LastError != "":
		return fmt.Sprintf("gave up after %d attempts: %s", s.Attempts, firstLine(s.LastError))
	}
	return fmt.Sprintf("its job ended after %d attempts", s.Attempts)
}
