package deploy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/store"
)

// Host names in domain mode (SPEC §13). An app is routed at its domains:
// names and its default name. The default is allocated at its first deploy
// and kept; the domains: names are checked before the build and claimed,
// all or nothing, only once the new version is healthy, just before traffic
// moves to it: a failed deployment claims nothing and the previous version
// keeps its names. The database gives each name to one app.

// Reasons a domains: name is refused, as descHostRefused words them.
const (
	whyOwnHost    = "is Keystone's own host"
	whyNotAllowed = "is outside KEYSTONE_ALLOWED_DOMAINS"
	whyTaken      = "belongs to another app"
)

// checkHosts gives the app its default host name if it has none, and
// checks the names its deployment claims: one outside
// KEYSTONE_ALLOWED_DOMAINS, Keystone's own host or another app's is a
// failure naming it. In IP mode domains: is ignored, and said so in the log.
func (e *Engine) checkHosts(ctx context.Context, r *run) error {
	if e.cfg.AppsDomain == "" {
		if len(r.cfg.Domains) > 0 {
			r.log.Printf("domains: %s ignored: Keystone runs in IP mode (no KEYSTONE_APPS_DOMAIN)", strings.Join(r.cfg.Domains, ", "))
		}
		return nil
	}
	app := r.app
	host, err := e.store.AllocateDefaultHost(ctx, app.ID, func(attempt int) string {
		return appurl.Candidate(app, e.cfg.AppsDomain, attempt)
	})
	if err != nil {
		return err
	}
	if app.Preview() && len(r.cfg.Domains) > 0 {
		r.log.Printf("domains: not claimed by a preview: it is served at %s only", host)
	}
	for _, h := range e.domains(r) {
		why, err := e.hostRefusal(ctx, app.ID, h)
		if err != nil {
			return err
		}
		if why != "" {
			r.log.Printf("Host %s %s: not deploying", h, why)
			return &failure{descHostRefused(h, why)}
		}
	}
	return nil
}

// domains are the names r's deployment claims: its domains:, none for a
// preview (its pull request's file must not take production's names).
func (e *Engine) domains(r *run) []string {
	if r.app.Preview() {
		return nil
	}
	return r.cfg.Domains
}

// hostRefusal says why app may not claim host; "" when it may.
func (e *Engine) hostRefusal(ctx context.Context, appID int64, host string) (string, error) {
	switch {
	case host == strings.ToLower(e.cfg.OwnHost):
		return whyOwnHost, nil
	case !(config.Router{AllowedDomains: e.cfg.AllowedDomains}).HostAllowed(host):
		return whyNotAllowed, nil
	}
	owner, found, err := e.store.HostOwner(ctx, host)
	if err != nil {
		return "", err
	}
	if found && owner != appID {
		return whyTaken, nil
	}
	return "", nil
}

// claimHosts makes the deployment's domains: names the app's, releasing the
// ones it no longer lists. A name another app claimed since checkHosts is a
// failure naming it, and nothing is claimed.
func (e *Engine) claimHosts(ctx context.Context, r *run) error {
	if e.cfg.AppsDomain == "" {
		return nil
	}
	err := e.store.ClaimDomains(ctx, r.app.ID, e.domains(r))
	var taken *store.HostTakenError
	if errors.As(err, &taken) {
		r.log.Printf("Host %s %s: not deploying", taken.Host, whyTaken)
		return &failure{descHostRefused(taken.Host, whyTaken)}
	}
	return err
}

// claimOrDrop claims r's names before traffic moves to container next; when
// it cannot, next is removed (it never served) and the error returned.
func (e *Engine) claimOrDrop(ctx context.Context, r *run, next string) error {
	err := e.claimHosts(ctx, r)
	if err == nil {
		return nil
	}
	if rerr := e.removeContainer(context.WithoutCancel(ctx), r.instance, next); rerr != nil {
		r.logger.WarnContext(ctx, "remove the container of a refused deployment", slog.String("error", rerr.Error()))
	}
	return err
}

// routeHosts are the host names of app's route: its stored names, or its
// default name before it has any.
func (e *Engine) routeHosts(app store.App) []string {
	if len(app.Hosts) > 0 {
		return app.Hosts
	}
	return []string{DefaultHost(app, e.cfg.AppsDomain)}
}

// putRouteBody puts service's route. When the router refuses one of its host
// names because the route of a removed app still holds it (a removed app's
// route goes at the next reconciliation, its names at once), that route is
// dropped and the route put again.
func (e *Engine) putRouteBody(ctx context.Context, service string, body routerapi.RouteBody) error {
	_, err := e.routes.Put(ctx, service, body)
	var apiErr *routerapi.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		return err
	}
	have, lerr := e.routes.Routes(ctx)
	if lerr != nil {
		return err
	}
	dropped := false
	for _, rt := range have {
		id, ok := strings.CutPrefix(rt.Service, "app-")
		appID, perr := strconv.ParseInt(id, 10, 64)
		if !ok || perr != nil || rt.Service == service || !slices.ContainsFunc(rt.Hosts, func(h string) bool { return slices.Contains(body.Hosts, h) }) {
			continue
		}
		if app, aerr := e.store.App(ctx, appID); aerr == nil && app.RemovedAt != nil && e.dropRoute(ctx, app) == nil {
			dropped = true
		}
	}
	if !dropped {
		return err
	}
	_, err = e.routes.Put(ctx, service, body)
	return err
}
