// Package server assembles Keystone's HTTP surface and its long-running parts:
// the router with probes, metrics and the webhook endpoint, and Run, which
// wires configuration, store, job queue and handlers for `keystone serve`.
package server

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one dependency /readyz asks about.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// HSTSValue is the Strict-Transport-Security header under https: two years,
// without includeSubDomains, which would bind hosts Keystone does not own.
const HSTSValue = "max-age=63072000"

// RouterConfig is what NewRouter mounts.
type RouterConfig struct {
	Logger *slog.Logger
	// Webhook handles POST /webhooks/github.
	Webhook gin.HandlerFunc
	// Ready lists what /readyz checks, each within ReadyTimeout.
	Ready []Check
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// MetricsToken, when set, is required as "Authorization: Bearer <token>" on
	// /metrics; when empty only loopback clients may read it.
	MetricsToken string
	// HSTS adds Strict-Transport-Security to every answer: set it when
	// Keystone's public URL is https, so browsers never fall back to http.
	HSTS bool
	// TrustedProxies may name the client in X-Forwarded-For or X-Real-IP;
	// from anyone else those headers are ignored.
	TrustedProxies []netip.Prefix
}

// ReadyTimeout bounds each readiness check.
const ReadyTimeout = 2 * time.Second

// NewRouter returns the gin engine with Keystone's operational routes.
func NewRouter(cfg RouterConfig) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// Who the client is matters to the sign-in throttle, the audit trail and
	// /metrics: believe X-Forwarded-For only from the proxies configured.
	if err := r.SetTrustedProxies(proxyList(cfg.TrustedProxies)); err != nil {
		// Unreachable with prefixes from package config; trust nobody then.
		cfg.Logger.Error("trusted proxies refused; trusting none", slog.String("error", err.Error()))
		_ = r.SetTrustedProxies(nil) // nil cannot fail
	}
	// First, so that every answer carries them: gin applies middleware only
	// to routes registered after it (and to 404s).
	r.Use(securityHeaders)
	if cfg.HSTS {
		r.Use(func(c *gin.Context) { c.Header("Strict-Transport-Security", HSTSValue); c.Next() })
	}
	r.Use(recoverer(cfg.Logger))

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", readyz(cfg.Ready))
	r.GET("/metrics", metricsGuard(cfg.MetricsToken), gin.WrapH(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	if cfg.Webhook != nil {
		r.POST("/webhooks/github", cfg.Webhook)
	}
	return r
}

func readyz(checks []Check) gin.HandlerFunc {
	return func(c *gin.Context) {
		status := http.StatusOK
		results := gin.H{}
		for _, chk := range checks {
			ctx, cancel := context.WithTimeout(c.Request.Context(), ReadyTimeout)
			err := chk.Check(ctx)
			cancel()
			if err != nil {
				status = http.StatusServiceUnavailable
				results[chk.Name] = "unavailable"
				continue
			}
			results[chk.Name] = "ok"
		}
		c.JSON(status, results)
	}
}

// metricsGuard lets through a request bearing token, or, with no token
// configured, one from a loopback address.
func metricsGuard(token string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if token != "" {
			got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "metrics need Authorization: Bearer <KEYSTONE_METRICS_TOKEN>"})
			}
			return
		}
		// ClientIP is the peer unless a trusted proxy forwarded the request:
		// then it is the proxy's client, so a local proxy opens nothing.
		if ip := net.ParseIP(c.ClientIP()); ip == nil || !ip.IsLoopback() {
			c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "metrics are served to loopback clients only unless KEYSTONE_METRICS_TOKEN is set"})
		}
	}
}

// proxyList is prefixes as gin takes them; nil (trust nobody) when empty.
func proxyList(prefixes []netip.Prefix) []string {
	if len(prefixes) == 0 {
		return nil
	}
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = p.String()
	}
	return out
}

// ContentSecurityPolicy is sent with every answer: only Keystone's own
// scripts, styles and images, no inline code, no framing, forms posting
// only to Keystone.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// securityHeaders sets SPEC §9's headers, and a few more of the same mind.
func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	c.Next()
}

// recoverer turns a panic into a 500 and a log line instead of a dead process.
func recoverer(logger *slog.Logger) gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		logger.Error("panic while serving", slog.String("path", c.Request.URL.Path), slog.Any("panic", err))
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	})
}
