package store_test

import (
	"errors"
	"testing"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestReplayKeys: a push and a comment are held by their first delivery;
// another delivery of the same push or comment is told so.
func TestReplayKeys(t *testing.T) {
	q, _ := storetest.Tx(t)
	var ids []int64
	for _, guid := range []string{"first", "replay", "reset"} {
		id, _, err := q.InsertDelivery(t.Context(), store.Delivery{GUID: guid, Event: "push", Payload: []byte("{}")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	k := store.PushKey{Repository: "Octo/Shop", Ref: "refs/heads/main", Before: "a", After: "b", PushedAt: 100}
	for i, c := range []struct {
		key      store.PushKey
		delivery int64
		want     int64
	}{
		{k, ids[0], ids[0]},
		{k, ids[0], ids[0]}, // the first delivery's retry
		{store.PushKey{Repository: "octo/shop", Ref: k.Ref, Before: "a", After: "b", PushedAt: 100}, ids[1], ids[0]},
		{store.PushKey{Repository: "octo/shop", Ref: k.Ref, Before: "a", After: "b", PushedAt: 200}, ids[2], ids[2]},
	} {
		if got, err := q.ClaimPush(t.Context(), c.key, c.delivery); err != nil || got != c.want {
			t.Errorf("claim %d: held by %d, %v; want %d", i, got, err, c.want)
		}
	}

	cmd := store.Command{DeliveryID: ids[0], InstallationID: 1, Owner: "octo", Repo: "shop", IssueNumber: 1, CommentID: 42,
		Actor: "alice", Verb: "lock", Outcome: store.CommandAccepted}
	if _, inserted, err := q.InsertCommand(t.Context(), cmd); err != nil || !inserted {
		t.Fatalf("first command: %v, inserted %v", err, inserted)
	}
	cmd.DeliveryID = ids[1]
	if _, _, err := q.InsertCommand(t.Context(), cmd); !errors.Is(err, store.ErrReplayed) {
		t.Fatalf("command of the same comment from another delivery: %v, want ErrReplayed", err)
	}
	if first, err := q.CommandOfComment(t.Context(), 42); err != nil || first.DeliveryID != ids[0] {
		t.Fatalf("command of comment 42: %+v, %v", first, err)
	}
}
