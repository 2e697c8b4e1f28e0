package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keystone-app/keystone/internal/audit"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func openFresh(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func appendN(t *testing.T, st *store.Store, n int) {
	t.Helper()
	for i := range n {
		err := st.AppendAudit(t.Context(), store.AuditEvent{Actor: "alice", Action: store.AuditAppLocked,
			Target: "acme/web/api", Details: map[string]any{"i": i, "reason": "release freeze"}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func verifyOK(t *testing.T, st *store.Store) audit.Report {
	t.Helper()
	rep, err := audit.Verify(t.Context(), st)
	if err != nil {
		t.Fatalf("audit verify: %v (report %+v)", err, rep)
	}
	return rep
}

// TestAuditTableIsAppendOnly: PostgreSQL itself refuses UPDATE, DELETE and
// TRUNCATE of audit events, whoever asks.
func TestAuditTableIsAppendOnly(t *testing.T) {
	st := storetest.New(t)
	appendN(t, st, 1)
	for _, stmt := range []string{
		`UPDATE audit_events SET actor = 'mallory'`,
		`UPDATE audit_events SET hash = NULL, prev_hash = NULL WHERE id = (SELECT max(id) FROM audit_events)`,
		`DELETE FROM audit_events`,
		`DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)`,
		`TRUNCATE audit_events`,
		`TRUNCATE audit_events CASCADE`,
	} {
		t.Run(stmt, func(t *testing.T) {
			err := pgx.BeginFunc(t.Context(), st.Pool(), func(tx pgx.Tx) error {
				_, err := tx.Exec(t.Context(), stmt)
				return err
			})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "audit_events is append-only") {
				t.Fatalf("%s: err = %v, want the append-only trigger's refusal", stmt, err)
			}
		})
	}
}

// TestAuditChainSurvivesJSONB: details that jsonb reorders and rewrites
// (nested maps, unicode, numbers of every kind, HTML characters, NUL) and
// text PostgreSQL cannot store as given still verify after the round trip.
func TestAuditChainSurvivesJSONB(t *testing.T) {
	st := openFresh(t)
	// An event from before the chain existed: no hash, accepted as unchained
	// because the head records it as older than the chain (as migration
	// 00604 does for trails begun before the chain).
	if _, err := st.Pool().Exec(t.Context(), `INSERT INTO audit_events (actor, action) VALUES ('old', 'legacy')`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(t.Context(), `UPDATE audit_chain_head SET pre_chain_last_id = (SELECT max(id) FROM audit_events)`); err != nil {
		t.Fatal(err)
	}
	details := []map[string]any{
		nil,
		{},
		{"zeta": 1, "alpha": map[string]any{"z": []any{1, "two", 3.5, nil, true}, "a": map[string]any{}}, "bb": "x"},
		{"unicode": "café ☃ 😀 \u2028", "ключ": "значение", "html": "<b>&amp;</b>", "quote": `"\`},
		{"int": 42, "neg": -7, "big": int64(math.MaxInt64), "float": 0.1, "tiny": 1e-7, "huge": 1e21, "whole": 3.0},
		{"exact": json.Number("12345678901234567890.123400"), "zero": json.Number("-0.0e10")},
		{"nul\x00key": "nul\x00value", "ctrl": "a\x01b\tc\nd"},
		{"deep": map[string]any{"l1": map[string]any{"l2": map[string]any{"l3": []any{map[string]any{"b": 2, "a": 1}}}}}},
	}
	for i, d := range details {
		err := st.AppendAudit(t.Context(), store.AuditEvent{Actor: "bad\xffutf8\x00", Action: store.AuditSecretSet,
			Target: "acme/web/api", Details: d, At: time.Now().Add(time.Duration(i) * time.Nanosecond)})
		if err != nil {
			t.Fatalf("append details %d: %v", i, err)
		}
	}
	rep := verifyOK(t, st)
	if rep.Checked != len(details) || rep.Unchained != 1 {
		t.Fatalf("report %+v, want %d checked and 1 unchained", rep, len(details))
	}
	var stored string
	if err := st.Pool().QueryRow(t.Context(), `SELECT details->>'nulkey' FROM audit_events WHERE details ? 'nulkey'`).Scan(&stored); err != nil || stored != "nulvalue" {
		t.Fatalf("NUL not dropped as hashed: %q, %v", stored, err)
	}
}

// TestConcurrentAppendsMakeOneChain: 50 writers in separate transactions,
// half of them inside a caller's transaction, give one unbroken chain.
func TestConcurrentAppendsMakeOneChain(t *testing.T) {
	st := openFresh(t)
	const writers = 50
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			e := store.AuditEvent{Actor: "writer", Action: store.AuditCommandAccepted, Target: "acme/web/api",
				Details: map[string]any{"writer": i}}
			if i%2 == 0 {
				errs <- st.AppendAudit(t.Context(), e)
				return
			}
			errs <- st.InTx(t.Context(), func(_ pgx.Tx, q *store.Queries) error {
				if _, _, err := q.InsertDelivery(t.Context(), store.Delivery{GUID: fmt.Sprintf("concurrent-%d", i), Event: "push", Payload: []byte("{}")}); err != nil {
					return err
				}
				return q.AppendAudit(t.Context(), e)
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if rep := verifyOK(t, st); rep.Checked != writers {
		t.Fatalf("checked %d events, want %d", rep.Checked, writers)
	}
	var forks int
	err := st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM (SELECT prev_hash FROM audit_events GROUP BY prev_hash HAVING count(*) > 1) f`).Scan(&forks)
	if err != nil || forks != 0 {
		t.Fatalf("%d prev_hash values shared by several events (err %v)", forks, err)
	}
}

// TestRolledBackAuditLeavesTheChainWhole: an event appended in a transaction
// that rolls back takes nothing with it, and the next event links to the one
// before.
func TestRolledBackAuditLeavesTheChainWhole(t *testing.T) {
	st := openFresh(t)
	appendN(t, st, 2)
	boom := errors.New("the change failed")
	err := st.InTx(t.Context(), func(_ pgx.Tx, q *store.Queries) error {
		if err := q.AppendAudit(t.Context(), store.AuditEvent{Actor: "bob", Action: store.AuditUserAdded, Target: "user:carol"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	appendN(t, st, 2)
	if rep := verifyOK(t, st); rep.Checked != 4 {
		t.Fatalf("checked %d, want 4", rep.Checked)
	}
}

// TestRepeatableReadWriterCannotFork: a writer whose snapshot predates
// another's append gets an error, never a second event after the same one.
func TestRepeatableReadWriterCannotFork(t *testing.T) {
	st := openFresh(t)
	appendN(t, st, 1)
	tx, err := st.Pool().BeginTx(t.Context(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT last_id FROM audit_chain_head`); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	appendN(t, st, 1)
	err = store.NewQueries(tx).AppendAudit(t.Context(), store.AuditEvent{Actor: "late", Action: store.AuditLogout})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("stale writer: err = %v, want a serialization failure", err)
	}
	_ = tx.Rollback(t.Context())
	if rep := verifyOK(t, st); rep.Checked != 2 {
		t.Fatalf("checked %d, want 2", rep.Checked)
	}
}

// TestVerifyFindsTamperedEvents: a superuser who disables the triggers and
// edits, removes or appends around the chain is caught, with the first bad
// event named. Each case starts from the same intact trail, restored from a
// copy (one database for all cases keeps the test fast).
func TestVerifyFindsTamperedEvents(t *testing.T) {
	cases := []struct {
		name    string
		sql     string // run with the triggers disabled; $1 is the id of the 3rd event
		badID   func(first int64) int64
		problem string
	}{
		{"actor changed", `UPDATE audit_events SET actor = 'mallory' WHERE id = $1`, func(f int64) int64 { return f + 2 }, "hash mismatch"},
		{"details changed", `UPDATE audit_events SET details = '{"i": 99, "reason": "release freeze"}' WHERE id = $1`, func(f int64) int64 { return f + 2 }, "hash mismatch"},
		{"time changed", `UPDATE audit_events SET at = at - interval '1 day' WHERE id = $1`, func(f int64) int64 { return f + 2 }, "hash mismatch"},
		{"event removed", `DELETE FROM audit_events WHERE id = $1`, func(f int64) int64 { return f + 3 }, "broken link"},
		{"tail removed", `DELETE FROM audit_events WHERE id > $1`, func(f int64) int64 { return f + 4 }, "removed from the end"},
		{"forged event appended", `INSERT INTO audit_events (actor, action, prev_hash, hash)
			SELECT 'mallory', 'logout', hash, hash FROM audit_events WHERE id = $1`, func(f int64) int64 { return f + 5 }, "hash mismatch"},
	}
	st := openFresh(t)
	appendN(t, st, 5)
	var first int64
	if err := st.Pool().QueryRow(t.Context(), `SELECT min(id) FROM audit_events`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	asSuperuser(t, st, `CREATE TABLE intact_events AS SELECT * FROM audit_events`)
	restore := `DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM intact_events;
		UPDATE audit_chain_head SET last_id = (SELECT max(id) FROM intact_events),
			hash = (SELECT hash FROM intact_events ORDER BY id DESC LIMIT 1)`
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			asSuperuser(t, st, restore)
			verifyOK(t, st)
			asSuperuser(t, st, c.sql, first+2)
			_, err := audit.Verify(t.Context(), st)
			var broken *audit.BrokenError
			if !errors.As(err, &broken) {
				t.Fatalf("verify after tampering: %v, want a BrokenError", err)
			}
			if want := c.badID(first); broken.ID != want || !strings.Contains(broken.Problem, c.problem) {
				t.Fatalf("broken at %d (%s), want %d (%s)", broken.ID, broken.Problem, want, c.problem)
			}
		})
	}
}

// asSuperuser runs sql with the audit triggers disabled, as only the table's
// owner or a superuser can.
func asSuperuser(t *testing.T, st *store.Store, sql string, args ...any) {
	t.Helper()
	err := pgx.BeginFunc(t.Context(), st.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), `ALTER TABLE audit_events DISABLE TRIGGER USER`); err != nil {
			return err
		}
		for _, stmt := range strings.Split(sql, ";") {
			var stmtArgs []any
			if strings.Contains(stmt, "$1") {
				stmtArgs = args
			}
			if _, err := tx.Exec(t.Context(), stmt, stmtArgs...); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		_, err := tx.Exec(t.Context(), `ALTER TABLE audit_events ENABLE TRIGGER USER`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
