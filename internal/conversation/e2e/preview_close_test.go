package e2e_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/gittest"
)

// TestPreviewClosedWhileItsJobHoldsTheApp closes a pull request while a job
// of its preview still holds the app (as a deploy does for a moment after
// it finished): the removal waits for the job to let go and then removes
// the container, image and port at once, rather than leaving them to the
// next reconciliation a minute later.
func TestPreviewClosedWhileItsJobHoldsTheApp(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.start(t)
	v1 := w.Repo.Commit(t, "main", previewFiles(t, gittest.Behaviour{Version: "1"}), "v1")
	w.hooks.deliver("push", w.Repo.PushEvent("main", v1, "alice"))
	if st := w.statusOf(t, v1, "keystone/web", 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("production v1: %s", st)
	}
	w.openPreview(t, 8, "main", v1)
	if st := w.statusOf(t, v1, "keystone/web-pr-8", 3*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("preview of v1: %s", st)
	}
	app := w.App(t, "web-pr-8")
	// The deploy job may still hold it a moment after its status went out.
	var release func()
	await(t, time.Minute, "the preview's lock, once its deploy job let go", func() bool {
		_, r, ok, err := w.Store.TryLockApp(t.Context(), app.ID)
		if err != nil {
			t.Fatalf("take the preview's lock: %v", err)
		}
		release = r
		return ok
	})
	t.Cleanup(release) // release is idempotent; a failed test must not keep the lock
	w.closePreview(t, 8, "main", v1)
	waiting := `"msg":"app busy: waiting for its job to let go of it","app_id":` + strconv.FormatInt(app.ID, 10)
	await(t, time.Minute, "the removal to wait for the preview's lock", func() bool {
		return strings.Contains(w.ks.Output(), waiting)
	})
	release()
	// Well within the reconciliation's minute.
	w.previewGone(t, "web-pr-8", app.HostPort, 20*time.Second)
}
