package router

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// DefaultDrainTimeout bounds how long a switch waits for the old target's
// in-flight requests (SPEC §13 drain_timeout).
const DefaultDrainTimeout = 30 * time.Second

// DefaultHealthTimeout bounds how long a switch waits for the new target's
// health check to pass before refusing the switch.
const DefaultHealthTimeout = 30 * time.Second

// Route is one service: the host names it answers and the target it sends to.
type Route struct {
	// Service names the route; Keystone uses the app's stable key.
	Service string `json:"service"`
	// Hosts are the lower-case host names this service answers (domain mode).
	Hosts []string `json:"hosts,omitempty"`
	// Port, when not 0, is a host port on which the router serves this
	// service alone, whatever the Host header (IP mode).
	Port int `json:"port,omitempty"`
	// Target is host:port of the container serving now.
	Target string `json:"target"`
}

// SwitchRequest moves a service to a new target.
type SwitchRequest struct {
	Target string `json:"target"`
	// HealthPath, when set, is fetched on the new target (2xx or 3xx passes)
	// until it passes or HealthTimeout runs out; the switch is refused then.
	HealthPath    string        `json:"health_path,omitempty"`
	HealthTimeout time.Duration `json:"health_timeout,omitempty"`
	// DrainTimeout bounds the wait for the old target's in-flight requests;
	// 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration `json:"drain_timeout,omitempty"`
}

// SwitchResult counts what happened to the requests in flight on the old
// target when the switch happened.
type SwitchResult struct {
	Previous      string `json:"previous"`
	Drained       int64  `json:"drained"`
	Failed        int64  `json:"failed"`
	DrainTimedOut int64  `json:"drain_timed_out"`
	// DrainMillis is how long the drain took.
	DrainMillis int64 `json:"drain_ms"`
}

// Errors callers can tell apart (the admin API maps them to status codes).
var (
	ErrNotFound  = errors.New("no such route")
	ErrHostTaken = errors.New("host name belongs to another service")
	ErrPortTaken = errors.New("port belongs to another service")
	ErrBadRoute  = errors.New("invalid route")
	ErrUnhealthy = errors.New("new target failed its health check")
)

var servicePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// NormalizeHost lower-cases host, drops a port (digits) and a final dot, and reports
// whether what is left can be a DNS host name (at most 253 characters of
// letters, digits, '-' and '.'); IP literals pass too.
func NormalizeHost(host string) (string, bool) {
	if len(host) > 300 {
		return "", false
	}
	if h, port, err := net.SplitHostPort(host); err == nil {
		// SplitHostPort does not look at the port: a Host such as
		// "web.example.com:\n" would be routed, then refused by the
		// transport as an invalid header (502). A port is digits or nothing.
		if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return "", false
		}
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || len(host) > 253 {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':') {
			return "", false
		}
	}
	return host, true
}

// validate checks r and returns a normalised copy.
func (r Route) validate() (Route, error) {
	if !servicePattern.MatchString(r.Service) {
		return r, fmt.Errorf("%w: service %q must be 1-128 letters, digits, '.', '_' or '-'", ErrBadRoute, r.Service)
	}
	if err := validTarget(r.Target); err != nil {
		return r, err
	}
	if r.Port < 0 || r.Port > 65535 {
		return r, fmt.Errorf("%w: port %d", ErrBadRoute, r.Port)
	}
	if len(r.Hosts) == 0 && r.Port == 0 {
		return r, fmt.Errorf("%w: service %q has neither hosts nor a port", ErrBadRoute, r.Service)
	}
	out := r
	out.Hosts = nil
	seen := map[string]bool{}
	for _, h := range r.Hosts {
		n, ok := NormalizeHost(h)
		if !ok || strings.Contains(n, ":") && !strings.HasPrefix(h, "[") && net.ParseIP(n) == nil {
			return r, fmt.Errorf("%w: host %q is not a host name", ErrBadRoute, h)
		}
		if !seen[n] {
			seen[n] = true
			out.Hosts = append(out.Hosts, n)
		}
	}
	return out, nil
}

func validTarget(t string) error {
	host, port, err := net.SplitHostPort(t)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%w: target %q is not host:port", ErrBadRoute, t)
	}
	return nil
}
