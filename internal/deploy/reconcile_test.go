package deploy_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestReconcile: a stopped serving container is started; a vanished one is
// created again from its image; a deployment no job will finish ends
// errored; and containers Keystone did not create are never touched, even
// with all of this app's and this instance's labels (ownership is the
// recorded id, SPEC §6).
func TestReconcile(t *testing.T) {
	h := newHarness(t, "reconcile")
	v1, port := deployV1(t, h)
	ctx := context.Background()
	app := h.App(t, "web")

	foreignNoLabel := runForeign(t, h, map[string]string{"purpose": "not keystone's"})
	foreignInstance := runForeign(t, h, map[string]string{deploy.LabelApp: app.Key(), deploy.LabelInstance: "another-keystone",
		deploy.LabelDeployment: "999"})
	forged := runForeign(t, h, map[string]string{deploy.LabelApp: app.Key(), deploy.LabelInstance: h.Instance,
		deploy.LabelDeployment: "999", deploy.LabelSHA: v1.SHA})

	// A deployment left running by a job that is gone.
	stranded, err := h.Store.CreateDeployment(ctx, store.NewDeployment{AppID: app.ID, Kind: store.KindUpdate,
		SHA: v1.SHA, Actor: "alice", Trigger: store.TriggerPush, State: store.StateRunning})
	if err != nil {
		t.Fatal(err)
	}
	timeout := 1
	if err := h.Docker.ContainerStop(ctx, v1.ContainerID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if err := h.engine.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !exists(t, h, foreignNoLabel) || !exists(t, h, foreignInstance) || !exists(t, h, forged) {
		t.Fatal("reconciliation touched a container that is not this Keystone's")
	}
	// The app's page shows the labelled containers Keystone did not create.
	st, err := h.engine.ContainerState(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	for _, f := range st.Foreign {
		shown[f.ID] = true
	}
	if len(st.Foreign) != 2 || !shown[forged[:12]] || !shown[foreignInstance[:12]] {
		t.Errorf("foreign containers reported: %+v, want the two labelled %s", st.Foreign, app.Key())
	}
	deploytest.Eventually(t, 10*time.Second, "v1 serving again after its container was started", func() (bool, error) {
		return deploytest.Serves(port, "v1"), nil
	})
	d := h.WaitFinished(t, stranded.ID, time.Second)
	mustState(t, d, store.StateErrored)
	if d.Description != "Deploy errored: its job was lost; "+v1.SHA[:7]+" still serving" {
		t.Errorf("stranded deployment: %q", d.Description)
	}

	// The serving container disappears altogether.
	if err := h.Docker.ContainerRemove(ctx, v1.ContainerID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.engine.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	deploytest.Eventually(t, 10*time.Second, "v1 serving from a recreated container", func() (bool, error) {
		return deploytest.Serves(port, "v1"), nil
	})
	list := h.Containers(t, deploy.LabelApp+"="+app.Key(), deploy.LabelDeployment+"="+strconv.FormatInt(v1.ID, 10))
	if len(list) != 1 || list[0].ID == v1.ContainerID || list[0].Labels[deploy.LabelDeployment] != strconv.FormatInt(v1.ID, 10) {
		t.Fatalf("containers after recreation: %+v", list)
	}
	if cur, _ := h.Store.Deployment(ctx, v1.ID); cur.ContainerID != list[0].ID {
		t.Errorf("the deployment records container %s, want the new %s", cur.ContainerID, list[0].ID)
	}
}

// TestImageRetention: only the last KeepImages successful images of an
// app are kept; an image of the app without this instance's label, or not
// Keystone's at all, is never pruned.
func TestImageRetention(t *testing.T) {
	h := newHarness(t, "retention", func(o *options) { o.cfg.KeepImages = 2 })
	foreign := buildForeign(t, h, map[string]string{"purpose": "not keystone's"})
	otherInstance := buildForeign(t, h, map[string]string{deploy.LabelApp: "octo/retention/web", deploy.LabelInstance: "another"})
	var ds []store.Deployment
	d, _ := deployV1(t, h)
	ds = append(ds, d)
	for i := 2; i <= 4; i++ {
		sha := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(fmt.Sprintf(`{"version": "v%d"}`, i))})
		d := h.deployOf(t, "web", sha)
		mustState(t, d, store.StateSucceeded)
		ds = append(ds, d)
	}
	kept := map[string]bool{}
	for _, img := range h.Images(t, deploy.LabelApp+"=octo/retention/web") {
		kept[img.ID] = true
	}
	if len(kept) != 2 || !kept[ds[3].ImageID] || !kept[ds[2].ImageID] {
		t.Fatalf("kept images %v, want those of the last two deployments %s and %s", kept, ds[2].ImageID, ds[3].ImageID)
	}
	for _, id := range []string{foreign, otherInstance} {
		if _, err := h.Docker.ImageInspect(context.Background(), id); err != nil {
			t.Errorf("image %s that is not this Keystone's was pruned: %v", id, err)
		}
	}
}

func exists(t *testing.T, h *harness, id string) bool {
	t.Helper()
	_, err := h.Docker.ContainerInspect(context.Background(), id)
	return err == nil
}

// buildForeign builds a one-file image FROM scratch with labels, removed
// when the test ends, and returns its id.
func buildForeign(t *testing.T, h *harness, labels map[string]string) string {
	t.Helper()
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	files := map[string][]byte{
		"Dockerfile": []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"),
		"app":        gittest.TestAppBinaryOf(t),
	}
	for name, b := range files {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b))})
		_, _ = tw.Write(b)
	}
	_ = tw.Close()
	tag := fmt.Sprintf("keystone-test-foreign:%d", time.Now().UnixNano())
	// A label of its own makes the image's id this test's: the same
	// content built by a test running beside it (or by another checkout on
	// the same engine) would otherwise share the id through the build
	// cache, and that test's cleanup would remove this one's image.
	all := map[string]string{"keystone-test-nonce": tag}
	for k, v := range labels {
		all[k] = v
	}
	resp, err := h.Docker.ImageBuild(context.Background(), &ctxTar, build.ImageBuildOptions{
		Tags: []string{tag}, Labels: all, Remove: true, ForceRemove: true, Version: build.BuilderV1})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	info, err := h.Docker.ImageInspect(context.Background(), tag)
	if err != nil {
		t.Fatalf("build a foreign image: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		_, _ = h.Docker.ImageRemove(context.Background(), info.ID, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	return info.ID
}

// runForeign creates a container of a foreign image with labels, removed
// when the test ends, and returns its id.
func runForeign(t *testing.T, h *harness, labels map[string]string) string {
	t.Helper()
	img := buildForeign(t, h, nil)
	resp, err := h.Docker.ContainerCreate(context.Background(), &container.Config{Image: img, Labels: labels,
		Env: []string{"PORT=0"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Docker.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true})
	})
	return resp.ID
}
