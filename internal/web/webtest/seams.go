// Package webtest helps test the status page: stand-ins for the seams other
// capabilities implement (the deploy requester, Docker's container state),
// and headless Chromium driven by chromedp.
//
// The stand-ins are not mocks of a database, Docker or git: they are small
// implementations of Keystone's own interfaces over the real database, so
// that the page can be tested before and apart from the real engine.
package webtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/web"
)

// Requester queues deployments the way the deploy engine's requester does,
// minus the job: it validates the request, inserts a queued deployment row
// and audits the request, in one transaction.
type Requester struct {
	Store *store.Store

	mu       sync.Mutex
	requests []deploy.Request
}

var _ web.Requester = (*Requester)(nil)

// Requests returns every request received, in order.
func (r *Requester) Requests() []deploy.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// Request implements web.Requester.
func (r *Requester) Request(ctx context.Context, req deploy.Request) (store.Deployment, error) {
	r.mu.Lock()
	r.requests = append(r.requests, req)
	r.mu.Unlock()
	var created store.Deployment
	err := r.Store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		a, err := q.App(ctx, req.AppID)
		if err != nil {
			return err
		}
		if a.Locked() {
			return fmt.Errorf("%s is locked by %s", a.Name, a.LockedBy)
		}
		target, err := r.target(ctx, q, a, req)
		if err != nil {
			return err
		}
		created, err = storetest.AddDeployment(ctx, tx, store.Deployment{AppID: a.ID, Kind: req.Kind, SHA: target.SHA,
			Actor: req.Actor, Trigger: req.Trigger, TargetDeploymentID: target.ID, Description: "Queued"})
		if err != nil {
			return err
		}
		return q.AppendAudit(ctx, store.AuditEvent{Actor: req.Actor, Action: store.AuditDeployRequested, Target: a.Key(),
			Details: map[string]any{"kind": req.Kind, "deployment_id": created.ID, "trigger": req.Trigger}})
	})
	return created, err
}

func (r *Requester) target(ctx context.Context, q *store.Queries, a store.App, req deploy.Request) (store.Deployment, error) {
	switch req.Kind {
	case store.KindRedeploy:
		if a.CurrentDeploymentID == 0 {
			return store.Deployment{}, errors.New("nothing is serving, so there is nothing to redeploy")
		}
		return q.Deployment(ctx, a.CurrentDeploymentID)
	case store.KindRollback:
		if req.TargetDeploymentID != 0 {
			d, err := q.Deployment(ctx, req.TargetDeploymentID)
			if err != nil || d.AppID != a.ID || d.State != store.StateSucceeded {
				return store.Deployment{}, fmt.Errorf("#%d is not a successful deployment of %s", req.TargetDeploymentID, a.Name)
			}
			return d, nil
		}
		candidates, err := q.RollbackCandidates(ctx, a.ID, 50)
		if err != nil {
			return store.Deployment{}, err
		}
		for _, d := range candidates {
			if d.ID < a.CurrentDeploymentID {
				return d, nil
			}
		}
		return store.Deployment{}, errors.New("no successful deployment before the serving one to roll back to")
	}
	return store.Deployment{}, fmt.Errorf("kind %q is not asked from the page", req.Kind)
}

// Containers answers every app with the same container state, or Err.
type Containers struct {
	Container web.ContainerState
	Err       error
}

// State implements web.Containers.
func (c Containers) State(context.Context, store.App) (web.ContainerState, error) {
	return c.Container, c.Err
}

// Certificates answers the router's certificate list, or Err.
type Certificates struct {
	List []web.Certificate
	Err  error
}

// Certificates implements web.Certificates.
func (c Certificates) Certificates(context.Context) ([]web.Certificate, error) {
	return c.List, c.Err
}
