package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheck is `keystone healthcheck`: it asks the Keystone listening on
// KEYSTONE_ADDR in this container or host for /healthz, for Docker's
// HEALTHCHECK (the image has no curl).
func healthcheck(ctx context.Context, e env) error {
	if err := noArgs(e, "healthcheck"); err != nil {
		return err
	}
	addr, ok := e.lookup("KEYSTONE_ADDR")
	if !ok || strings.TrimSpace(addr) == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
	if err != nil {
		return fmt.Errorf("KEYSTONE_ADDR: %q is not a listen address: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s answered %s", url, resp.Status)
	}
	fmt.Fprintln(e.stdout, "healthy")
	return nil
}
