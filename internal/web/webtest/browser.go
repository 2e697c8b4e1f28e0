package webtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium is the result of looking for (and maybe installing) Chromium,
// once per test binary.
var chromium struct {
	once sync.Once
	path string
	err  string
}

// Chromium returns the path of a Chromium binary: `chromium` on PATH or
// /usr/bin/chromium. When it is missing and CI=true it installs Debian's
// chromium package (apt-get) and fails the test if that does not work;
// elsewhere a missing Chromium skips the test, saying how to get it.
func Chromium(t testing.TB) string {
	t.Helper()
	chromium.once.Do(func() {
		chromium.path = findChromium()
		if chromium.path != "" || os.Getenv("CI") != "true" {
			return
		}
		install := exec.Command("sh", "-c", "apt-get update && apt-get install -y --no-install-recommends chromium")
		install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := install.CombinedOutput(); err != nil {
			chromium.err = "install chromium: " + err.Error() + "\n" + lastLines(string(out), 20)
			return
		}
		chromium.path = findChromium()
	})
	switch {
	case chromium.path != "":
		return chromium.path
	case chromium.err != "":
		t.Fatalf("webtest: %s", chromium.err)
	case os.Getenv("CI") == "true":
		t.Fatal("webtest: Chromium is required with CI=true and was not found after installing it")
	default:
		t.Skip("webtest: Chromium not found: install Debian's chromium package (apt-get install chromium) to run the browser tests")
	}
	return ""
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// Browser starts headless Chromium (without its sandbox, which needs
// privileges containers lack) with a phone-sized or desktop window and
// returns the context of one tab. Chromium stops when the test ends.
func Browser(t testing.TB, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(t)),
		chromedp.NoSandbox,
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser and the tab, which live as long
	// as the context it runs on: it must be ctx itself, not a shorter one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("webtest: start Chromium: %v", err)
	}
	return ctx
}

// Screenshot saves a PNG of the whole page under
// <repository>/.artifacts/screenshots/<name>.png for a person to look at,
// and returns its path.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	// A page just navigated to may not be laid out yet (Chromium then
	// refuses a screenshot "with 0 width"): wait until it is.
	WaitFor(t, ctx, `document.readyState !== "loading" && document.documentElement.scrollWidth > 0 && document.documentElement.scrollHeight > 0`, 15*time.Second)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("webtest: screenshot %s: %v", name, err)
	}
	dir := ScreenshotDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("webtest: %v", err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("webtest: %v", err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// ScreenshotDir is where Screenshot writes (git-ignored).
func ScreenshotDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", ".artifacts", "screenshots")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor evaluates the JavaScript expression in the page every 100 ms until
// it is true, failing the test after timeout. (chromedp's Poll builds its
// predicate with new Function, which Keystone's Content-Security-Policy
// forbids; DevTools' evaluate is not bound by it.)
func WaitFor(t testing.TB, ctx context.Context, expression string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expression))
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("webtest: %s still not true after %s (last error: %v)", expression, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("webtest: waiting for %s: %v", expression, ctx.Err())
		case <-time.After(100 * time.Millisecond): // polling the awaited condition
		}
	}
}

// Do runs actions in the tab with a 30 s deadline, failing the test on error.
func Do(t testing.TB, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("webtest: browser: %v", err)
	}
}

// Eval evaluates a JavaScript expression of string value in the page,
// awaiting it when it is a promise, with a 30 s deadline.
func Eval(t testing.TB, ctx context.Context, js string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("webtest: evaluate %s: %v", js, err)
	}
	return s
}
