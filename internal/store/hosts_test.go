package store_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// Concurrent first deploys of apps whose default names clash each get a
// name of their own, allocated once and kept; concurrent claims of one
// domain name give it to exactly one app, and a refused claim changes
// nothing (all or nothing). A removed app releases its names.
func TestHostNamesBelongToOneApp(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t), store.MinConns(16))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, db := t.Context(), st.Pool()
	const n = 8
	apps := make([]store.App, n)
	for i := range apps {
		if apps[i], err = storetest.AddApp(ctx, db, store.App{Owner: "octo", Repo: fmt.Sprintf("r%d", i), Name: "web"}); err != nil {
			t.Fatal(err)
		}
	}
	candidate := func(attempt int) string {
		if attempt == 0 {
			return "web-shop.apps.test"
		}
		return fmt.Sprintf("web-shop-%d.apps.test", attempt+1)
	}
	hosts := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hosts[i], errs[i] = st.AllocateDefaultHost(ctx, apps[i].ID, candidate)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if sorted := slices.Sorted(slices.Values(hosts)); len(slices.Compact(sorted)) != n || !slices.Contains(hosts, "web-shop.apps.test") {
		t.Fatalf("default hosts %q: want %d distinct names, one of them web-shop.apps.test", hosts, n)
	}
	for i, a := range apps {
		again, err := st.AllocateDefaultHost(ctx, a.ID, func(int) string { return "other.apps.test" })
		if err != nil || again != hosts[i] {
			t.Errorf("app %d's default host again: %q %v, want it kept: %q", i, again, err, hosts[i])
		}
	}

	// Every app claims shop.example.com and a name of its own at once.
	for i := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.ClaimDomains(ctx, apps[i].ID, []string{fmt.Sprintf("own%d.example.com", i), "shop.example.com"})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		var taken *store.HostTakenError
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("apps %d and %d both claimed shop.example.com", winner, i)
		case err == nil:
			winner = i
		case !errors.As(err, &taken) || taken.Host != "shop.example.com":
			t.Fatalf("app %d: %v, want shop.example.com taken", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("nobody got shop.example.com")
	}
	for i, a := range apps {
		got, err := st.App(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{hosts[i]}
		if i == winner {
			want = []string{fmt.Sprintf("own%d.example.com", i), "shop.example.com", hosts[i]}
		}
		if !slices.Equal(got.Hosts, want) {
			t.Errorf("app %d holds %q, want %q", i, got.Hosts, want)
		}
	}

	// Another app's default name is taken too; the app's own default may be listed.
	other := (winner + 1) % n
	var taken *store.HostTakenError
	if err := st.ClaimDomains(ctx, apps[other].ID, []string{hosts[winner]}); !errors.As(err, &taken) || taken.AppID != apps[winner].ID {
		t.Errorf("claiming another app's default name: %v", err)
	}
	if err := st.ClaimDomains(ctx, apps[other].ID, []string{hosts[other]}); err != nil {
		t.Errorf("listing the app's own default name: %v", err)
	}
	// A new list releases the names it drops.
	if err := st.ClaimDomains(ctx, apps[winner].ID, []string{"shop.example.com"}); err != nil {
		t.Fatal(err)
	}
	if owner, found, err := st.HostOwner(ctx, fmt.Sprintf("own%d.example.com", winner)); err != nil || found {
		t.Errorf("a dropped name is still held by app %d (%v)", owner, err)
	}

	// Removal releases every name of the app.
	if err := st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error { _, err := q.RemoveApp(ctx, apps[winner].ID); return err }); err != nil {
		t.Fatal(err)
	}
	if err := st.ClaimDomains(ctx, apps[other].ID, []string{"shop.example.com", hosts[winner]}); err != nil {
		t.Errorf("the names of a removed app are not free: %v", err)
	}
}
