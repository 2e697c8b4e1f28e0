package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"
)

// Switcher puts a new container into service in place of the app's current
// one. It is the seam a zero-downtime router will replace: that one will
// start the new container beside the old, check it, then move traffic.
type Switcher interface {
	Switch(ctx context.Context, s Switch) (SwitchResult, error)
}

// Switch is one switch to carry out.
type Switch struct {
	// Prev is the container serving now; "" on a first deploy.
	Prev string
	// Next is the new container, created and not started.
	Next string
	// CheckNext and CheckPrev check the health of Next or of a restored
	// Prev, from the moment they are called.
	CheckNext func(ctx context.Context) HealthResult
	CheckPrev func(ctx context.Context) HealthResult
	// Step reports the step the switch enters: StepSwitch, StepHealth,
	// StepRestore.
	Step func(step string)
}

// SwitchResult is how a switch ended.
type SwitchResult struct {
	// Health is Next's health check; Next serves if Health.Healthy.
	Health HealthResult
	// Downtime is how long nothing served: from stopping Prev until Next
	// (or, after a failed check, the restored Prev) answered. Zero with
	// DowntimeMeasured false when nothing had to stop.
	Downtime         time.Duration
	DowntimeMeasured bool
	// Restored says, after a failed check, whether Prev serves again.
	Restored bool
	// Routed says traffic moved through the router, which counted the old
	// version's in-flight requests: Drained finished, Failed did not.
	Routed          bool
	Drained, Failed int
}

// Steps a deployment records (its step rows, and its row's step while it
// runs). A switch reports StepSwitch, StepHealth and StepRestore.
const (
	StepFetch   = "fetch"
	StepBuild   = "build"
	StepStart   = "start"
	StepSwitch  = "switch"
	StepHealth  = "health"
	StepRestore = "restore"
	StepCleanup = "cleanup"
)

// RoutedSteps are the steps of an update switched through the router, in
// order (StepRestore is StopStart's only: through the router the serving
// version never stops). The fault suite kills `keystone serve` at each.
var RoutedSteps = []string{StepFetch, StepBuild, StepStart, StepSwitch, StepHealth, StepCleanup}

// StopStart is today's switch: both containers want the app's one host port,
// so the old one stops only once the new one is created and ready to start;
// the new one starts and is checked; if it fails, it is stopped and the old
// one started again.
type StopStart struct {
	Docker      Docker
	StopTimeout time.Duration
}

// Switch implements Switcher.
func (s StopStart) Switch(ctx context.Context, sw Switch) (SwitchResult, error) {
	var res SwitchResult
	sw.Step(StepSwitch)
	stopped := time.Now()
	if sw.Prev != "" {
		res.DowntimeMeasured = true
		if err := s.stop(ctx, sw.Prev); err != nil {
			return res, fmt.Errorf("stop the serving container: %w", err)
		}
	}
	if err := s.Docker.ContainerStart(ctx, sw.Next, container.StartOptions{}); err != nil {
		err = fmt.Errorf("start the new container: %w", err)
		if sw.Prev != "" {
			if rerr := s.Docker.ContainerStart(context.WithoutCancel(ctx), sw.Prev, container.StartOptions{}); rerr != nil {
				return res, fmt.Errorf("%w; and restart the previous one: %v", err, rerr)
			}
		}
		return res, err
	}
	sw.Step(StepHealth)
	res.Health = sw.CheckNext(ctx)
	if res.Health.Healthy {
		if res.DowntimeMeasured {
			res.Downtime = res.Health.Answered.Sub(stopped)
		}
		return res, nil
	}
	if sw.Prev == "" {
		return res, nil
	}
	sw.Step(StepRestore)
	if err := s.stop(ctx, sw.Next); err != nil {
		return res, fmt.Errorf("stop the unhealthy container: %w", err)
	}
	if err := s.Docker.ContainerStart(ctx, sw.Prev, container.StartOptions{}); err != nil {
		return res, fmt.Errorf("restart the previous container: %w", err)
	}
	back := sw.CheckPrev(ctx)
	res.Restored = back.Healthy
	if back.Healthy {
		res.Downtime = back.Answered.Sub(stopped)
	} else {
		res.Downtime = time.Since(stopped)
	}
	return res, nil
}

func (s StopStart) stop(ctx context.Context, id string) error {
	timeout := int(s.StopTimeout.Seconds())
	return s.Docker.ContainerStop(ctx, id, container.StopOptions{Timeout: &timeout})
}
