package routerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/certs"
)

// Client speaks to `keystone proxy` over its Unix socket.
type Client struct{ hc *http.Client }

// NewClient returns a client of the admin socket at path.
func NewClient(socket string) *Client {
	return &Client{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 4,
	}}}
}

// APIError is an answer other than 2xx.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("router answered %d: %s", e.Status, e.Message) }

// Health checks the router answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Routes lists every route.
func (c *Client) Routes(ctx context.Context) ([]router.Route, error) {
	var out []router.Route
	return out, c.do(ctx, http.MethodGet, "/routes", nil, &out)
}

// Route returns one service's route.
func (c *Client) Route(ctx context.Context, service string) (router.Route, error) {
	var out router.Route
	return out, c.do(ctx, http.MethodGet, "/routes/"+url.PathEscape(service), nil, &out)
}

// Put adds or replaces a service's route.
func (c *Client) Put(ctx context.Context, service string, body RouteBody) (router.Route, error) {
	var out router.Route
	return out, c.do(ctx, http.MethodPut, "/routes/"+url.PathEscape(service), body, &out)
}

// Delete removes a service's route.
func (c *Client) Delete(ctx context.Context, service string) error {
	return c.do(ctx, http.MethodDelete, "/routes/"+url.PathEscape(service), nil, nil)
}

// Switch moves a service and waits for the drain.
func (c *Client) Switch(ctx context.Context, service string, body SwitchBody) (router.SwitchResult, error) {
	var out router.SwitchResult
	return out, c.do(ctx, http.MethodPost, "/routes/"+url.PathEscape(service)+"/switch", body, &out)
}

// Certificates lists certificate state.
func (c *Client) Certificates(ctx context.Context) ([]certs.Info, error) {
	var out []certs.Info
	return out, c.do(ctx, http.MethodGet, "/certificates", nil, &out)
}

// Metrics returns the Prometheus text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://router/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("router metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://router"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("router %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("router %s %s: decode: %w", method, path, err)
	}
	return nil
}

// Listen opens the admin socket at path, replacing a stale one, readable and
// writable by the owner only from its creation on. It sets the process's
// umask for a moment: call it at start-up, before other goroutines create files.
func Listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another router is listening", path)
	}
	_ = removeIfSocket(path)
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}
