package outbox

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/store"
)

// Defaults of Config.
const (
	DefaultPollInterval = 5 * time.Second
	// DefaultMinBackoff is the first wait after a failure for which GitHub
	// named no wait: GitHub asks for at least a minute.
	DefaultMinBackoff  = time.Minute
	DefaultMaxBackoff  = 30 * time.Minute
	DefaultGiveUpAfter = 24 * time.Hour
	// DefaultSendTimeout bounds one send, the client's own retries included.
	DefaultSendTimeout = 5 * time.Minute
	DefaultConcurrency = 2
	// KeepFinished is how long sent and failed entries are kept.
	KeepFinished = 14 * 24 * time.Hour
)

// Config tunes the Dispatcher. Zero values take the defaults above; tests
// shorten the waits, production keeps them.
type Config struct {
	// PollInterval is how often the outbox is read when no notification
	// came (notifications wake the dispatcher at once).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential wait after a failure
	// for which GitHub named no wait (Retry-After, x-ratelimit-reset).
	MinBackoff, MaxBackoff time.Duration
	// GiveUpAfter is the age past which an entry that keeps failing with
	// 5xx or network errors is marked failed instead of retried.
	GiveUpAfter time.Duration
	// SendTimeout bounds one send.
	SendTimeout time.Duration
	// Concurrency is how many installations are sent to at once by this
	// process (each one's requests stay serial).
	Concurrency int
	Logger      *slog.Logger
	// Registerer, when set, gets the outbox metrics.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.MinBackoff = cmp.Or(c.MinBackoff, DefaultMinBackoff)
	c.MaxBackoff = max(cmp.Or(c.MaxBackoff, DefaultMaxBackoff), c.MinBackoff)
	c.GiveUpAfter = cmp.Or(c.GiveUpAfter, DefaultGiveUpAfter)
	c.SendTimeout = cmp.Or(c.SendTimeout, DefaultSendTimeout)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// GitHub is what the dispatcher says to GitHub (internal/github.App).
type GitHub interface {
	CreateStatus(ctx context.Context, inst int64, owner, repo, sha string, s github.Status) error
	LatestStatus(ctx context.Context, inst int64, owner, repo, sha, context string) (github.Status, bool, error)
	CreateComment(ctx context.Context, inst int64, owner, repo string, number int, body string) (github.Comment, error)
	EditComment(ctx context.Context, inst int64, owner, repo string, id int64, body string) error
	FindComment(ctx context.Context, inst int64, owner, repo string, number int, match func(github.Comment) bool) (github.Comment, bool, error)
	CreateReaction(ctx context.Context, inst int64, owner, repo string, commentID int64, content string) error
	PullRequestsForCommit(ctx context.Context, inst int64, owner, repo, sha string) ([]github.PullRequest, error)
	CreateDeployment(ctx context.Context, inst int64, owner, repo string, d github.NewDeployment) (int64, error)
	FindDeployment(ctx context.Context, inst int64, owner, repo, sha, environment string, match func(github.Deployment) bool) (github.Deployment, bool, error)
	CreateDeploymentStatus(ctx context.Context, inst int64, owner, repo string, id int64, s github.DeploymentStatus) error
	LatestDeploymentStatus(ctx context.Context, inst int64, owner, repo string, id int64) (github.DeploymentStatus, bool, error)
}

// Dispatcher sends the outbox. Every Keystone process runs one; a
// per-installation advisory lock makes one of them at a time send an
// installation's entries, so its mutating requests are serial across
// processes (as GitHub asks of integrations) and its ordering keys are
// sent in order.
type Dispatcher struct {
	store   *store.Store
	github  GitHub
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	kick    chan struct{}
}

// New returns a dispatcher sending st's outbox through gh.
func New(st *store.Store, gh GitHub, cfg Config) (*Dispatcher, error) {
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer, st)
	if err != nil {
		return nil, err
	}
	return &Dispatcher{store: st, github: gh, cfg: cfg, log: cfg.Logger, metrics: m, kick: make(chan struct{}, 1)}, nil
}

// Kick wakes the dispatcher now, as a notification would.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run sends due entries until ctx ends, waking on notifications of new
// entries, on the next retry time, and at least every PollInterval.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { d.listen(ctx) })

	active := map[int64]bool{}
	done := make(chan int64)
	lastPrune := time.Time{}
	for {
		if time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			d.prune(ctx)
		}
		wait := d.startDue(ctx, &wg, active, done)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			for len(active) > 0 {
				delete(active, <-done)
			}
			return nil
		case <-d.kick:
		case inst := <-done:
			delete(active, inst)
		case <-timer.C:
		}
		timer.Stop()
	}
}

// startDue starts a drain for each installation with due entries, up to
// Concurrency, and returns how long to sleep before looking again.
func (d *Dispatcher) startDue(ctx context.Context, wg *sync.WaitGroup, active map[int64]bool, done chan<- int64) time.Duration {
	insts, err := d.store.OutboxDueInstallations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("outbox: read due entries", slog.String("error", err.Error()))
		}
		return d.cfg.PollInterval
	}
	for _, inst := range insts {
		if active[inst] || len(active) >= d.cfg.Concurrency {
			continue
		}
		active[inst] = true
		wg.Go(func() {
			d.drain(ctx, inst)
			done <- inst
		})
	}
	wait := d.cfg.PollInterval
	if at, ok, err := d.store.NextOutboxWake(ctx); err == nil && ok {
		if until := time.Until(at); until > 0 {
			wait = min(wait, until+10*time.Millisecond)
		}
	}
	return wait
}

// listen turns notifications of new entries into kicks, reconnecting after
// failures; polling covers the gaps.
func (d *Dispatcher) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := d.store.Listen(ctx, store.OutboxChannel, func(string) { d.Kick() })
		if err != nil && ctx.Err() == nil {
			d.log.Warn("outbox: notifications lost, polling until reconnected", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// drain sends installation inst's due entries one at a time while this
// process holds the installation's lock.
func (d *Dispatcher) drain(ctx context.Context, inst int64) {
	release, ok, err := d.store.TryHoldLock(ctx, store.OutboxLockClass, inst)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("outbox: lock installation", slog.Int64("installation", inst), slog.String("error", err.Error()))
		}
		return
	}
	if !ok {
		return // another process sends this installation's entries
	}
	defer release()
	for ctx.Err() == nil {
		e, err := d.store.NextOutboxEntry(ctx, inst)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("outbox: read next entry", slog.Int64("installation", inst), slog.String("error", err.Error()))
			}
			return
		}
		if paused := d.send(ctx, e); paused {
			return
		}
	}
}

// send makes one attempt at entry e and records its outcome. It reports
// whether the installation is now paused.
func (d *Dispatcher) send(ctx context.Context, e store.OutboxEntry) (paused bool) {
	log := d.log.With(slog.Int64("outbox_id", e.ID), slog.String("kind", e.Kind),
		slog.Int64("installation", e.InstallationID), slog.String("repository", e.Owner+"/"+e.Repo))
	prev, err := d.store.StartOutboxAttempt(ctx, e.ID)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("outbox: start attempt", slog.String("error", err.Error()))
		}
		return false
	}
	sendCtx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	outcome, err := d.deliver(sendCtx, e, prev)
	cancel()
	// Record what happened even while stopping: a sent entry recorded as
	// pending would be checked again, not repeated, but costs a call.
	recCtx, cancelRec := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelRec()
	if err == nil {
		if err := d.store.FinishOutboxEntry(recCtx, e.ID, outcome, ""); err != nil {
			log.Error("outbox: record outcome", slog.String("outcome", outcome), slog.String("error", err.Error()))
		}
		d.metrics.outcome(e.Kind, outcome)
		log.Debug("outbox: entry done", slog.String("outcome", outcome), slog.Int("attempt", prev+1))
		return false
	}
	return d.failed(recCtx, log, e, prev, err)
}

// failed records a failed attempt: rate limits pause the installation until
// GitHub's time, other transient failures retry the entry after a wait,
// anything else fails the entry. It reports whether the installation paused.
func (d *Dispatcher) failed(ctx context.Context, log *slog.Logger, e store.OutboxEntry, prev int, err error) bool {
	f := github.Classify(err)
	why := err.Error()
	log = log.With(slog.String("error", why), slog.Int("attempt", prev+1), slog.Int("github_status", f.Status))
	wait := d.backoff(prev)
	if f.WaitKnown {
		wait = f.Wait
	}
	at := time.Now().Add(wait)
	var recErr error
	switch {
	case f.Kind == github.RateLimited:
		log.Warn("outbox: GitHub rate limit: installation paused", slog.Time("until", at))
		recErr = errors.Join(
			d.store.PauseOutboxInstallation(ctx, e.InstallationID, at, why),
			d.store.RetryOutboxEntryAt(ctx, e.ID, at, why))
		d.metrics.outcome(e.Kind, "rate_limited")
	case f.Kind == github.Transient && time.Since(e.CreatedAt) < d.cfg.GiveUpAfter:
		log.Warn("outbox: send failed, will retry", slog.Time("retry_at", at))
		recErr = d.store.RetryOutboxEntryAt(ctx, e.ID, at, why)
		d.metrics.outcome(e.Kind, "retried")
	default:
		log.Error("outbox: entry failed for good", slog.String("failure", f.Kind.String()))
		recErr = d.store.FinishOutboxEntry(ctx, e.ID, store.OutboxFailed, why)
		d.metrics.outcome(e.Kind, store.OutboxFailed)
	}
	if recErr != nil {
		log.Error("outbox: record failure", slog.String("record_error", recErr.Error()))
	}
	return f.Kind == github.RateLimited
}

// backoff is the wait after the attempt that followed prev failed ones, when
// GitHub named none: MinBackoff doubled per failure, capped at MaxBackoff,
// plus up to 10% jitter so that processes spread out.
func (d *Dispatcher) backoff(prev int) time.Duration {
	wait := d.cfg.MaxBackoff
	if prev < 32 {
		if w := d.cfg.MinBackoff << prev; w > 0 && w < wait {
			wait = w
		}
	}
	return wait + rand.N(wait/10+1)
}

func (d *Dispatcher) prune(ctx context.Context) {
	n, err := d.store.PruneOutbox(ctx, time.Now().Add(-KeepFinished))
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Warn("outbox: prune", slog.String("error", err.Error()))
	case n > 0:
		d.log.Info("outbox: pruned finished entries", slog.Int64("entries", n))
	}
}
