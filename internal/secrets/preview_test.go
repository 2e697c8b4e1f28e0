package secrets_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
)

// addPreview inserts the preview row of pull request pr of app parent.
func addPreview(t *testing.T, st *store.Store, parent int64, pr int) int64 {
	t.Helper()
	var p store.App
	err := st.InTx(t.Context(), func(_ pgx.Tx, q *store.Queries) error {
		a, err := q.App(t.Context(), parent)
		if err != nil {
			return err
		}
		p, err = q.UpsertPreview(t.Context(), a, pr, "feature", []byte(`{}`))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

// A preview runs a pull request's code: it gets the app's preview secrets
// and never a production one, and production never a preview one (SPEC §14).
func TestPreviewGetsOnlyPreviewSecrets(t *testing.T) {
	st := fresh(t)
	svc := secrets.New(st, ring(t, "k1"))
	ctx := t.Context()
	web := addApp(t, st, "acme", "shop", "web")
	for _, s := range []struct {
		key, value string
		preview    bool
	}{{"DATABASE_URL", "prod-db", false}, {"STRIPE_KEY", "prod-stripe", false}, {"DATABASE_URL", "preview-db", true}} {
		set := svc.Set
		if s.preview {
			set = svc.SetPreview
		}
		if err := set(ctx, "alice", "acme", "shop", "web", s.key, s.value); err != nil {
			t.Fatal(err)
		}
	}
	preview := addPreview(t, st, web, 7)
	// A production app named like the preview gets nothing of either.
	lookalike := addApp(t, st, "acme", "shop", "web-pr-8")
	for _, c := range []struct {
		name  string
		appID int64
		want  map[string]string
	}{
		{"production", web, map[string]string{"DATABASE_URL": "prod-db", "STRIPE_KEY": "prod-stripe"}},
		{"preview", preview, map[string]string{"DATABASE_URL": "preview-db"}},
		{"lookalike", lookalike, map[string]string{}},
	} {
		got, err := svc.AppSecrets(ctx, c.appID)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	names, err := svc.ListPreview(ctx, "acme", "shop", "web")
	if err != nil || strings.Join(names, ",") != "DATABASE_URL" {
		t.Fatalf("preview secret names: %v, %v", names, err)
	}
	// A production ciphertext moved into a preview row does not decrypt.
	if _, err := st.Pool().Exec(ctx, `DELETE FROM secrets WHERE preview`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE secrets SET preview = true WHERE name = 'STRIPE_KEY'`); err != nil {
		t.Fatal(err)
	}
	got, err := svc.AppSecrets(ctx, preview)
	if err == nil || strings.Contains(err.Error(), "prod-stripe") {
		t.Fatalf("moved production ciphertext: %v, %v; want an error without the value", got, err)
	}
	if err := svc.UnsetPreview(ctx, "alice", "acme", "shop", "web", "STRIPE_KEY"); err != nil {
		t.Fatal(err)
	}
}
