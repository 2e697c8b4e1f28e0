package store_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestFailedMigrationNamesItAndStops(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fsys := fstest.MapFS{
		"90001_good.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE good (x int);\n")},
		"90002_bad.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE bad (x no_such_type);\n")},
		"90003_after.sql": {Data: []byte("-- +goose Up\nCREATE TABLE after_bad (x int);\n")},
	}
	err = st.MigrateFS(t.Context(), fsys)
	if err == nil {
		t.Fatal("a failing migration returned no error")
	}
	for _, want := range []string{"90002_bad.sql", `type "no_such_type" does not exist`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	var exists [3]bool
	for i, table := range []string{"good", "bad", "after_bad"} {
		if err := st.Pool().QueryRow(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists[i]); err != nil {
			t.Fatal(err)
		}
	}
	if exists != [3]bool{true, false, false} {
		t.Fatalf("tables good, bad, after_bad exist = %v, want [true false false]", exists)
	}
}

func TestMigrateTwiceIsANoOp(t *testing.T) {
	st := storetest.New(t) // migrated once already
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}

func TestNotFoundIsTheStoresError(t *testing.T) {
	q, _ := storetest.Tx(t)
	_, err := q.Delivery(t.Context(), 987654321)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err = %v, want store.ErrNotFound", err)
	}
	if _, err := q.Installation(t.Context(), 987654321); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("installation err = %v, want store.ErrNotFound", err)
	}
	if err := q.MarkDeliveryProcessed(t.Context(), 987654321); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("mark processed err = %v, want store.ErrNotFound", err)
	}
}

func TestInsertDeliveryDeduplicates(t *testing.T) {
	q, _ := storetest.Tx(t)
	d := store.Delivery{GUID: "dedupe-1", Event: "push", Repository: "o/r\x00", Payload: []byte("{}")}
	id, inserted, err := q.InsertDelivery(t.Context(), d)
	if err != nil || !inserted || id == 0 {
		t.Fatalf("first insert: id=%d inserted=%v err=%v", id, inserted, err)
	}
	_, inserted, err = q.InsertDelivery(t.Context(), d)
	if err != nil || inserted {
		t.Fatalf("second insert: inserted=%v err=%v", inserted, err)
	}
	got, err := q.Delivery(t.Context(), id)
	if err != nil || got.Repository != "o/r" {
		t.Fatalf("stored delivery = %+v, %v (NUL must be dropped)", got, err)
	}
}

func TestInsertDeliveriesSkipsStoredGUIDs(t *testing.T) {
	q, _ := storetest.Tx(t)
	if _, _, err := q.InsertDelivery(t.Context(), store.Delivery{GUID: "many-2", Event: "push", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	ids, err := q.InsertDeliveries(t.Context(), []store.Delivery{
		{GUID: "many-1", Event: "push", InstallationID: 7, Repository: "o/r", Payload: []byte(`{"a":1}`)},
		{GUID: "many-2", Event: "push", Payload: []byte("{}")},
		{GUID: "many-3", Event: "issue_comment", Action: "created", Payload: []byte("{}")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids["many-1"] == 0 || ids["many-3"] == 0 {
		t.Fatalf("ids = %v, want many-1 and many-3 only", ids)
	}
	d, err := q.Delivery(t.Context(), ids["many-1"])
	if err != nil || d.InstallationID != 7 || d.Repository != "o/r" || string(d.Payload) != `{"a":1}` {
		t.Fatalf("many-1 stored as %+v, %v", d, err)
	}
}
