package store_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func hash32(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestUsersAreUnique(t *testing.T) {
	cases := []struct {
		name string
		u    store.User
		want error
	}{
		{"same name", store.User{Name: "uniq-alice", Role: store.RoleViewer, GitHubLogin: "other"}, store.ErrUserExists},
		{"same GitHub login in other case", store.User{Name: "uniq-bob", Role: store.RoleViewer, GitHubLogin: "alice-gh"}, store.ErrGitHubLoginMapped},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := storetest.Tx(t)
			u, err := q.InsertUser(t.Context(), store.User{Name: "uniq-alice", Role: store.RoleAdmin,
				PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", GitHubLogin: "Alice-GH"})
			if err != nil || u.ID == 0 {
				t.Fatalf("InsertUser = %+v, %v", u, err)
			}
			if _, err := q.InsertUser(t.Context(), tc.u); !errors.Is(err, tc.want) {
				t.Fatalf("InsertUser(%+v) = %v, want %v", tc.u, err, tc.want)
			}
		})
	}
}

func TestUserTableRefusesBadRows(t *testing.T) {
	cases := []struct {
		name string
		u    store.User
	}{
		{"unknown role", store.User{Name: "bad-role", Role: "root", GitHubLogin: "x"}},
		{"upper-case name", store.User{Name: "Bad", Role: store.RoleViewer, GitHubLogin: "x"}},
		{"neither password nor login", store.User{Name: "nothing", Role: store.RoleViewer}},
		{"not an argon2id hash", store.User{Name: "plain", Role: store.RoleViewer, PasswordHash: "hunter2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := storetest.Tx(t)
			if _, err := q.InsertUser(t.Context(), tc.u); err == nil {
				t.Fatalf("InsertUser(%+v) succeeded", tc.u)
			}
		})
	}
}

func TestSessions(t *testing.T) {
	q, _ := storetest.Tx(t)
	ctx := t.Context()
	u, err := q.InsertUser(ctx, store.User{Name: "sess-carol", Role: store.RoleViewer, GitHubLogin: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	csrf := bytes.Repeat([]byte{7}, 32)
	live := store.Session{TokenHash: hash32("live"), UserID: u.ID, CSRFSecret: csrf, Method: store.SignInGitHub,
		RemoteAddr: "192.0.2.1", ExpiresAt: time.Now().Add(time.Hour)}
	expired := store.Session{TokenHash: hash32("expired"), UserID: u.ID, CSRFSecret: csrf, Method: store.SignInPassword,
		ExpiresAt: time.Now().Add(-time.Second)}
	for _, s := range []store.Session{live, expired} {
		if err := q.InsertSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	s, got, err := q.ActiveSession(ctx, hash32("live"))
	if err != nil || got.Name != "sess-carol" || !bytes.Equal(s.CSRFSecret, csrf) || s.Method != store.SignInGitHub {
		t.Fatalf("ActiveSession(live) = %+v %+v, %v", s, got, err)
	}
	if _, _, err := q.ActiveSession(ctx, hash32("expired")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ActiveSession(expired) = %v, want ErrNotFound", err)
	}
	if n, err := q.DeleteExpiredSessions(ctx); err != nil || n < 1 {
		t.Fatalf("DeleteExpiredSessions = %d, %v", n, err)
	}
	if err := q.DeleteSession(ctx, hash32("live")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.ActiveSession(ctx, hash32("live")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ActiveSession after DeleteSession = %v", err)
	}
	if err := q.DeleteSession(ctx, hash32("live")); err != nil {
		t.Fatalf("ending an ended session: %v", err)
	}
}

func TestDeletingAUserEndsTheirSessions(t *testing.T) {
	q, _ := storetest.Tx(t)
	ctx := t.Context()
	u, err := q.InsertUser(ctx, store.User{Name: "sess-dave", Role: store.RoleViewer, GitHubLogin: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	err = q.InsertSession(ctx, store.Session{TokenHash: hash32("dave"), UserID: u.ID, CSRFSecret: bytes.Repeat([]byte{1}, 32),
		Method: store.SignInGitHub, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.DeleteUser(ctx, "sess-dave"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.ActiveSession(ctx, hash32("dave")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session of a deleted user: %v", err)
	}
	if _, err := q.DeleteUser(ctx, "sess-dave"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting a deleted user: %v", err)
	}
}

func TestLoginFailuresCountWithinTheWindow(t *testing.T) {
	q, _ := storetest.Tx(t)
	ctx := t.Context()
	if n, wait, err := q.LoginFailures(ctx, time.Minute, "name:x"); err != nil || n != 0 || wait != 0 {
		t.Fatalf("no failures: %d %s %v", n, wait, err)
	}
	for range 3 {
		if err := q.RecordLoginFailure(ctx, "name:erin", "addr:192.0.2.9"); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.RecordLoginFailure(ctx, "name:frank", "addr:192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	n, wait, err := q.LoginFailures(ctx, time.Minute, "name:frank", "addr:192.0.2.9")
	if err != nil || n != 4 || wait <= 50*time.Second || wait > time.Minute {
		t.Fatalf("LoginFailures(frank, address) = %d, wait %s, %v; want the address's 4 and a wait near a minute", n, wait, err)
	}
	if n, _, err := q.LoginFailures(ctx, time.Minute, "name:erin"); err != nil || n != 3 {
		t.Fatalf("LoginFailures(erin) = %d, %v", n, err)
	}
	if err := q.ClearLoginFailures(ctx, "name:erin"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := q.LoginFailures(ctx, time.Minute, "name:erin"); err != nil || n != 0 {
		t.Fatalf("after ClearLoginFailures: %d, %v", n, err)
	}
}

func TestLoginFailuresAgeOut(t *testing.T) {
	st := storetest.New(t)
	ctx := t.Context()
	key := "name:aging-" + time.Now().Format("150405.000000")
	if err := st.RecordLoginFailure(ctx, key); err != nil {
		t.Fatal(err)
	}
	window := 300 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _, err := st.LoginFailures(ctx, window, key)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a failure is still counted in a %s window after 10s", window)
		}
		time.Sleep(50 * time.Millisecond) // polling the awaited condition
	}
	if err := st.PruneLoginFailures(ctx, window); err != nil {
		t.Fatal(err)
	}
	if n, _, err := st.LoginFailures(ctx, time.Hour, key); err != nil || n != 0 {
		t.Fatalf("after pruning: %d failures, %v", n, err)
	}
}
