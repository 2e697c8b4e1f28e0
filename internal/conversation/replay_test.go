package conversation_test

import (
	"fmt"
	"testing"

	"github.com/keystone-app/keystone/internal/store"
)

// TestReplayedCommentRunsOnce performs the replay of issue 12 item 4: a
// captured, validly signed issue_comment body re-sent under a new
// X-GitHub-Delivery id. The command is unique per comment: the second
// delivery runs nothing, asks the engine for nothing and audits nothing.
func TestReplayedCommentRunsOnce(t *testing.T) {
	e := newEnv(t)
	gc, err := e.deliver(comment{user: "alice", body: "/keystone rollback to 1111111"})
	if err != nil {
		t.Fatal(err)
	}
	var payload []byte
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT payload FROM webhook_deliveries WHERE guid = $1`, fmt.Sprintf("guid-%d", gc.ID)).
		Scan(&payload); err != nil {
		t.Fatal(err)
	}
	auditBefore := len(e.audit())
	id, inserted, err := e.st.InsertDelivery(t.Context(), store.Delivery{GUID: "replayed-under-a-new-id",
		Event: "issue_comment", Action: "created", InstallationID: inst, Repository: fullRepo, Payload: payload})
	if err != nil || !inserted {
		t.Fatalf("store the replay: %v, inserted %v", err, inserted)
	}
	if err := e.work(id); err != nil {
		t.Fatal(err)
	}
	if n := len(e.engine.Requests()); n != 1 {
		t.Fatalf("the engine was asked %d times, want once", n)
	}
	if got := e.audit(); len(got) != auditBefore {
		t.Fatalf("the replay was audited: %q", got[auditBefore:])
	}
	if !e.processed("replayed-under-a-new-id") {
		t.Fatal("the replayed delivery is left unprocessed")
	}
}
