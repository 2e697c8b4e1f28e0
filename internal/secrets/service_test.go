package secrets_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func ring(t *testing.T, ids ...string) *secrets.Keyring {
	t.Helper()
	var keys []config.EncryptionKey
	for _, id := range ids {
		keys = append(keys, config.EncryptionKey{ID: id, Key: bytes.Repeat([]byte(id[:1]), 32)})
	}
	k, err := secrets.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fresh(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// addApp inserts the app row a deploy would create and returns its id.
func addApp(t *testing.T, st *store.Store, owner, repo, name string) int64 {
	t.Helper()
	var id int64
	err := st.Pool().QueryRow(t.Context(), `INSERT INTO apps (installation_id, owner, repo, name, branch)
		VALUES (1, $1, $2, $3, 'main') RETURNING id`, owner, repo, name).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// dump is every stored byte a secret could leak into: secrets, audit events,
// and the rest of Keystone's tables as text.
func dump(t *testing.T, st *store.Store) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT coalesce(string_agg(s::text, E'\n'), '') FROM secrets s`,
		`SELECT coalesce(string_agg(encode(sealed, 'escape'), E'\n'), '') FROM secrets`,
		`SELECT coalesce(string_agg(a::text, E'\n'), '') FROM audit_events a`,
	} {
		var s string
		if err := st.Pool().QueryRow(t.Context(), q).Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s)
	}
	return b.String()
}

func TestSetListUnsetAndDecrypt(t *testing.T) {
	st := fresh(t)
	svc := secrets.New(st, ring(t, "k1"))
	ctx := t.Context()
	const dbURL = "postgres://app:hunter2-very-secret@db/app"
	// Before the first deploy: no apps row yet, and a differently cased owner.
	if err := svc.Set(ctx, "cli:alice", "Acme", "Web", "api", "DATABASE_URL", dbURL); err != nil {
		t.Fatal(err)
	}
	if err := svc.Set(ctx, "cli:alice", "acme", "web", "api", "LOG_TOKEN", "tok-1"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Set(ctx, "bob", "acme", "web", "api", "LOG_TOKEN", "tok-2"); err != nil { // replaces
		t.Fatal(err)
	}
	if err := svc.Set(ctx, "bob", "acme", "web", "worker", "OTHER", "other-app-value"); err != nil {
		t.Fatal(err)
	}
	names, err := svc.List(ctx, "ACME", "web", "api")
	if err != nil || strings.Join(names, ",") != "DATABASE_URL,LOG_TOKEN" {
		t.Fatalf("List = %v, %v", names, err)
	}
	appID := addApp(t, st, "Acme", "Web", "api")
	got, err := svc.AppSecrets(ctx, appID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["DATABASE_URL"] != dbURL || got["LOG_TOKEN"] != "tok-2" {
		t.Fatalf("AppSecrets = %v", got)
	}
	if err := svc.Unset(ctx, "bob", "acme", "web", "api", "LOG_TOKEN"); err != nil {
		t.Fatal(err)
	}
	err = svc.Unset(ctx, "bob", "acme", "web", "api", "LOG_TOKEN")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "LOG_TOKEN") {
		t.Fatalf("second unset: %v, want not found naming LOG_TOKEN", err)
	}
	if got, _ := svc.AppSecrets(ctx, appID); len(got) != 1 {
		t.Fatalf("after unset AppSecrets has %d secrets", len(got))
	}
	if _, err := svc.AppSecrets(ctx, 987654); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("secrets of a missing app: %v", err)
	}

	rows, err := st.Pool().Query(ctx, `SELECT actor || ' ' || action || ' ' || target || ' ' || details::text FROM audit_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	events, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read the audit events: %v", err)
	}
	want := []string{
		`cli:alice secret.set acme/web/api {"name": "DATABASE_URL", "key_id": "k1", "created": true}`,
		`cli:alice secret.set acme/web/api {"name": "LOG_TOKEN", "key_id": "k1", "created": true}`,
		`bob secret.set acme/web/api {"name": "LOG_TOKEN", "key_id": "k1", "created": false}`,
		`bob secret.set acme/web/worker {"name": "OTHER", "key_id": "k1", "created": true}`,
		`bob secret.unset acme/web/api {"name": "LOG_TOKEN"}`,
	}
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	all := dump(t, st)
	for _, v := range []string{dbURL, "hunter2", "tok-1", "tok-2", "other-app-value"} {
		if strings.Contains(all, v) {
			t.Errorf("secret value %q is stored in clear", v)
		}
	}
}

func TestBadInputIsRefusedAndNothingStored(t *testing.T) {
	st := storetest.New(t)
	svc := secrets.New(st, ring(t, "k1"))
	cases := []struct {
		name                  string
		owner, repo, app, key string
		value                 string
		wantInMessage         string
	}{
		{"name starts with a digit", "acme", "web", "api", "1KEY", "v", `"1KEY" is not valid`},
		{"name with a dash", "acme", "web", "api", "MY-KEY", "v", `"MY-KEY" is not valid`},
		{"name too long", "acme", "web", "api", strings.Repeat("K", 129), "v", "at most 128"},
		{"PORT", "acme", "web", "api", "PORT", "v", "PORT is reserved"},
		{"empty value", "acme", "web", "api", "KEY", "", "value is empty"},
		{"NUL in value", "acme", "web", "api", "KEY", "a\x00b-secret", "NUL"},
		{"invalid UTF-8", "acme", "web", "api", "KEY", "\xff\xfe-secret", "UTF-8"},
		{"value too big", "acme", "web", "api", "KEY", strings.Repeat("x", secrets.MaxValueBytes+1), "more than"},
		{"bad owner", "ac me", "web", "api", "KEY", "v", `owner "ac me"`},
		{"bad repo", "acme", "..", "api", "KEY", "v", `repository name ".."`},
		{"bad app", "acme", "web", "API", "KEY", "v", `app name "API"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := svc.Set(t.Context(), "alice", c.owner, c.repo, c.app, c.key, c.value)
			if err == nil || !secrets.IsInput(err) || !strings.Contains(err.Error(), c.wantInMessage) {
				t.Fatalf("Set: err = %v, want an input error mentioning %q", err, c.wantInMessage)
			}
			if len(c.value) > 1 && strings.Contains(err.Error(), c.value[1:]) {
				t.Fatalf("the error quotes the value: %v", err)
			}
		})
	}
	var n int
	if err := st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM secrets WHERE name IN ('KEY', 'PORT')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d refused secrets stored (err %v)", n, err)
	}
}

// TestCiphertextMovedToAnotherAppDoesNotDecrypt: someone with write access
// to the table cannot hand one app's secret to another.
func TestCiphertextMovedToAnotherAppDoesNotDecrypt(t *testing.T) {
	st := fresh(t)
	svc := secrets.New(st, ring(t, "k1"))
	if err := svc.Set(t.Context(), "alice", "acme", "web", "api", "TOKEN", "api-only-value"); err != nil {
		t.Fatal(err)
	}
	evil := addApp(t, st, "evil", "web", "api")
	if _, err := st.Pool().Exec(t.Context(), `UPDATE secrets SET owner = 'evil'`); err != nil {
		t.Fatal(err)
	}
	got, err := svc.AppSecrets(t.Context(), evil)
	if err == nil || strings.Contains(err.Error(), "api-only-value") || !strings.Contains(err.Error(), "TOKEN") {
		t.Fatalf("moved ciphertext: %v, %v; want an error naming TOKEN and not the value", got, err)
	}
}

func TestRotateMovesEverySecretToTheFirstKey(t *testing.T) {
	st := fresh(t)
	old := secrets.New(st, ring(t, "a-old"))
	want := map[string]string{}
	for i := range 7 {
		name, value := fmt.Sprintf("KEY_%d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("z", i))
		if err := old.Set(t.Context(), "alice", "acme", "web", "api", name, value); err != nil {
			t.Fatal(err)
		}
		want[name] = value
	}
	appID := addApp(t, st, "acme", "web", "api")

	both := secrets.New(st, ring(t, "b-new", "a-old"))
	res, err := both.Rotate(t.Context(), "cli:ops")
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyID != "b-new" || res.Rotated != 7 || len(res.Failed) != 0 || strings.Join(res.Unused, ",") != "a-old" {
		t.Fatalf("rotation %+v", res)
	}
	newOnly := secrets.New(st, ring(t, "b-new"))
	got, err := newOnly.AppSecrets(t.Context(), appID)
	if err != nil {
		t.Fatalf("after rotation, the new key alone: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after rotation %v, want %v", got, want)
	}
	if again, err := both.Rotate(t.Context(), "cli:ops"); err != nil || again.Rotated != 0 {
		t.Fatalf("second rotation: %+v, %v", again, err)
	}
	var details string
	err = st.Pool().QueryRow(t.Context(), `SELECT details::text FROM audit_events WHERE action = 'keys.rotated' AND actor = 'cli:ops' ORDER BY id LIMIT 1`).Scan(&details)
	if err != nil || details != `{"from": ["a-old"], "failed": 0, "key_id": "b-new", "rotated": 7}` {
		t.Fatalf("rotation audit: %s, %v", details, err)
	}
}

// TestRotateWhileKeystoneRuns: rotation under concurrent sets, unsets and
// reads loses no secret and never serves one that does not decrypt.
func TestRotateWhileKeystoneRuns(t *testing.T) {
	st := fresh(t)
	old := secrets.New(st, ring(t, "a-old"))
	for i := range 60 {
		if err := old.Set(t.Context(), "alice", "acme", "web", "api", fmt.Sprintf("KEY_%02d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	appID := addApp(t, st, "acme", "web", "api")
	running := secrets.New(st, ring(t, "b-new", "a-old")) // the running Keystone, already given the new key
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	wg.Go(func() { // an admin changing secrets
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("KEY_%02d", i%60)
			if err := running.Set(t.Context(), "admin", "acme", "web", "api", name, fmt.Sprintf("v%d", i%60)); err != nil {
				errs <- err
				return
			}
			if i%7 == 0 {
				if err := running.Unset(t.Context(), "admin", "acme", "web", "api", name); err != nil && !errors.Is(err, store.ErrNotFound) {
					errs <- err
					return
				}
				_ = running.Set(t.Context(), "admin", "acme", "web", "api", name, fmt.Sprintf("v%d", i%60))
			}
		}
	})
	wg.Go(func() { // deploys reading them
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := running.AppSecrets(t.Context(), appID); err != nil {
				errs <- err
				return
			}
		}
	})
	res, err := secrets.New(st, ring(t, "b-new", "a-old")).Rotate(t.Context(), "cli:ops")
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if err != nil || len(res.Failed) != 0 {
		t.Fatalf("rotate: %+v, %v", res, err)
	}
	got, err := secrets.New(st, ring(t, "b-new")).AppSecrets(t.Context(), appID)
	if err != nil || len(got) != 60 {
		t.Fatalf("after rotation with the new key alone: %d secrets, %v", len(got), err)
	}
	for i := range 60 {
		if name := fmt.Sprintf("KEY_%02d", i); got[name] != fmt.Sprintf("v%d", i) {
			t.Errorf("%s = %q", name, got[name])
		}
	}
}

func TestRotateReportsSecretsUnderAnUnknownKey(t *testing.T) {
	st := fresh(t)
	if err := secrets.New(st, ring(t, "lost")).Set(t.Context(), "alice", "acme", "web", "api", "ORPHAN", "orphan-value"); err != nil {
		t.Fatal(err)
	}
	if err := secrets.New(st, ring(t, "a-old")).Set(t.Context(), "alice", "acme", "web", "api", "FINE", "fine-value"); err != nil {
		t.Fatal(err)
	}
	svc := secrets.New(st, ring(t, "b-new", "a-old"))
	unknown, err := svc.UnknownKeys(t.Context())
	if err != nil || len(unknown) != 1 || unknown["lost"] != 1 {
		t.Fatalf("UnknownKeys = %v, %v", unknown, err)
	}
	res, err := svc.Rotate(t.Context(), "cli:ops")
	if err == nil || res.Rotated != 1 || len(res.Failed) != 1 || !strings.Contains(res.Failed[0], "ORPHAN") || !strings.Contains(err.Error(), `"lost"`) {
		t.Fatalf("rotate: %+v, %v; want FINE rotated and ORPHAN reported", res, err)
	}
	if strings.Contains(err.Error(), "orphan-value") || strings.Contains(dump(t, st), "orphan-value") {
		t.Fatal("a secret value leaked into the error or the database")
	}
	if len(res.Unused) != 1 {
		t.Fatalf("unused keys %v, want a-old", res.Unused)
	}
}
