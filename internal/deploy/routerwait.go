package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
)

// routerPoll is how often a switch asks a router that does not answer.
const routerPoll = 250 * time.Millisecond

// moveRouteWhenUp moves the app's route to target once the router answers,
// waiting up to RouterWait for it. A router that is restarting (killed,
// upgraded) is back within seconds; failing the attempt meanwhile would
// spend one of the deployment's few attempts, and a rebuild, on nothing the
// app did (issue 15: a 10 s outage used 2 of 3). A switch the router could
// not be reached for is asked again within the same wait: asking again is
// safe, as switching a route to the target it has changes nothing. The
// new container was checked healthy and the old one still serves, so
// waiting costs nobody an answer.
func (e *Engine) moveRouteWhenUp(ctx context.Context, r *run, target string) (router.SwitchResult, error) {
	deadline := time.Now().Add(e.cfg.RouterWait)
	var since time.Time // when the router was first found not answering
	for {
		err := e.routerHealth(ctx)
		if err == nil {
			if !since.IsZero() {
				r.log.Printf("The router answers again after %s: switching", seconds(time.Since(since)))
			}
			out, err := e.moveRoute(ctx, r, target)
			var apiErr *routerapi.APIError
			if err == nil || errors.As(err, &apiErr) || ctx.Err() != nil || !time.Now().Before(deadline) {
				return out, err
			}
			// Not answered: the router went away between the two calls.
		}
		if since.IsZero() {
			since = time.Now()
			r.log.Printf("The router (keystone proxy) does not answer: waiting up to %s for it before switching; %s keeps serving meanwhile",
				wholeSeconds(e.cfg.RouterWait), shortSHA(r.servingSHA))
			r.log.Flush(ctx)
		}
		if !time.Now().Before(deadline) {
			return router.SwitchResult{}, fmt.Errorf("the router did not answer for %s: %w", wholeSeconds(e.cfg.RouterWait), err)
		}
		select {
		case <-ctx.Done():
			return router.SwitchResult{}, ctx.Err()
		case <-time.After(routerPoll):
		}
	}
}

// routerHealth asks the router's admin API whether it answers, briefly.
func (e *Engine) routerHealth(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := e.routes.Health(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return nil
}
