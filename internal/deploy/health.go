package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
)

// HealthResult is the outcome of checking a container (SPEC §6).
type HealthResult struct {
	Healthy bool
	// Check is "GET /healthz", or "" when the app has no health_check_path
	// (it must then still run NoPathWait after start).
	Check string
	// Status is the HTTP status of the last answer; 0 if none came.
	Status int
	// After is the time from start to healthy, or to giving up.
	After time.Duration
	// Err is the last problem seen: a status, a connection error, an exit.
	Err string
	// Answered is when the container first answered (a 2xx/3xx, or for an
	// app without a health path a TCP connection); zero if it never did.
	Answered time.Time
	// Exited is set when the container stopped during the check.
	Exited bool
}

// Problem says what was wrong, for a description: "GET /healthz 500 after
// 30s", "container exited with code 1 after 2.1s".
func (h HealthResult) Problem() string {
	after := " after " + wholeSeconds(h.After)
	if h.After < 10*time.Second {
		after = " after " + seconds(h.After)
	}
	switch {
	case h.Exited:
		return h.Err + after
	case h.Check != "" && h.Status != 0:
		return fmt.Sprintf("%s %d%s", h.Check, h.Status, after)
	case h.Check != "":
		return fmt.Sprintf("%s: %s%s", h.Check, h.Err, after)
	}
	return h.Err + after
}

// healthChecker probes a started container through its host port.
type healthChecker struct {
	docker   Docker
	host     string        // where host ports are reached, 127.0.0.1
	interval time.Duration // between probes
	noPath   time.Duration // how long an app without a health path must run
}

// check probes container id, published on hostPort, per cfg, from now
// until healthy or cfg's timeout.
func (hc healthChecker) check(ctx context.Context, id string, hostPort int, cfg keystoneyml.App) HealthResult {
	start := time.Now()
	res := HealthResult{Check: cfg.HealthCheck()}
	deadline := start.Add(cfg.HealthCheckTimeout)
	if cfg.HealthCheckPath == "" {
		deadline = start.Add(hc.noPath)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableKeepAlives: true},
	}
	addr := net.JoinHostPort(hc.host, strconv.Itoa(hostPort))
	url := "http://" + addr + cfg.HealthCheckPath
	lastInspect := time.Time{}
	// Most apps answer within tens of milliseconds of their start: probe
	// every 10ms at first, doubling up to the interval, so a deploy is not
	// held up to a whole interval by a probe that came just too early.
	pause := min(10*time.Millisecond, hc.interval)
	for {
		now := time.Now()
		if now.Sub(lastInspect) >= 400*time.Millisecond {
			lastInspect = now
			if exited, why := hc.exited(ctx, id); exited {
				res.Exited, res.Err, res.After = true, why, time.Since(start)
				return res
			}
		}
		if cfg.HealthCheckPath == "" {
			if res.Answered.IsZero() && dialOK(ctx, addr) {
				res.Answered = time.Now()
			}
		} else if status, err := probe(ctx, client, url); err == nil {
			res.Status = status
			if status >= 200 && status < 400 {
				res.Healthy, res.Answered, res.After, res.Err = true, time.Now(), time.Since(start), ""
				return res
			}
			res.Err = fmt.Sprintf("%s %d", res.Check, status)
		} else if ctx.Err() == nil {
			res.Status, res.Err = 0, err.Error()
		}
		select {
		case <-ctx.Done():
			return hc.finish(res, start, cfg, id)
		case <-time.After(pause):
		}
		pause = min(2*pause, hc.interval)
	}
}

// finish decides at the deadline: an app without a health path is healthy
// if it still runs; one with a path has failed.
func (hc healthChecker) finish(res HealthResult, start time.Time, cfg keystoneyml.App, id string) HealthResult {
	res.After = time.Since(start)
	if cfg.HealthCheckPath != "" {
		if res.Err == "" {
			res.Err = "no answer"
		}
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if exited, why := hc.exited(ctx, id); exited {
		res.Exited, res.Err = true, why
		return res
	}
	res.Healthy, res.Err = true, ""
	if res.Answered.IsZero() {
		res.Answered = time.Now()
	}
	return res
}

// exited reports whether the container is no longer running, and how it ended.
func (hc healthChecker) exited(ctx context.Context, id string) (bool, string) {
	info, err := hc.docker.ContainerInspect(ctx, id)
	if err != nil || info.State == nil {
		return false, ""
	}
	if info.State.Running && !info.State.Restarting {
		return false, ""
	}
	if info.State.OOMKilled {
		return true, "container ran out of memory"
	}
	if info.State.Restarting || info.State.Status == "exited" || info.State.Status == "dead" {
		return true, fmt.Sprintf("container exited with code %d", info.State.ExitCode)
	}
	return false, ""
}

func probe(ctx context.Context, client *http.Client, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "keystone-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return 0, errors.New(probeError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// probeError names a failed probe in a few words.
func probeError(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without an answer"
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "Client.Timeout"):
		return "no answer within 2s"
	}
	return "request failed"
}

func dialOK(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	// Docker's userland proxy accepts even when nothing listens behind it;
	// a connection closed at once without a byte is no answer. Only a peer
	// that keeps the connection open (waiting for a request) counts.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var one [1]byte
	_, err = c.Read(one[:])
	c.Close()
	var ne net.Error
	return err == nil || (errors.As(err, &ne) && ne.Timeout())
}
