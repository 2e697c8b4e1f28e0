package server

import (
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/queue"
)

// addIntake registers the worker of comment deliveries, the jobs gauge, and
// the rescuer of jobs whose process died. Push deliveries are the deploy
// engine's (addDeploy). Until comment commands take it over, the comment
// worker only records that the delivery was handled.
func (p *parts) addIntake() error {
	river.AddWorker(p.workers, &queue.RecordCommentWorker{Store: p.store, Logger: p.logger})
	rescuer := &queue.OrphanRescuer{Store: p.store, ProcessID: p.processID, Logger: p.logger}
	p.hold = append(p.hold, rescuer.HoldLiveness)
	p.loops = append(p.loops, loop{name: "orphan rescue", run: rescuer.Run})
	return p.registry.Register(queue.NewJobsCollector(p.store, p.logger))
}
