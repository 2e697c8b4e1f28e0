package deploy

import (
	"context"
	"time"
)

// dockerPoll is how often a failed attempt asks an engine that does not
// answer.
const dockerPoll = 250 * time.Millisecond

// awaitDocker waits, up to DockerWait, for a Docker engine that does not
// answer (restarting, its socket or socket proxy down) before a failed
// attempt is restored and retried. The restore needs the engine, and the
// next attempts, seconds apart, would otherwise each fail at once: a 10 s
// outage spent all of a deployment's attempts (issue 15). Waiting here
// spends one attempt per outage. The previous version keeps serving
// meanwhile, its container untouched. It reports whether the engine did
// not answer.
func (e *Engine) awaitDocker(ctx context.Context, r *run) bool {
	if e.pingDocker(ctx) == nil {
		return false
	}
	start := time.Now()
	r.log.Printf("Docker does not answer: waiting up to %s for it before trying again", wholeSeconds(e.cfg.DockerWait))
	r.log.Flush(ctx)
	for time.Since(start) < e.cfg.DockerWait {
		select {
		case <-ctx.Done():
			return true
		case <-time.After(dockerPoll):
		}
		if e.pingDocker(ctx) == nil {
			r.log.Printf("Docker answers again after %s", seconds(time.Since(start)))
			return true
		}
	}
	r.log.Printf("Docker still does not answer after %s", seconds(e.cfg.DockerWait))
	return true
}

// pingDocker asks the engine whether it answers, briefly.
func (e *Engine) pingDocker(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := e.docker.Ping(ctx)
	return err
}
