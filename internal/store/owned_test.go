package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestKeptContainers: a recorded container is kept until a time; a kept
// container moves only to a deployment of its own app, and is then no
// longer kept; an unknown container cannot be kept.
func TestKeptContainers(t *testing.T) {
	q, tx := storetest.Tx(t)
	ctx := t.Context()
	web, err := storetest.AddApp(ctx, tx, store.App{Owner: "acme", Repo: "shop", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := storetest.AddApp(ctx, tx, store.App{Owner: "acme", Repo: "shop", Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	d1, err := storetest.AddDeployment(ctx, tx, store.Deployment{AppID: web.ID})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := storetest.AddDeployment(ctx, tx, store.Deployment{AppID: web.ID})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := storetest.AddDeployment(ctx, tx, store.Deployment{AppID: other.ID})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ab", 32)
	if err := q.AddOwnedContainer(ctx, id, web.ID, d1.ID); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(10 * time.Minute).Truncate(time.Microsecond)
	if err := q.KeepOwnedContainer(ctx, id, until); err != nil {
		t.Fatal(err)
	}
	list, err := q.OwnedContainersOfApp(ctx, web.ID)
	if err != nil || len(list) != 1 || list[0].KeepUntil == nil || !list[0].KeepUntil.Equal(until) ||
		!list[0].KeptAt(time.Now()) || list[0].KeptAt(until) {
		t.Fatalf("kept container listed as %+v (%v), want kept until %s", list, err, until)
	}
	if err := q.KeepOwnedContainer(ctx, strings.Repeat("cd", 32), until); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("keeping an unrecorded container: %v, want ErrNotFound", err)
	}
	if err := q.AdoptKeptContainer(ctx, id, foreign.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("moving a container to another app's deployment: %v, want ErrNotFound", err)
	}
	if err := q.AdoptKeptContainer(ctx, id, d2.ID); err != nil {
		t.Fatal(err)
	}
	list, err = q.OwnedContainersOfDeployment(ctx, d2.ID)
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].KeepUntil != nil {
		t.Fatalf("after the move deployment %d has %+v (%v), want the container, not kept", d2.ID, list, err)
	}
}
