// Package webhook receives GitHub's deliveries at POST /webhooks/github (SPEC §4).
//
// The handler verifies the signature, parses and classifies the delivery, and
// hands what implies work to a Recorder that stores it with its jobs in one
// transaction. Only then does it answer 2xx. It makes no GitHub or Docker call.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// MaxBodyBytes is GitHub's cap on a delivery's payload (25 MiB).
const MaxBodyBytes = 25 << 20

// ErrDuplicate is returned by a Recorder for a delivery GUID stored before.
var ErrDuplicate = errors.New("delivery already received")

// Recorder stores a delivery and the work it implies in one transaction.
type Recorder interface {
	// Record returns the number of jobs enqueued, ErrDuplicate when d.GUID was
	// stored before (nothing new is written), or another error when the
	// database could not take it.
	Record(ctx context.Context, d Delivery) (jobs int, err error)
}

// Handler serves POST /webhooks/github.
type Handler struct {
	cfg      Config
	recorder Recorder
	logger   *slog.Logger
	metrics  *metrics
	// bytes and reads bound the bodies read before their signature is
	// checked (Config.UnverifiedBytes, UnverifiedReads).
	budget, reading *semaphore.Weighted
}

// Config is what the handler checks deliveries against.
type Config struct {
	// Secret is the webhook secret; empty refuses every delivery.
	Secret []byte
	// LiveSecret, when set, is asked for the secret at each delivery
	// instead, for a Keystone whose GitHub App is created while it serves
	// (SPEC §15): until it returns one, every delivery is refused.
	LiveSecret func() []byte
	// GitHubWebURL is GitHub's web base URL (KEYSTONE_GITHUB_WEB_URL,
	// default https://github.com): a push's repository.clone_url must be
	// the repository's URL under it, since Keystone fetches from it with
	// the installation's token.
	GitHubWebURL string
	// UnverifiedBytes caps the bytes of bodies being read before their
	// signature is checked, all requests together (default 64 MiB): anyone
	// can post, so unsigned bodies must not take the host's memory.
	UnverifiedBytes int64
	// UnverifiedReads caps how many bodies are read at once (default 16).
	UnverifiedReads int
	// BusyWait is how long a delivery waits for room in those caps before
	// it is answered 503 (default 10s); GitHub redelivers it.
	BusyWait time.Duration
}

// NewHandler returns the webhook handler. Metrics are registered on reg.
func NewHandler(cfg Config, recorder Recorder, logger *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	cfg.GitHubWebURL = strings.TrimSuffix(cfg.GitHubWebURL, "/")
	if cfg.GitHubWebURL == "" {
		cfg.GitHubWebURL = "https://github.com"
	}
	if cfg.UnverifiedBytes <= 0 {
		cfg.UnverifiedBytes = 64 << 20
	}
	cfg.UnverifiedBytes = max(cfg.UnverifiedBytes, MaxBodyBytes) // one delivery of any size fits
	if cfg.UnverifiedReads <= 0 {
		cfg.UnverifiedReads = 16
	}
	if cfg.BusyWait <= 0 {
		cfg.BusyWait = 10 * time.Second
	}
	if cfg.LiveSecret == nil {
		secret := cfg.Secret
		cfg.LiveSecret = func() []byte { return secret }
	}
	return &Handler{cfg: cfg, recorder: recorder, logger: logger, metrics: m,
		budget: semaphore.NewWeighted(cfg.UnverifiedBytes), reading: semaphore.NewWeighted(int64(cfg.UnverifiedReads))}, nil
}

// errBusy: no room to read another unverified body now.
var errBusy = errors.New("too many deliveries being read")

// readBody reads r's body (at most MaxBodyBytes) within the caps on
// unverified reads; the caller checks its signature, then calls release.
// The declared length is reserved before anything is read; a body of unknown
// length reserves the maximum.
func (h *Handler) readBody(r *http.Request) (body []byte, release func(), err error) {
	release = func() {}
	if r.ContentLength > MaxBodyBytes {
		return nil, release, &http.MaxBytesError{Limit: MaxBodyBytes}
	}
	size := int64(MaxBodyBytes)
	if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.BusyWait)
	defer cancel()
	if err := h.reading.Acquire(ctx, 1); err != nil {
		return nil, release, errBusy
	}
	if err := h.budget.Acquire(ctx, size); err != nil {
		h.reading.Release(1)
		return nil, release, errBusy
	}
	var once sync.Once
	release = func() { once.Do(func() { h.budget.Release(size); h.reading.Release(1) }) }
	var buf bytes.Buffer
	buf.Grow(int(size) + bytes.MinRead) // ReadFrom wants MinRead free to see the end: no doubling
	_, err = buf.ReadFrom(http.MaxBytesReader(nil, r.Body, size))
	return buf.Bytes(), release, err
}

var guidPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// answer is the small JSON body of every response.
type answer struct {
	Status   string `json:"status"`
	Delivery string `json:"delivery,omitempty"`
	Jobs     int    `json:"jobs,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Handle is the gin handler for POST /webhooks/github.
func (h *Handler) Handle(c *gin.Context) {
	start := time.Now()
	event := c.GetHeader("X-GitHub-Event")
	guid := c.GetHeader("X-GitHub-Delivery")
	code, ans := h.handle(c.Request, event, guid)
	c.JSON(code, ans)
	h.metrics.observe(event, ans.Status, time.Since(start))
}

// secret is the webhook secret deliveries are checked against now.
func (h *Handler) secret() []byte { return h.cfg.LiveSecret() }

func (h *Handler) handle(r *http.Request, event, guid string) (int, answer) {
	log := h.logger.With(slog.String("delivery_id", clip(guid)), slog.String("event", clip(event)))
	body, release, err := h.readBody(r)
	defer release()
	if errors.Is(err, errBusy) {
		log.Warn("webhook refused: too many deliveries being read at once")
		return http.StatusServiceUnavailable, answer{Status: "unavailable", Error: "busy: please redeliver"}
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			log.Warn("webhook refused: body over 25 MiB")
			return http.StatusRequestEntityTooLarge, answer{Status: "too_large", Error: "body over 25 MiB"}
		}
		log.Warn("webhook refused: body unreadable", slog.String("error", err.Error()))
		return http.StatusBadRequest, answer{Status: "bad_request", Error: "body could not be read"}
	}
	if err := checkSignature(h.secret(), r.Header.Get("X-Hub-Signature-256"), body); err != nil {
		log.Warn("webhook refused: signature", slog.String("error", err.Error()))
		return http.StatusUnauthorized, answer{Status: "unauthorized", Error: err.Error()}
	}
	release() // signed by GitHub: no longer an unverified body
	// Every refusal is logged with the delivery id it came with: an
	// operator looking into a failed delivery on GitHub must find it.
	switch {
	case event == "":
		log.Warn("webhook refused: missing X-GitHub-Event header")
		return http.StatusBadRequest, answer{Status: "bad_request", Error: "missing X-GitHub-Event header"}
	case !guidPattern.MatchString(guid):
		log.Warn("webhook refused: missing or malformed X-GitHub-Delivery header")
		return http.StatusBadRequest, answer{Status: "bad_request", Error: "missing or malformed X-GitHub-Delivery header"}
	}

	d, err := classify(event, guid, body, h.cfg.GitHubWebURL)
	var ign ignored
	var bad badPayload
	switch {
	case errors.As(err, &ign):
		log.Info("webhook ignored", slog.String("reason", ign.reason))
		return http.StatusOK, answer{Status: "ignored", Delivery: guid, Reason: ign.reason}
	case errors.As(err, &bad):
		log.Warn("webhook refused: payload", slog.String("error", bad.Error()))
		return http.StatusBadRequest, answer{Status: "bad_request", Delivery: guid, Error: bad.Error()}
	}

	jobs, err := h.recorder.Record(r.Context(), d)
	switch {
	case errors.Is(err, ErrDuplicate):
		log.Info("webhook duplicate: already received")
		return http.StatusOK, answer{Status: "duplicate", Delivery: guid}
	case err != nil:
		log.Error("webhook not stored", slog.String("error", err.Error()))
		return http.StatusServiceUnavailable, answer{Status: "unavailable", Delivery: guid,
			Error: "database unavailable: delivery not stored, please redeliver"}
	}
	log.Info("webhook accepted", slog.String("action", d.Action), slog.String("repository", d.Repository),
		slog.Int("jobs", jobs))
	return http.StatusAccepted, answer{Status: "accepted", Delivery: guid, Jobs: jobs}
}
