package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

var testSHA = strings.Repeat("ab", 20)

func createApp(t *testing.T, q *store.Queries, owner, repo, name string) store.App {
	t.Helper()
	a, err := q.UpsertApp(t.Context(), store.AppSpec{InstallationID: 1, Owner: owner, Repo: repo, Name: name,
		Branch: "main", CloneURL: "https://example.com/" + owner + "/" + repo + ".git", Config: json.RawMessage(`{"port":80}`)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestInstanceIDIsStable(t *testing.T) {
	st := storetest.New(t)
	a, err := st.InstanceID(t.Context())
	if err != nil || len(a) != 36 {
		t.Fatalf("instance id %q, %v", a, err)
	}
	b, _ := st.InstanceID(t.Context())
	other, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, _ := other.InstanceID(t.Context())
	if a != b || a == c {
		t.Fatalf("ids %s, %s (same database) and %s (another) should be equal, equal, different", a, b, c)
	}
}

func TestUpsertAppMatchesRepositoryCaseInsensitively(t *testing.T) {
	q, _ := storetest.Tx(t)
	a := createApp(t, q, "Octo", "Shop", "web")
	if _, err := q.RemoveApp(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	b := createApp(t, q, "octo", "shop", "web")
	if b.ID != a.ID || b.RemovedAt != nil {
		t.Fatalf("upsert made app %d (removed %v), want app %d restored", b.ID, b.RemovedAt, a.ID)
	}
	apps, err := q.AppsOfRepository(t.Context(), "OCTO", "shop")
	if err != nil || len(apps) != 1 {
		t.Fatalf("apps of OCTO/shop = %v, %v", apps, err)
	}
}

// TestConcurrentPortAllocation: 20 apps allocating at once, each in its own
// transaction, get 20 distinct ports; a port bound on the host by something
// else is skipped; a second allocation keeps the port.
func TestConcurrentPortAllocation(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	first := busyPort - 3
	free := func(p int) bool {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	var apps []store.App
	for i := range 20 {
		apps = append(apps, createApp(t, st.Queries, "octo", "many", fmt.Sprintf("app-%d", i)))
	}
	ports := make([]int, len(apps))
	errs := make([]error, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() { ports[i], errs[i] = st.AllocatePort(t.Context(), a.ID, first, first+200, free) })
	}
	wg.Wait()
	seen := map[int]int{}
	for i, p := range ports {
		if errs[i] != nil {
			t.Fatalf("app %d: %v", i, errs[i])
		}
		if p == busyPort {
			t.Errorf("app %d got port %d, which another process holds", i, p)
		}
		if j, dup := seen[p]; dup {
			t.Errorf("apps %d and %d share port %d", j, i, p)
		}
		seen[p] = i
	}
	again, err := st.AllocatePort(t.Context(), apps[3].ID, first, first+200, free)
	if err != nil || again != ports[3] {
		t.Fatalf("second allocation = %d, %v; want the kept %d", again, err, ports[3])
	}
	_, err = st.AllocatePort(t.Context(), createApp(t, st.Queries, "octo", "many", "late").ID, busyPort, busyPort, free)
	if !errors.Is(err, store.ErrNoFreePort) {
		t.Fatalf("allocation from a range with only a busy port: %v, want ErrNoFreePort", err)
	}
}

func TestLogIsCappedWithOneMarker(t *testing.T) {
	st := storetest.New(t)
	q := st.Queries
	a := createApp(t, q, "octo", "logs", fmt.Sprintf("app-%d", time.Now().UnixNano()%1e6))
	d, err := q.CreateDeployment(t.Context(), store.NewDeployment{AppID: a.ID, Kind: store.KindDeploy, SHA: testSHA,
		Actor: "alice", Trigger: store.TriggerPush})
	if err != nil {
		t.Fatal(err)
	}
	limit := store.LogLimit{Lines: 5, Bytes: 1 << 20}
	for _, batch := range [][]string{{"one", "two\x00"}, {"three", "four", "five", "six", "seven"}, {"eight"}} {
		if _, err := st.AppendDeploymentLog(t.Context(), d.ID, batch, limit); err != nil {
			t.Fatal(err)
		}
	}
	// A tail written with a larger limit still lands after the marker.
	if _, err := st.AppendDeploymentLog(t.Context(), d.ID, []string{"tail"}, store.LogLimit{Lines: 10, Bytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lines, err := q.DeploymentLog(t.Context(), d.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, l := range lines {
		if l.Seq != i+1 {
			t.Fatalf("line %d has seq %d", i, l.Seq)
		}
		got = append(got, l.Text)
	}
	want := []string{"one", "two", "three", "four", "five", store.TruncationMarker, "tail"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("log\n got %q\nwant %q", got, want)
	}
	d, _ = q.Deployment(t.Context(), d.ID)
	if !d.LogTruncated || d.LogLines != len(want) {
		t.Fatalf("counters: truncated=%v lines=%d", d.LogTruncated, d.LogLines)
	}
}

// TestNewerPushOrdersByPushTime: a push delivered late but pushed earlier
// is older, whatever its id.
func TestNewerPushOrdersByPushTime(t *testing.T) {
	q, _ := storetest.Tx(t)
	a := createApp(t, q, "octo", "order", "web")
	push := func(at time.Time, state string) store.Deployment {
		d, err := q.CreateDeployment(t.Context(), store.NewDeployment{AppID: a.ID, Kind: store.KindUpdate, SHA: testSHA,
			Actor: "alice", Trigger: store.TriggerPush, PushedAt: &at, State: state})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	now := time.Now()
	newer := push(now, store.StateQueued)
	older := push(now.Add(-time.Minute), store.StateQueued) // redelivered late: higher id
	if d, ok, err := q.NewerPush(t.Context(), older); err != nil || !ok || d.ID != newer.ID {
		t.Fatalf("NewerPush(older) = %d, %v, %v; want %d", d.ID, ok, err, newer.ID)
	}
	if _, ok, err := q.NewerPush(t.Context(), newer); err != nil || ok {
		t.Fatalf("NewerPush(newer) found one: %v %v", ok, err)
	}
	before, err := q.QueuedPushesBefore(t.Context(), newer)
	if err != nil || len(before) != 1 || before[0].ID != older.ID {
		t.Fatalf("QueuedPushesBefore(newer) = %v, %v", before, err)
	}
}

// TestStartDeploymentLeavesAFinishedOneAlone: a queued push superseded by
// a newer push while its job was about to start it stays superseded; the
// start is refused with ErrDeploymentFinished. It used to be set running
// with finished_at kept, a row no job could finish (the fault suite's
// PostgreSQL scenario left its status pending forever).
func TestStartDeploymentLeavesAFinishedOneAlone(t *testing.T) {
	q, _ := storetest.Tx(t)
	a := createApp(t, q, "octo", "race", "web")
	d, err := q.CreateDeployment(t.Context(), store.NewDeployment{AppID: a.ID, Kind: store.KindUpdate, SHA: testSHA,
		Actor: "alice", Trigger: store.TriggerPush})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.FinishDeployment(t.Context(), d.ID, store.StateSuperseded, "Not deployed: superseded by abcdef0"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.StartDeployment(t.Context(), d.ID, "fetch", "Fetching"); !errors.Is(err, store.ErrDeploymentFinished) {
		t.Fatalf("start of a finished deployment: %v, want ErrDeploymentFinished", err)
	}
	got, err := q.Deployment(t.Context(), d.ID)
	if err != nil || got.State != store.StateSuperseded || got.StartedAt != nil {
		t.Fatalf("after the refused start: %s started %v (%v), want superseded, never started", got.State, got.StartedAt, err)
	}
	if _, err := q.StartDeployment(t.Context(), 1<<40, "fetch", "Fetching"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("start of a missing deployment: %v, want ErrNotFound", err)
	}
	other, err := q.CreateDeployment(t.Context(), store.NewDeployment{AppID: a.ID, Kind: store.KindUpdate, SHA: testSHA,
		Actor: "alice", Trigger: store.TriggerPush})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := q.StartDeployment(t.Context(), other.ID, "fetch", "Fetching"); err != nil || s.State != store.StateRunning || s.StartedAt == nil {
		t.Fatalf("start of a queued deployment: %+v %v", s, err)
	}
}
