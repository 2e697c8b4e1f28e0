// Package redelivery recovers webhook deliveries Keystone missed (SPEC §4):
// at start-up and periodically it lists the App's recent deliveries through
// the API and asks GitHub to send again the failed ones whose GUID Keystone
// has not stored. The intake then takes them like any delivery.
package redelivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/store"
)

// Defaults of Config.
const (
	DefaultInterval = 10 * time.Minute
	// DefaultWindow is how far back a first pass reads: GitHub keeps
	// deliveries for three days.
	DefaultWindow = 72 * time.Hour
	// DefaultMargin is how far before the last pass's start a pass reads,
	// for deliveries that were still being attempted then.
	DefaultMargin          = 10 * time.Minute
	DefaultMaxPages        = 50 // of 100 deliveries
	DefaultMaxRedeliveries = 50 // per pass; the rest wait for the next
	// DefaultMaxRequests bounds the redeliveries asked of one delivery: one
	// Keystone keeps refusing (a bad signature) is not asked for forever.
	DefaultMaxRequests = 3
	// DefaultRequestGap is how long after asking for a redelivery the same
	// delivery is not asked for again: GitHub may still be sending it.
	DefaultRequestGap = 15 * time.Minute
)

// handled are the events Keystone acts on; missed others need no redelivery.
var handled = []string{"push", "issue_comment", "installation", "installation_repositories"}

// Config tunes the Recoverer; zero values take the defaults.
type Config struct {
	Interval, Window, Margin time.Duration
	MaxPages                 int
	MaxRedeliveries          int
	MaxRequests              int
	RequestGap               time.Duration
	Logger                   *slog.Logger
	// Registerer, when set, gets the metrics.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.Window = cmp.Or(c.Window, DefaultWindow)
	c.Margin = cmp.Or(c.Margin, DefaultMargin)
	c.MaxPages = cmp.Or(c.MaxPages, DefaultMaxPages)
	c.MaxRedeliveries = cmp.Or(c.MaxRedeliveries, DefaultMaxRedeliveries)
	c.MaxRequests = cmp.Or(c.MaxRequests, DefaultMaxRequests)
	c.RequestGap = cmp.Or(c.RequestGap, DefaultRequestGap)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// GitHub is what the Recoverer asks GitHub, as the App (internal/github.App).
type GitHub interface {
	ListHookDeliveries(ctx context.Context, cursor string, perPage int) ([]github.HookDelivery, string, error)
	RedeliverHookDelivery(ctx context.Context, id int64) error
}

// Recoverer finds and asks for missed deliveries.
type Recoverer struct {
	store   *store.Store
	github  GitHub
	cfg     Config
	log     *slog.Logger
	metrics *metrics
}

// New returns a Recoverer over st and gh.
func New(st *store.Store, gh GitHub, cfg Config) (*Recoverer, error) {
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Recoverer{store: st, github: gh, cfg: cfg, log: cfg.Logger, metrics: m}, nil
}

// Run makes a pass now and then every Interval until ctx ends.
func (r *Recoverer) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("missed deliveries: pass failed", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Result is what a pass found and did.
type Result struct {
	Listed      int  // deliveries read
	Missing     int  // failed deliveries of events Keystone handles, not stored
	Redelivered int  // redeliveries asked for
	GivenUp     int  // missing ones asked for MaxRequests times already
	Complete    bool // read back to the window and asked for every missing one
	Skipped     bool // another process was making a pass
}

// missed is what a pass knows of one delivery GUID.
type missed struct {
	guid      string
	event     string
	failedID  int64 // the newest failed attempt
	succeeded bool  // some attempt got a 2xx
}

// RunOnce makes one pass, unless another process is making one.
func (r *Recoverer) RunOnce(ctx context.Context) (Result, error) {
	release, ok, err := r.store.TryHoldLock(ctx, store.RedeliveryLockClass, 0)
	if err != nil {
		r.metrics.runs.WithLabelValues("error").Inc()
		return Result{}, err
	}
	if !ok {
		r.metrics.runs.WithLabelValues("skipped").Inc()
		return Result{Skipped: true}, nil
	}
	defer release()
	start := time.Now()
	res, err := r.pass(ctx, start)
	outcome := "complete"
	switch {
	case err != nil:
		outcome = "error"
	case !res.Complete:
		outcome = "incomplete"
	}
	r.metrics.runs.WithLabelValues(outcome).Inc()
	if rerr := r.store.RecordRedeliveryRun(context.WithoutCancel(ctx), store.RedeliveryRun{StartedAt: start,
		Listed: res.Listed, Missing: res.Missing, Redelivered: res.Redelivered, Complete: res.Complete && err == nil}); rerr != nil {
		err = errors.Join(err, rerr)
	}
	r.log.Info("missed deliveries: pass done", slog.String("outcome", outcome), slog.Int("listed", res.Listed),
		slog.Int("missing", res.Missing), slog.Int("redelivered", res.Redelivered), slog.Int("given_up", res.GivenUp),
		slog.Duration("took", time.Since(start)))
	return res, err
}

func (r *Recoverer) pass(ctx context.Context, start time.Time) (Result, error) {
	since := start.Add(-r.cfg.Window)
	last, ok, err := r.store.LastCompleteRedeliveryRun(ctx)
	if err != nil {
		return Result{}, err
	}
	if ok && last.Add(-r.cfg.Margin).After(since) {
		since = last.Add(-r.cfg.Margin)
	}
	seen, listed, complete, err := r.list(ctx, since)
	res := Result{Listed: listed, Complete: complete}
	if err != nil {
		return res, err
	}
	// Oldest first: GitHub then sends them in the order they happened, and
	// a newer push still supersedes an older one.
	slices.SortFunc(seen, func(a, b missed) int { return cmp.Compare(a.failedID, b.failedID) })
	for _, m := range seen {
		if m.succeeded || m.failedID == 0 || !slices.Contains(handled, m.event) {
			continue
		}
		asked, err := r.ask(ctx, m, &res)
		if err != nil {
			res.Complete = false
			return res, err
		}
		if !asked && res.Redelivered >= r.cfg.MaxRedeliveries {
			res.Complete = false
			break
		}
	}
	return res, nil
}

// list reads deliveries newest first back to since (or MaxPages), grouped by
// GUID. complete is false when it stopped at MaxPages.
func (r *Recoverer) list(ctx context.Context, since time.Time) (out []missed, listed int, complete bool, err error) {
	byGUID := map[string]int{}
	cursor := ""
	for range r.cfg.MaxPages {
		page, next, err := r.github.ListHookDeliveries(ctx, cursor, 100)
		if err != nil {
			return out, listed, false, err
		}
		for _, d := range page {
			if d.DeliveredAt.Before(since) {
				return out, listed, true, nil
			}
			listed++
			i, ok := byGUID[d.GUID]
			if !ok {
				i = len(out)
				byGUID[d.GUID] = i
				out = append(out, missed{guid: d.GUID, event: d.Event})
			}
			if d.Succeeded() {
				out[i].succeeded = true
			} else if d.ID > out[i].failedID {
				out[i].failedID = d.ID
			}
		}
		if next == "" {
			return out, listed, true, nil
		}
		cursor = next
	}
	r.log.Warn("missed deliveries: stopped at the page limit", slog.Int("pages", r.cfg.MaxPages))
	return out, listed, false, nil
}

// ask asks GitHub to send m again if Keystone has not stored it, it was not
// asked for too often or too recently, and the pass has room. asked tells
// whether it did.
func (r *Recoverer) ask(ctx context.Context, m missed, res *Result) (asked bool, err error) {
	stored, err := r.store.DeliveryStored(ctx, m.guid)
	if err != nil || stored {
		return false, err
	}
	n, last, err := r.store.RedeliveryRequests(ctx, m.guid)
	if err != nil {
		return false, err
	}
	log := r.log.With(slog.String("delivery_id", m.guid), slog.String("event", m.event))
	switch {
	case n >= r.cfg.MaxRequests:
		res.GivenUp++
		log.Warn("missed delivery: given up after asking GitHub for it", slog.Int("requests", n))
		return false, nil
	case n > 0 && time.Since(last) < r.cfg.RequestGap:
		return false, nil // asked for lately: GitHub may still be sending it
	}
	res.Missing++
	r.metrics.missing.Inc()
	if res.Redelivered >= r.cfg.MaxRedeliveries {
		return false, nil
	}
	if err := r.github.RedeliverHookDelivery(ctx, m.failedID); err != nil {
		return false, fmt.Errorf("redeliver %s: %w", m.guid, err)
	}
	if err := r.store.NoteRedeliveryRequest(ctx, m.guid, m.failedID); err != nil {
		return true, err
	}
	res.Redelivered++
	r.metrics.redelivered.Inc()
	log.Info("missed delivery: redelivery asked for", slog.Int64("github_delivery", m.failedID))
	return true, nil
}

type metrics struct {
	missing, redelivered prometheus.Counter
	runs                 *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		missing: prometheus.NewCounter(prometheus.CounterOpts{Name: "keystone_webhook_deliveries_missing_total",
			Help: "Failed webhook deliveries found by a pass that Keystone had not stored."}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "keystone_webhook_deliveries_redelivered_total",
			Help: "Redeliveries of missed webhook deliveries asked of GitHub."}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keystone_webhook_redelivery_runs_total",
			Help: "Passes over the App's recent deliveries, by outcome (complete, incomplete, error, skipped)."}, []string{"outcome"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.missing, m.redelivered, m.runs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register redelivery metrics: %w", err)
			}
		}
	}
	return m, nil
}
