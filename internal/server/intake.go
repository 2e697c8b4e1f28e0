package server

import (
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/queue"
)

// addIntake registers the worker of push deliveries, the jobs gauge, and
// the rescuer of jobs whose process died. Until the deploy engine takes it
// over, the push worker only records that the delivery was handled. The
// comment worker is the conversation's (conversation.go).
func (p *parts) addIntake() error {
	river.AddWorker(p.workers, &queue.RecordPushWorker{Store: p.store, Logger: p.logger})
	rescuer := &queue.OrphanRescuer{Store: p.store, ProcessID: p.processID, Logger: p.logger}
	p.hold = append(p.hold, rescuer.HoldLiveness)
	p.loops = append(p.loops, loop{name: "orphan rescue", run: rescuer.Run})
	return p.registry.Register(queue.NewJobsCollector(p.store, p.logger))
}
