package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// GitHub is what command handling asks GitHub directly (reads only; what
// Keystone says goes through the outbox).
type GitHub interface {
	AppID() int64
	AppSlug(ctx context.Context) (string, error)
	CollaboratorPermission(ctx context.Context, inst int64, owner, repo, user string) (string, error)
	PullRequest(ctx context.Context, inst int64, owner, repo string, number int) (github.PullRequest, error)
}

// Requester starts the deployments people ask for: the deploy engine's.
type Requester interface {
	Request(ctx context.Context, r deploy.Request) (store.Deployment, error)
}

// GiveUpAfter is how long a command waits for GitHub to answer the
// permission check before Keystone stops trying and says so.
const GiveUpAfter = 24 * time.Hour

// CommandsConfig is what Commands works with.
type CommandsConfig struct {
	Store     *store.Store
	GitHub    GitHub
	Requester Requester // nil: deploy and rollback are refused (no engine)
	Links     Links
	Logger    *slog.Logger
	// Registerer, when set, gets keystone_commands_total.
	Registerer prometheus.Registerer
	// IsRefusal tells a Requester error that is the commenter's to fix
	// (shown to them; the command ends) from one to retry. Default: a
	// *deploy.RequestError.
	IsRefusal func(error) bool
}

// Commands handles /keystone commands: it is the worker of comment jobs.
type Commands struct {
	river.WorkerDefaults[queue.CommentArgs]
	cfg     CommandsConfig
	r       *renderer
	log     *slog.Logger
	counter *prometheus.CounterVec

	mu   sync.Mutex
	slug string
}

// NewCommands returns the comment job worker.
func NewCommands(cfg CommandsConfig) (*Commands, error) {
	if cfg.Store == nil || cfg.GitHub == nil || cfg.Logger == nil {
		return nil, errors.New("conversation: commands need a Store, GitHub and a Logger")
	}
	if cfg.IsRefusal == nil {
		cfg.IsRefusal = isRefusal
	}
	r, err := newRenderer(cfg.Links)
	if err != nil {
		return nil, err
	}
	c := &Commands{cfg: cfg, r: r, log: cfg.Logger, counter: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keystone_commands_total",
		Help: "/keystone commands by verb and outcome (accepted, denied, usage, refused, ignored, replayed).",
	}, []string{"verb", "outcome"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.counter); err != nil {
			return nil, fmt.Errorf("register command metrics: %w", err)
		}
	}
	return c, nil
}

// Timeout is queue.CommentTimeout.
func (c *Commands) Timeout(*river.Job[queue.CommentArgs]) time.Duration { return queue.CommentTimeout }

// commentEvent is the part of an issue_comment delivery commands use,
// decoded here because go-github's comment lacks performed_via_github_app.
type commentEvent struct {
	Action  string `json:"action"`
	Comment struct {
		ID     int64  `json:"id"`
		Body   string `json:"body"`
		User   ghUser `json:"user"`
		ViaApp *struct {
			ID int64 `json:"id"`
		} `json:"performed_via_github_app"`
	} `json:"comment"`
	Issue struct {
		Number int `json:"number"`
	} `json:"issue"`
	Repository struct {
		Name  string `json:"name"`
		Owner ghUser `json:"owner"`
	} `json:"repository"`
	Sender       ghUser `json:"sender"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

type ghUser struct {
	Login string `json:"login"`
	Type  string `json:"type"`
}

// Work reads the comment of the job's delivery and carries out its command.
func (c *Commands) Work(ctx context.Context, job *river.Job[queue.CommentArgs]) error {
	d, err := c.cfg.Store.Delivery(ctx, job.Args.DeliveryID)
	if err != nil {
		return fmt.Errorf("comment job %d: %w", job.ID, err)
	}
	log := c.log.With(slog.String("delivery_id", d.GUID), slog.Int64("job_id", job.ID))
	var ev commentEvent
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		log.Warn("comment ignored: payload unreadable", slog.String("error", err.Error()))
		return c.cfg.Store.MarkDeliveryProcessed(ctx, d.ID)
	}
	log = log.With(slog.String("repository", ev.Repository.Owner.Login+"/"+ev.Repository.Name),
		slog.Int("issue", ev.Issue.Number), slog.String("actor", ev.Sender.Login))
	cmd, found, parseErr := Parse(ev.Comment.Body)
	reason := c.ignored(ctx, ev)
	if reason == "" && !found {
		reason = "no /keystone line"
	}
	var apps []store.App
	if reason == "" {
		if apps, err = c.cfg.Store.RepositoryApps(ctx, ev.Repository.Owner.Login, ev.Repository.Name); err != nil {
			return err
		}
		if len(apps) == 0 {
			reason = "the repository has no app in a .keystone.yml"
		}
	}
	if reason != "" {
		log.Info("comment ignored", slog.String("reason", reason))
		c.counter.WithLabelValues(cmd.Verb, "ignored").Inc()
		return c.cfg.Store.MarkDeliveryProcessed(ctx, d.ID)
	}
	rec, err := c.cfg.Store.CommandByDelivery(ctx, d.ID)
	if errors.Is(err, store.ErrNotFound) {
		// A command is one per comment: the same signed body under a new
		// delivery id is a replay, and runs nothing.
		if first, ferr := c.cfg.Store.CommandOfComment(ctx, ev.Comment.ID); ferr == nil {
			return c.replayed(ctx, log, d, cmd.Verb, first.DeliveryID)
		} else if !errors.Is(ferr, store.ErrNotFound) {
			return ferr
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		rec = store.Command{DeliveryID: d.ID, InstallationID: ev.Installation.ID, Owner: ev.Repository.Owner.Login,
			Repo: ev.Repository.Name, IssueNumber: ev.Issue.Number, CommentID: ev.Comment.ID,
			Actor: ev.Sender.Login, Verb: cmd.Verb}
	case err != nil:
		return err
	case rec.Outcome != store.CommandAccepted:
		return c.cfg.Store.MarkDeliveryProcessed(ctx, d.ID) // finished before a crash
	}
	h := &handling{c: c, log: log.With(slog.String("verb", cmd.Verb)), d: d, rec: rec, cmd: cmd, apps: apps,
		lastAttempt: job.MaxAttempts > 0 && job.Attempt >= job.MaxAttempts}
	err = h.run(ctx, parseErr)
	if errors.Is(err, store.ErrReplayed) { // another delivery of the comment recorded it meanwhile
		return c.replayed(ctx, log, d, cmd.Verb, 0)
	}
	return err
}

// replayed ends delivery d, which repeats a comment another delivery
// carried: nothing runs, nothing is said on GitHub.
func (c *Commands) replayed(ctx context.Context, log *slog.Logger, d store.Delivery, verb string, firstDelivery int64) error {
	log.Warn("comment ignored: its command was read from another delivery (a replay)",
		slog.Int64("first_delivery", firstDelivery))
	c.counter.WithLabelValues(verb, "replayed").Inc()
	return c.cfg.Store.MarkDeliveryProcessed(ctx, d.ID)
}

// ignored says why a comment is not for Keystone ("" when it is): not a new
// comment, or written by a bot, Keystone itself above all.
func (c *Commands) ignored(ctx context.Context, ev commentEvent) string {
	switch {
	case ev.Action != "created":
		return "comment " + clip(ev.Action, 20) + ": only new comments are read"
	case ev.Installation.ID == 0 || ev.Issue.Number <= 0 || ev.Comment.ID <= 0:
		return "not a comment of an installation"
	case strings.EqualFold(ev.Sender.Type, "Bot") || strings.EqualFold(ev.Comment.User.Type, "Bot"):
		return "comment by a bot"
	case ev.Comment.ViaApp != nil && ev.Comment.ViaApp.ID == c.cfg.GitHub.AppID():
		return "comment by Keystone"
	}
	if bot := c.botLogin(ctx); bot != "" &&
		(strings.EqualFold(ev.Sender.Login, bot) || strings.EqualFold(ev.Comment.User.Login, bot)) {
		return "comment by Keystone"
	}
	return ""
}

// botLogin is "<slug>[bot]", asked of GitHub once; "" while GitHub cannot
// say (the Bot type check covers Keystone's comments meanwhile).
func (c *Commands) botLogin(ctx context.Context) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slug == "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		slug, err := c.cfg.GitHub.AppSlug(ctx)
		if err != nil {
			c.log.Warn("read the App's slug", slog.String("error", err.Error()))
			return ""
		}
		c.slug = slug
	}
	return c.slug + "[bot]"
}

// retryLater is what to return when GitHub could not answer: the job is
// snoozed (attempts are kept for real errors) for as long as GitHub asks,
// at least half a minute.
func retryLater(err error, since time.Time) error {
	f := github.Classify(err)
	if f.Kind == github.Permanent || time.Since(since) > GiveUpAfter {
		return nil
	}
	wait := 30 * time.Second
	if f.WaitKnown {
		wait = max(f.Wait, time.Second)
	}
	return river.JobSnooze(min(wait, time.Hour))
}
