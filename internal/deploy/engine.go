package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// TokenSource gives installation access tokens; *github.App implements it.
type TokenSource interface {
	InstallationToken(ctx context.Context, installationID int64) (string, error)
}

// hasTokens reports whether sources can be fetched: a token source is set
// and, if it can say so (one whose App is configured while Keystone runs,
// by the first-run setup), it is configured now.
func (e *Engine) hasTokens() bool {
	if e.tokens == nil {
		return false
	}
	c, ok := e.tokens.(interface{ Configured() bool })
	return !ok || c.Configured()
}

// Config tunes the engine. Zero values take the defaults.
type Config struct {
	// DataDir holds the source mirrors (KEYSTONE_DATA_DIR).
	DataDir string
	// PortRange is where app host ports come from (KEYSTONE_PORT_RANGE).
	PortRange config.PortRange
	// BuildTimeout bounds one image build. Default 15 minutes.
	BuildTimeout time.Duration
	// StopTimeout is how long a stopping container gets before SIGKILL.
	// Default 10 seconds.
	StopTimeout time.Duration
	// KeepImages is how many successful images of an app are kept for
	// rollbacks. Default 5.
	KeepImages int
	// LogLimit caps each deployment's stored log. Default DefaultLogLimit.
	LogLimit store.LogLimit
	// ProbeHost is where health checks reach host ports. Default 127.0.0.1.
	ProbeHost string
	// HealthInterval is the pause between health probes. Default 100ms.
	HealthInterval time.Duration
	// NoPathWait is how long an app without health_check_path must run to be
	// healthy. Default 5 seconds (SPEC §6).
	NoPathWait time.Duration
	// ReconcileInterval is how often containers are matched against the
	// database. Default one minute.
	ReconcileInterval time.Duration
	// PidsLimit caps the processes of an app's container. Default 512.
	PidsLimit int64
	// MaxMemory (bytes) and MaxCPUs are the operator's caps on what
	// .keystone.yml may ask for (KEYSTONE_MAX_MEMORY, KEYSTONE_MAX_CPUS).
	// Defaults 4g and 2.
	MaxMemory int64
	MaxCPUs   float64
	// Builder forces the image builder: "legacy" uses the classic builder
	// even where the engine has BuildKit (tests of the fallback). Default:
	// BuildKit when the engine has it.
	Builder string
	// MaxPreviews caps the open pull-request previews
	// (KEYSTONE_MAX_PREVIEWS). Default 10; negative: none at all.
	MaxPreviews int
	// AppsDomain is KEYSTONE_APPS_DOMAIN: with a RouteTable, apps are
	// routed at their default host name under it. "" is IP mode.
	AppsDomain string
	// AllowedDomains are the names and "*.suffix" patterns domains: may
	// claim (KEYSTONE_ALLOWED_DOMAINS); default "*.<AppsDomain>".
	AllowedDomains []string
	// OwnHost is Keystone's own host name (KEYSTONE_PUBLIC_URL's), which
	// no app may claim.
	OwnHost string
	// RouterWait is how long a deployment's switch waits for a router
	// that does not answer (restarting) before the attempt fails. Default
	// one minute.
	RouterWait time.Duration
	// DockerWait is how long a failed attempt waits for a Docker engine
	// that does not answer before it is restored and retried. Default one
	// minute.
	DockerWait time.Duration
}

// limits are the operator's caps as .keystone.yml's parser applies them.
func (c Config) limits() keystoneyml.Limits {
	return keystoneyml.Limits{Memory: c.MaxMemory, CPUs: c.MaxCPUs}
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.BuildTimeout, 15*time.Minute)
	def(&c.StopTimeout, 10*time.Second)
	def(&c.HealthInterval, 100*time.Millisecond)
	def(&c.NoPathWait, 5*time.Second)
	def(&c.ReconcileInterval, time.Minute)
	def(&c.RouterWait, time.Minute)
	def(&c.DockerWait, time.Minute)
	if c.KeepImages <= 0 {
		c.KeepImages = 5
	}
	if c.LogLimit.Lines <= 0 || c.LogLimit.Bytes <= 0 {
		c.LogLimit = DefaultLogLimit
	}
	if c.ProbeHost == "" {
		c.ProbeHost = "127.0.0.1"
	}
	if c.MaxMemory <= 0 {
		c.MaxMemory = 4 << 30
	}
	if c.MaxCPUs <= 0 {
		c.MaxCPUs = 2
	}
	if c.MaxPreviews == 0 {
		c.MaxPreviews = 10
	}
	if c.PidsLimit <= 0 {
		c.PidsLimit = 512
	}
	if c.PortRange.First == 0 {
		c.PortRange = config.PortRange{First: 9000, Last: 9999}
	}
	if c.DataDir == "" {
		c.DataDir = "./.keystone"
	}
	if c.AllowedDomains == nil && c.AppsDomain != "" {
		c.AllowedDomains = []string{"*." + strings.ToLower(c.AppsDomain)}
	}
	return c
}

// Deps are what the engine works with. Store, Docker and Logger are
// required; the rest are optional.
type Deps struct {
	Store  *store.Store
	Docker Docker
	// Tokens fetch sources; without it (no GitHub App configured) pushes
	// and rebuilds fail with a clear error.
	Tokens TokenSource
	// Secrets supplies the apps' secret variables; nil: none.
	Secrets Secrets
	// Notifier hears of deployment changes; nil: nobody.
	Notifier Notifier
	// Switcher puts new containers in service; nil: StopStart.
	Switcher Switcher
	// Routes is the router's admin API; nil: no router, apps answer on
	// their host ports only.
	Routes RouteTable
	// RouterPresent tells whether the router runs now (its admin socket
	// exists), asked before each deployment and reconciliation so that a
	// router started after Keystone is taken up; nil: whenever Routes is set.
	RouterPresent func() bool
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// Jobs lists River's jobs, for reconciliation to find deployments no
	// job will finish; required to reconcile.
	Jobs JobLister
	// Now tells the time that keep_previous windows are measured by; nil:
	// time.Now.
	Now func() time.Time
}

// Engine runs deployments (SPEC §5, §6): the push and deploy job workers,
// the requester for deployments asked by people, and reconciliation.
type Engine struct {
	cfg      Config
	store    *store.Store
	docker   Docker
	tokens   TokenSource
	secrets  Secrets
	notifier Notifier
	switcher Switcher
	routes   RouteTable
	present  func() bool
	sources  *Sources
	jobs     JobLister
	now      func() time.Time
	health   healthChecker
	logger   *slog.Logger
	metrics  *metrics

	instanceMu sync.Mutex
	instanceID string

	builderMu sync.Mutex
	builder   string // "buildkit" or "legacy" once known
	network   string // the apps' network once made
}

// New returns an engine. It makes no call: the instance id is read from the
// database on first use.
func New(deps Deps, cfg Config) (*Engine, error) {
	if deps.Store == nil || deps.Docker == nil || deps.Logger == nil {
		return nil, errors.New("deploy engine: Store, Docker and Logger are required")
	}
	cfg = cfg.withDefaults()
	if cfg.PortRange.First < 1 || cfg.PortRange.Last < cfg.PortRange.First || cfg.PortRange.Last > 65535 {
		return nil, fmt.Errorf("deploy engine: invalid port range %s", cfg.PortRange)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, store: deps.Store, docker: deps.Docker, tokens: deps.Tokens, secrets: deps.Secrets,
		notifier: deps.Notifier, switcher: deps.Switcher, routes: deps.Routes, present: deps.RouterPresent, sources: NewSources(cfg.DataDir), jobs: deps.Jobs, now: deps.Now,
		health:  healthChecker{docker: deps.Docker, host: cfg.ProbeHost, interval: cfg.HealthInterval, noPath: cfg.NoPathWait},
		logger:  deps.Logger,
		metrics: m,
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.switcher == nil {
		e.switcher = StopStart{Docker: deps.Docker, StopTimeout: cfg.StopTimeout}
	}
	return e, nil
}

// Ping checks that the Docker engine answers, for /readyz.
func (e *Engine) Ping(ctx context.Context) error {
	if _, err := e.docker.Ping(ctx); err != nil {
		return fmt.Errorf("ping docker: %w", err)
	}
	return nil
}

// DeployWorker returns the worker of deploy jobs, at most one per app at a
// time across processes.
func (e *Engine) DeployWorker() river.Worker[queue.DeployArgs] {
	return queue.Exclusive[queue.DeployArgs](e.store, &deployWorker{e: e}, 0)
}

// PushWorker returns the worker of push jobs.
func (e *Engine) PushWorker() river.Worker[queue.PushArgs] { return &pushWorker{e: e} }

// instance returns this database's instance id, reading it once.
func (e *Engine) instance(ctx context.Context) (string, error) {
	e.instanceMu.Lock()
	defer e.instanceMu.Unlock()
	if e.instanceID == "" {
		id, err := e.store.InstanceID(ctx)
		if err != nil {
			return "", fmt.Errorf("read the instance id: %w", err)
		}
		e.instanceID = id
	}
	return e.instanceID, nil
}

// update runs fn in a transaction and tells the notifier of the deployment
// it returns, in the same transaction.
func (e *Engine) update(ctx context.Context, fn func(q *store.Queries) (store.Deployment, error)) (store.Deployment, error) {
	var d store.Deployment
	err := e.store.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		var err error
		if d, err = fn(q); err != nil {
			return err
		}
		return e.notify(ctx, tx, q, d)
	})
	return d, err
}

func (e *Engine) notify(ctx context.Context, tx pgx.Tx, q *store.Queries, d store.Deployment) error {
	if e.notifier == nil {
		return nil
	}
	app, err := q.App(ctx, d.AppID)
	if err != nil {
		return err
	}
	if err := e.notifier.DeploymentChanged(ctx, tx, app, d); err != nil {
		return fmt.Errorf("notify deployment %d change: %w", d.ID, err)
	}
	return nil
}

// hostPort returns the app's host port, allocating it on first use: the
// lowest port of the range that no app holds and nothing on the host uses.
func (e *Engine) hostPort(ctx context.Context, appID int64) (int, error) {
	return e.store.AllocatePort(ctx, appID, e.cfg.PortRange.First, e.cfg.PortRange.Last, portFree)
}

// portFree reports whether nothing listens on port on this host.
func portFree(port int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// appSecrets returns the app's secrets (none without a Secrets).
func (e *Engine) appSecrets(ctx context.Context, appID int64) (map[string]string, error) {
	if e.secrets == nil {
		return nil, nil
	}
	s, err := e.secrets.AppSecrets(ctx, appID)
	if err != nil {
		return nil, fmt.Errorf("read the secrets of app %d: %w", appID, err)
	}
	return s, nil
}

// metrics of deploys (SPEC §12).
type metrics struct {
	duration *prometheus.HistogramVec
	health   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keystone_deploy_duration_seconds", Help: "Time from a deploy job's start to its outcome.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}, []string{"kind", "state"}),
		health: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keystone_health_checks_total", Help: "Health checks of new containers by result.",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.duration, m.health} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register deploy metrics: %w", err)
			}
		}
	}
	return m, nil
}
