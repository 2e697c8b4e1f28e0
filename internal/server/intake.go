package server

import (
	"github.com/keystone-app/keystone/internal/queue"
)

// addIntake registers the jobs gauge and the rescuer of jobs whose process
// died. Push deliveries are the deploy engine's (addDeploy), comments the
// conversation's (addConversation).
func (p *parts) addIntake() error {
	rescuer := &queue.OrphanRescuer{Store: p.store, Jobs: lateJobs{p}, ProcessID: p.processID, Logger: p.logger}
	p.hold = append(p.hold, rescuer.HoldLiveness)
	p.loops = append(p.loops, loop{name: "orphan rescue", run: rescuer.Run})
	return p.registry.Register(queue.NewJobsCollector(lateJobs{p}, p.store, p.logger))
}
