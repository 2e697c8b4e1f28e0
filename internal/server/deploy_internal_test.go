package server

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestRouterPresent: only a socket at KEYSTONE_PROXY_ADMIN's path makes
// `keystone serve` drive the router; a missing path or a plain file there
// keeps apps on their host ports.
func TestRouterPresent(t *testing.T) {
	dir, err := os.MkdirTemp("", "ksp") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	for _, c := range []struct {
		path string
		want bool
	}{{filepath.Join(dir, "missing"), false}, {file, false}, {dir, false}, {sock, true}} {
		if got := routerPresent(c.path); got != c.want {
			t.Errorf("routerPresent(%s) = %v, want %v", c.path, got, c.want)
		}
	}
}
