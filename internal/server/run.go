package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/webhook"
)

// ShutdownTimeout is how long a stopping Keystone lets requests and running
// jobs finish. Jobs still running after it are cancelled and retried by the
// next process (their app lock dies with this one).
const ShutdownTimeout = 20 * time.Second

// Run is `keystone serve`: it migrates the database, starts the job workers
// and serves HTTP on cfg.Addr until ctx is cancelled, then stops gracefully.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if len(cfg.WebhookSecret) == 0 {
		logger.Warn("KEYSTONE_GITHUB_WEBHOOK_SECRET is not set: every webhook will be refused")
	}
	if cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set (make run starts a local PostgreSQL for you)")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(queue.NewJobsCollector(st, logger))

	jobs, err := newJobs(st, cfg, logger)
	if err != nil {
		return err
	}
	hook, err := webhook.NewHandler(cfg.WebhookSecret, queue.NewIntake(st, jobs), logger, reg)
	if err != nil {
		return err
	}
	router := NewRouter(RouterConfig{
		Logger:       logger,
		Webhook:      hook.Handle,
		Ready:        []Check{{Name: "database", Check: st.Ping}},
		Gatherer:     reg,
		MetricsToken: cfg.MetricsToken,
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on KEYSTONE_ADDR %s: %w", cfg.Addr, err)
	}
	if err := jobs.Start(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("start job workers: %w", err)
	}
	srv := &http.Server{
		Handler:           router,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a 25 MiB delivery on a slow link
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("keystone serving", slog.String("addr", ln.Addr().String()), slog.Any("config", cfg))

	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve HTTP: %w", err)
	}
	logger.Info("keystone stopping")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	_ = srv.Shutdown(stopCtx)
	if stopErr := jobs.Stop(stopCtx); stopErr != nil {
		logger.Warn("job workers did not stop cleanly", slog.String("error", stopErr.Error()))
	}
	return err
}

// newJobs registers every job kind's worker and returns the queue client.
func newJobs(st *store.Store, cfg config.Config, logger *slog.Logger) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &queue.RecordPushWorker{Store: st, Logger: logger})
	river.AddWorker(workers, &queue.RecordCommentWorker{Store: st, Logger: logger})
	return queue.NewClient(st.Pool(), workers, queue.Config{
		DeployWorkers: cfg.Workers,
		Logger:        slog.New(minLevel{Handler: logger.Handler(), min: slog.LevelWarn}),
	})
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
