package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/setup"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/web"
	"github.com/keystone-app/keystone/internal/webhook"
)

// ShutdownTimeout is how long a stopping Keystone lets requests and running
// jobs finish. Jobs still running after it are cancelled and retried by the
// next process (their app lock dies with this one).
const ShutdownTimeout = 20 * time.Second

// parts is everything `keystone serve` runs. Each capability adds its workers,
// routes, checks and background loops in a file of its own (see intake.go).
type parts struct {
	cfg      config.Config
	logger   *slog.Logger
	store    *store.Store
	registry *prometheus.Registry
	workers  *river.Workers
	ready    []Check
	mounts   []func(r *gin.Engine)
	loops    []loop
	// jobs is set once every worker is registered; routes and loops built
	// before that reach it through jobsClient.
	jobs *river.Client[pgx.Tx]
	// github talks to GitHub as the App; empty until an App is configured,
	// from the environment, from the database or by setup while serving.
	github *github.Live
	// creds are the webhook secret and OAuth client in use (see setup.go).
	creds *credentials
	// keys encrypt apps' secrets and the App's stored credentials.
	keys *secrets.Keyring
	// githubMetrics: an App client registered its metrics already.
	githubMetrics bool
	// setup serves /setup; setupMu serialises building App clients for it.
	setup   *setup.Service
	setupMu sync.Mutex
	// secrets decrypts apps' secrets for the deploy engine and changes them
	// for the status page.
	secrets *secrets.Service
	// processID names this process's job client and its liveness lock.
	processID string
	// hold are taken before the job client starts and released after it stops.
	hold []func(ctx context.Context) (release func(), err error)
	// notifier hears of every deployment change; set by addConversation,
	// which comes before addDeploy.
	notifier deploy.Notifier
	// engine runs deployments; requester takes deployments asked for by
	// people (comment commands, the status page). Set by addDeploy.
	engine    *deploy.Engine
	requester *deploy.Requester
	// certs is the router's certificate state when it serves apps over
	// HTTPS; nil otherwise. Set by addDeploy.
	certs web.Certificates
}

// loop is a background task that runs while Keystone serves and returns when
// its context ends.
type loop struct {
	name string
	run  func(ctx context.Context) error
}

// Run is `keystone serve`: it migrates the database, starts the job workers
// and background loops, and serves HTTP on cfg.Addr until ctx is cancelled,
// then stops gracefully.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set (make run starts a local PostgreSQL for you)")
	}
	// Each deploy worker holds a connection for its app lock while it works
	// and uses another; intake workers, River and pages need their own.
	st, err := store.Open(ctx, cfg.DatabaseURL, store.MinConns(int32(2*cfg.Workers+16)))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := store.MigrateAs(ctx, cfg.MigrateDatabaseURL, st); err != nil {
		return err
	}
	if err := checkAuditProtected(ctx, st, logger); err != nil {
		return err
	}
	p := &parts{cfg: cfg, logger: logger, store: st, registry: prometheus.NewRegistry(),
		workers: river.NewWorkers(), processID: queue.NewProcessID()}
	p.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.ready = append(p.ready, Check{Name: "database", Check: st.Ping})
	if p.keys, err = secrets.NewKeyring(cfg.EncryptionKeys); err != nil {
		return err
	}
	if err := p.loadCredentials(ctx); err != nil {
		return err
	}
	if err := p.assemble(); err != nil {
		return err
	}
	return p.serve(ctx)
}

// assemble builds every capability, then the job client over their workers.
func (p *parts) assemble() error {
	if err := p.addIntake(); err != nil {
		return err
	}
	if err := p.addSecrets(); err != nil {
		return err
	}
	if err := p.addConversation(); err != nil {
		return err
	}
	if err := p.addDeploy(); err != nil {
		return err
	}
	if err := p.addWeb(); err != nil {
		return err
	}
	if err := p.addSetup(); err != nil {
		return err
	}
	jobs, err := queue.NewClient(p.store.Pool(), p.workers, queue.Config{
		ID:            p.processID,
		DeployWorkers: p.cfg.Workers,
		Logger:        slog.New(minLevel{Handler: p.logger.Handler(), min: slog.LevelWarn}),
	})
	if err != nil {
		return err
	}
	p.jobs = jobs
	return nil
}

// jobsClient returns the job client once assemble has built it.
func (p *parts) jobsClient() *river.Client[pgx.Tx] { return p.jobs }

func (p *parts) serve(ctx context.Context) error {
	intake := queue.NewIntake(p.store, p.jobs)
	defer intake.Close()
	hook, err := webhook.NewHandler(webhook.Config{LiveSecret: p.creds.WebhookSecret, GitHubWebURL: p.cfg.GitHubWebURL}, intake, p.logger, p.registry)
	if err != nil {
		return err
	}
	router := NewRouter(RouterConfig{
		Logger: p.logger, Webhook: hook.Handle, Ready: p.ready, Gatherer: p.registry, MetricsToken: p.cfg.MetricsToken,
		TrustedProxies: p.cfg.TrustedProxies, HSTS: p.cfg.PublicURL.Scheme == "https",
	})
	for _, mount := range p.mounts {
		mount(router)
	}
	ln, err := net.Listen("tcp", p.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on KEYSTONE_ADDR %s: %w", p.cfg.Addr, err)
	}
	for _, hold := range p.hold {
		release, err := hold(ctx)
		if err != nil {
			ln.Close()
			return err
		}
		defer release()
	}
	if err := p.jobs.Start(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("start job workers: %w", err)
	}
	loopCtx, stopLoops := context.WithCancel(ctx)
	var loops sync.WaitGroup
	for _, l := range p.loops {
		loops.Go(func() {
			if err := l.run(loopCtx); err != nil && loopCtx.Err() == nil {
				p.logger.Error("background loop stopped", slog.String("loop", l.name), slog.String("error", err.Error()))
			}
		})
	}
	srv := &http.Server{
		Handler: router,
		// Anyone can open a connection: headers must come within 5 s and a
		// whole request (a 25 MiB delivery included) within 30 s, so slow
		// clients cannot hold connections and buffers open.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// The link is issued (and audited) before "keystone serving", which
	// tools wait for: once serving is logged, the link is in the log too.
	if !p.github.Configured() {
		if err := p.logSetupLink(ctx); err != nil {
			p.logger.Error("setup link not issued", slog.String("error", err.Error()))
		}
	} else if len(p.creds.WebhookSecret()) == 0 {
		p.logger.Warn("KEYSTONE_GITHUB_WEBHOOK_SECRET is not set: every webhook will be refused")
	}
	p.logger.Info("keystone serving", slog.String("addr", ln.Addr().String()), slog.Any("config", p.cfg))

	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve HTTP: %w", err)
	}
	p.logger.Info("keystone stopping")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	stopHTTP(stopCtx, srv, p.logger)
	stopLoops()
	loops.Wait()
	if stopErr := p.jobs.Stop(stopCtx); stopErr != nil {
		p.logger.Warn("job workers did not stop cleanly", slog.String("error", stopErr.Error()))
	}
	return err
}

// stopHTTP lets requests in flight finish until ctx ends, then cuts the
// connections still open (a live-log stream, a stalled client) and says so:
// a stop that did not drain is worth knowing about.
func stopHTTP(ctx context.Context, srv *http.Server, logger *slog.Logger) {
	err := srv.Shutdown(ctx)
	if err == nil {
		return
	}
	logger.Warn("HTTP requests still running at shutdown; closing their connections", slog.String("error", err.Error()))
	if err := srv.Close(); err != nil {
		logger.Warn("close HTTP connections", slog.String("error", err.Error()))
	}
}

// minLevel quiets a chatty library's logs below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}

// checkAuditProtected says loudly when Keystone's database role could
// rewrite the audit trail (it owns the table or may change rows): the
// append-only triggers then bind nobody who matters.
func checkAuditProtected(ctx context.Context, st *store.Store, logger *slog.Logger) error {
	ok, err := st.AuditProtected(ctx)
	if err != nil || ok {
		return err
	}
	logger.WarnContext(ctx, "the audit trail is not protected: DATABASE_URL's role can rewrite it; "+
		"set KEYSTONE_MIGRATE_DATABASE_URL to the role owning the tables and DATABASE_URL to a role of its own (docs/runbook.md, Audit role)")
	return nil
}
