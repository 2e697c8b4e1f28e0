package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/web"
)

// addDeploy wires the deploy engine (SPEC §5, §6): the push and deploy
// workers, the requester other capabilities call (p.requester), Docker in
// /readyz, and reconciliation at start-up and every minute. It needs
// addSecrets first (secrets go into containers and out of logs).
func (p *parts) addDeploy() error {
	docker, err := deploy.NewDockerClient()
	if err != nil {
		return err
	}
	// p.github says when it has no App yet (deploy asks Configured).
	deps := deploy.Deps{Store: p.store, Docker: docker, Logger: p.logger, Registerer: p.registry, Tokens: p.github, Jobs: lateJobs{p}}
	if p.secrets != nil {
		deps.Secrets = p.secrets
	}
	if p.notifier != nil {
		deps.Notifier = p.notifier // statuses and comments of every deployment change
	}
	// The router may start before or after Keystone (SPEC §13): whether it
	// runs is asked before each deployment and reconciliation.
	socket := p.cfg.Router.AdminSocket
	client := routerapi.NewClient(socket)
	deps.Routes = client
	deps.RouterPresent = func() bool { return routerPresent(socket) }
	if p.cfg.Router.AppsDomain != "" && p.cfg.Router.TLS == config.TLSACME {
		c := certificates{router: client}
		if err := p.registry.Register(c); err != nil {
			return fmt.Errorf("register certificate metrics: %w", err)
		}
		p.certs = c
	}
	engine, err := deploy.New(deps, deploy.Config{DataDir: p.cfg.DataDir, PortRange: p.cfg.PortRange,
		MaxMemory: p.cfg.MaxMemory, MaxCPUs: p.cfg.MaxCPUs, MaxPreviews: maxPreviews(p.cfg.MaxPreviews),
		AppsDomain: p.cfg.Router.AppsDomain, AllowedDomains: p.cfg.Router.AllowedDomains,
		OwnHost: strings.ToLower(p.cfg.PublicURL.Hostname())})
	if err != nil {
		return err
	}
	river.AddWorker(p.workers, engine.PushWorker())
	river.AddWorker(p.workers, engine.DeployWorker())
	river.AddWorker(p.workers, engine.PullRequestWorker())
	p.engine = engine
	p.requester = engine.Requester(lateJobs{p})
	p.ready = append(p.ready, Check{Name: "docker", Check: engine.Ping})
	p.ready = append(p.ready, Check{Name: "router", Check: func(ctx context.Context) error {
		if !routerPresent(socket) {
			return nil // not running (yet): apps are served on their host ports
		}
		return engine.RouterReady(ctx)
	}})
	if !routerPresent(socket) {
		p.logger.Info("router not running: its admin socket does not exist; apps are served on their host ports until it appears",
			slog.String("proxy_admin", socket))
	}
	p.loops = append(p.loops, loop{name: "reconcile", run: engine.RunReconciler})
	if p.github != nil {
		sweep := time.Duration(p.cfg.PreviewSweepSeconds) * time.Second
		p.loops = append(p.loops, loop{name: "preview sweep", run: engine.PreviewSweeper(pullRequests{p.github}, sweep)})
	}
	return nil
}

// routerPresent reports whether `keystone proxy`'s admin socket exists at
// start-up. Without it `keystone serve` keeps serving apps on their host
// ports only (SPEC §13: it runs without a router).
func routerPresent(socket string) bool {
	fi, err := os.Stat(socket)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// lateJobs enqueues and lists through the job client, which is built after
// the capabilities that use it.
type lateJobs struct{ p *parts }

func (l lateJobs) InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	return l.p.jobsClient().InsertTx(ctx, tx, args, opts)
}

func (l lateJobs) JobCancelTx(ctx context.Context, tx pgx.Tx, id int64) (*rivertype.JobRow, error) {
	return l.p.jobsClient().JobCancelTx(ctx, tx, id)
}

func (l lateJobs) JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error) {
	return l.p.jobsClient().JobList(ctx, params)
}

// containers is the status page's view of apps' containers.
type containers struct{ engine *deploy.Engine }

func (c containers) State(ctx context.Context, app store.App) (web.ContainerState, error) {
	st, err := c.engine.ContainerState(ctx, app)
	var foreign []string
	for _, f := range st.Foreign {
		foreign = append(foreign, fmt.Sprintf("%s %s (%s, %s)", f.ID, f.Name, f.Image, f.State))
	}
	return web.ContainerState{State: st.State, StartedAt: st.StartedAt, Image: st.ImageID, Output: st.Output, Foreign: foreign}, err
}

// maxPreviews maps KEYSTONE_MAX_PREVIEWS (0: none) to deploy.Config's
// (0: the default, negative: none).
func maxPreviews(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// pullRequests tells the preview sweep whether a pull request is open.
type pullRequests struct{ app *github.Live }

func (p pullRequests) PullRequestOpen(ctx context.Context, inst int64, owner, repo string, number int) (bool, error) {
	pr, err := p.app.PullRequest(ctx, inst, owner, repo, number)
	if github.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return pr.State == "open", nil
}
