// Package keystonetest runs the real keystone binary for tests that need a
// whole process: killing it, restarting it, reading its logs.
package keystonetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds ./cmd/bot once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "keystone-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "keystone")
		cmd := exec.Command("go", "build", "-o", build.path, "./cmd/bot")
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatalf("keystonetest: %v", build.err)
	}
	return build.path
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Process is a running `keystone serve`.
type Process struct {
	t    testing.TB
	cmd  *exec.Cmd
	Addr string // host:port it listens on
	URL  string // http://Addr

	mu     sync.Mutex
	logs   []map[string]any
	raw    bytes.Buffer
	exited chan struct{}
}

// Start runs `keystone serve` with env (on top of a minimal environment:
// PATH, HOME, DOCKER_HOST) listening on a free loopback port, and waits until
// it serves. It is killed when the test ends.
func Start(t testing.TB, env map[string]string) *Process {
	t.Helper()
	cmd := exec.Command(Binary(t), "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "KEYSTONE_ADDR=127.0.0.1:0"}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+h)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	p := &Process{t: t, cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("keystonetest: start: %v", err)
	}
	go p.read(stdout)
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.Kill)

	line := p.WaitLog(30*time.Second, func(l map[string]any) bool { return l["msg"] == "keystone serving" })
	p.Addr, _ = line["addr"].(string)
	p.URL = "http://" + p.Addr
	return p
}

func (p *Process) read(r interface{ Read([]byte) (int, error) }) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		p.mu.Lock()
		p.raw.Write(sc.Bytes())
		p.raw.WriteByte('\n')
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			p.logs = append(p.logs, l)
		}
		p.mu.Unlock()
	}
}

// WaitLog waits until a JSON log line satisfies match and returns it; it fails
// the test if the process exits or the timeout passes first.
func (p *Process) WaitLog(timeout time.Duration, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.logs); seen++ {
			if match(p.logs[seen]) {
				l := p.logs[seen]
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.exited:
			p.t.Fatalf("keystonetest: keystone exited before the awaited log line:\n%s", p.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("keystonetest: awaited log line not seen in %s:\n%s", timeout, p.Output())
		}
	}
}

// Output is everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// Kill sends SIGKILL and waits for the process to be gone: no shutdown code runs.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *Process) Stop(ctx context.Context) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("keystone exited with %d:\n%s", code, lastLines(p.Output(), 20))
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
