package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

func TestStrandedDeploymentsHaveNoLiveJob(t *testing.T) {
	q, tx := storetest.Tx(t)
	a := createApp(t, q, "octo", "stranded", "web")
	mk := func() store.Deployment {
		d, err := q.CreateDeployment(t.Context(), store.NewDeployment{AppID: a.ID, Kind: store.KindDeploy, SHA: testSHA,
			Actor: "a", Trigger: store.TriggerPush})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	job := func(d store.Deployment, state string) {
		insertJob(t, tx, d.ID, state)
	}
	live, discarded, none := mk(), mk(), mk()
	job(live, "running")
	job(discarded, "discarded")
	stranded, err := q.StrandedDeployments(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]store.StrandedDeployment{}
	for _, s := range stranded {
		got[s.ID] = s
	}
	if _, ok := got[live.ID]; ok {
		t.Error("a deployment whose job runs is reported stranded")
	}
	if s, ok := got[discarded.ID]; !ok || s.Attempts != 3 || s.LastError != "boom" {
		t.Errorf("discarded job's deployment: %+v, %v", s, ok)
	}
	if _, ok := got[none.ID]; !ok {
		t.Error("a deployment without a job is not reported stranded")
	}
}

func insertJob(t *testing.T, tx pgx.Tx, deploymentID int64, state string) {
	t.Helper()
	_, err := tx.Exec(context.Background(), `
		INSERT INTO river_job (kind, args, state, attempt, max_attempts, queue, priority, errors,
			attempted_at, finalized_at)
		VALUES ('deploy', jsonb_build_object('deployment_id', $1::bigint, 'app_id', 1), $2::river_job_state, 3, 3,
			'deploy', 1, ARRAY[jsonb_build_object('error', 'boom')],
			now(), CASE WHEN $2 IN ('completed', 'cancelled', 'discarded') THEN now() END)`, deploymentID, state)
	if err != nil {
		t.Fatal(err)
	}
}

// TestRemoveAppDeletesItsSecrets: a removed app's secrets go with it (a
// later app of that name starts with none); other apps' stay.
func TestRemoveAppDeletesItsSecrets(t *testing.T) {
	q, _ := storetest.Tx(t)
	a := createApp(t, q, "Octo", "Shop", "api")
	for _, s := range []store.Secret{
		{Owner: "octo", Repo: "shop", App: "api", Name: "TOKEN"},
		{Owner: "octo", Repo: "shop", App: "api", Name: "DB_URL"},
		{Owner: "octo", Repo: "shop", App: "web", Name: "TOKEN"},
	} {
		s.KeyID, s.Sealed, s.UpdatedBy = "k1", []byte("sealed"), "cli:ada"
		if _, err := q.PutSecret(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := q.RemoveApp(t.Context(), a.ID)
	if err != nil || strings.Join(deleted, ",") != "DB_URL,TOKEN" {
		t.Fatalf("RemoveApp deleted %q, %v; want DB_URL,TOKEN", deleted, err)
	}
	for app, want := range map[string]int{"api": 0, "web": 1} {
		names, err := q.SecretNames(t.Context(), "octo", "shop", app)
		if err != nil || len(names) != want {
			t.Errorf("secrets of %s after removing api: %q, %v; want %d", app, names, err, want)
		}
	}
}

// TestAllowApp: an allowance is stored per app (a new one replaces the old)
// and audited.
func TestAllowApp(t *testing.T) {
	q, tx := storetest.Tx(t)
	if b, err := q.AllowedBranch(t.Context(), "octo", "shop", "api"); b != "" || err != nil {
		t.Fatalf("allowance before any: %q, %v", b, err)
	}
	for _, branch := range []string{"tmp", "staging"} {
		if err := q.AllowApp(t.Context(), "Octo", "Shop", "api", branch, "cli:ada"); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := q.AllowedBranch(t.Context(), "OCTO", "shop", "api"); b != "staging" || err != nil {
		t.Fatalf("allowance %q, %v; want staging", b, err)
	}
	var n int
	if err := tx.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE action = $1 AND actor = 'cli:ada'
		AND target = 'octo/shop/api'`, store.AuditAppAllowed).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d app.allowed events, %v; want 2", n, err)
	}
}
