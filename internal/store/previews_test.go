package store_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// A preview is found by its parent's id and pull request number, never by
// name: a production app named like a preview is never taken over by one,
// nor a preview by a push's config, and production lookups never list
// previews. The overview lists previews right under their app.
func TestPreviewsAreTheirParentsAndNobodyElses(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, db := t.Context(), st.Pool()
	web, err := storetest.AddApp(ctx, db, store.App{Owner: "octo", Repo: "shop", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storetest.AddApp(ctx, db, store.App{Owner: "octo", Repo: "shop", Name: "worker"}); err != nil {
		t.Fatal(err)
	}
	lookalike, err := storetest.AddApp(ctx, db, store.App{Owner: "octo", Repo: "shop", Name: "web-pr-8"})
	if err != nil {
		t.Fatal(err)
	}
	var preview store.App
	err = st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		preview, err = q.UpsertPreview(ctx, web, 7, "feature", []byte(`{}`))
		return err
	})
	if err != nil || preview.Name != "web-pr-7" || preview.ParentAppID != web.ID || preview.PRNumber != 7 {
		t.Fatalf("preview = %+v, %v", preview, err)
	}
	// Taking over the look-alike production app fails; it is unchanged.
	err = st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		_, err := q.UpsertPreview(ctx, web, 8, "evil", []byte(`{"evil":true}`))
		return err
	})
	if err == nil {
		t.Fatal("a preview took the name of a production app")
	}
	if a, err := st.App(ctx, lookalike.ID); err != nil || a.Preview() || string(a.Config) != "{}" {
		t.Fatalf("the look-alike app after the attempt: %+v, %v", a, err)
	}
	// A push whose config names web-pr-7 does not take over the preview.
	err = st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		_, err := q.UpsertApp(ctx, store.AppSpec{InstallationID: 1, Owner: "octo", Repo: "shop", Name: "web-pr-7",
			Branch: "evil", Config: []byte(`{"evil":true}`)})
		return err
	})
	if err == nil {
		t.Fatal("a push's config took over a preview")
	}
	if p, err := st.App(ctx, preview.ID); err != nil || p.Branch != web.Branch || p.ParentAppID != web.ID {
		t.Fatalf("the preview after the attempt: %+v, %v", p, err)
	}
	apps, err := st.AppsOfRepository(ctx, "octo", "shop")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if got := strings.Join(names, ","); got != "web,web-pr-8,worker" {
		t.Errorf("production apps = %s", got)
	}
	overview, err := st.AppsOverview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, s := range overview {
		names = append(names, s.App.Name)
	}
	if got := strings.Join(names, ","); got != "web,web-pr-7,web-pr-8,worker" {
		t.Errorf("overview = %s", got)
	}
	// Removing the app removes its previews.
	if _, err := st.RemoveApp(ctx, web.ID); err != nil {
		t.Fatal(err)
	}
	if open, err := st.OpenPreviews(ctx); err != nil || len(open) != 0 {
		t.Errorf("open previews after removing their app: %v, %v", open, err)
	}
}
