package server

import (
	"context"
	"errors"

	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/conversation"
	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/redelivery"
	"github.com/keystone-app/keystone/internal/store"
)

// addConversation sets up what Keystone says on GitHub and reads from it:
// the deployment notifier (p.notifier, for the deploy engine), the worker of
// comment jobs (/keystone commands), the outbox dispatcher, and the
// recovery of missed webhook deliveries. Until a GitHub App is configured
// (possibly by setup while serving) nothing can be sent or checked: what the
// notifier writes waits in the outbox, and the loops wait for the App.
func (p *parts) addConversation() error {
	links := conversation.Links{PublicURL: p.cfg.PublicURL.String(), GitHubWebURL: p.cfg.GitHubWebURL, Apps: p.appURLs()}
	notifier, err := conversation.NewNotifier(links)
	if err != nil {
		return err
	}
	p.notifier = notifier
	commands, err := conversation.NewCommands(conversation.CommandsConfig{
		Store: p.store, GitHub: p.github, Requester: lateRequester{p}, Links: links,
		Logger: p.logger, Registerer: p.registry,
	})
	if err != nil {
		return err
	}
	river.AddWorker(p.workers, commands)
	dispatcher, err := outbox.New(p.store, p.github, outbox.Config{Logger: p.logger, Registerer: p.registry})
	if err != nil {
		return err
	}
	recoverer, err := redelivery.New(p.store, p.github, redelivery.Config{Logger: p.logger, Registerer: p.registry})
	if err != nil {
		return err
	}
	p.loops = append(p.loops,
		loop{name: "github outbox", run: p.waitForApp(dispatcher.Run)},
		loop{name: "missed deliveries", run: p.waitForApp(recoverer.Run)})
	return nil
}

// errNoEngine answers deploy and rollback commands while no deploy engine
// is wired in.
var errNoEngine = errors.New("this Keystone runs without its deploy engine")

// lateRequester reaches p.requester when a command runs, so that the
// capabilities can be assembled in any order.
type lateRequester struct{ p *parts }

func (l lateRequester) Request(ctx context.Context, r deploy.Request) (store.Deployment, error) {
	if l.p.requester == nil {
		return store.Deployment{}, errNoEngine
	}
	return l.p.requester.Request(ctx, r)
}
