package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2026, 5, 22, 9, 30, 1, 123456000, time.FixedZone("CEST", 2*3600))

// TestHashEncodingIsTheDocumentedOne pins the encoding: changing it would
// make every stored chain fail verification.
func TestHashEncodingIsTheDocumentedOne(t *testing.T) {
	r := Record{ID: 42, At: at, Actor: "alice", Action: "secret.set", Target: "acme/web/api",
		Details: []byte(`{"name": "DB_URL", "created": true}`), PrevHash: bytes.Repeat([]byte{0xab}, HashSize)}
	text := `["keystone.audit.v1",42,"2026-05-22T07:30:01.123456Z","alice","secret.set","acme/web/api",` +
		`{"created":true,"name":"DB_URL"},"` + strings.Repeat("ab", HashSize) + `"]`
	want := sha256.Sum256([]byte(text))
	got, err := Hash(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("Hash = %x, want sha256(%s) = %x", got, text, want)
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := Record{ID: 7, At: at, Actor: "a", Action: "x", Target: "t", Details: []byte(`{"k":1}`), PrevHash: Genesis()}
	baseHash, err := Hash(base)
	if err != nil {
		t.Fatal(err)
	}
	changes := map[string]func(*Record){
		"id":        func(r *Record) { r.ID = 8 },
		"at":        func(r *Record) { r.At = r.At.Add(time.Microsecond) },
		"actor":     func(r *Record) { r.Actor = "b" },
		"action":    func(r *Record) { r.Action = "y" },
		"target":    func(r *Record) { r.Target = "u" },
		"details":   func(r *Record) { r.Details = []byte(`{"k":2}`) },
		"prev_hash": func(r *Record) { r.PrevHash = bytes.Repeat([]byte{1}, HashSize) },
		// Fields are delimited, so moving text between them changes the hash.
		"actor/action boundary": func(r *Record) { r.Actor, r.Action = "ax", "" },
	}
	for name, change := range changes {
		r := base
		change(&r)
		h, err := Hash(r)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(h, baseHash) {
			t.Errorf("changing %s left the hash unchanged", name)
		}
	}
	same := base
	same.At = base.At.In(time.UTC)
	same.Details = []byte(`{ "k" : 1.0 }`)
	if h, _ := Hash(same); !bytes.Equal(h, baseHash) {
		t.Error("the same event in another time zone and JSON spelling hashed differently")
	}
}

// chainOf builds a valid chain of n events (plus unchained ones before it).
func chainOf(t *testing.T, unchained, n int) []Record {
	t.Helper()
	var recs []Record
	for i := range unchained {
		recs = append(recs, Record{ID: int64(i + 1), At: at, Actor: "old", Action: "x", Details: []byte(`{}`)})
	}
	prev := Genesis()
	for i := range n {
		r := Record{ID: int64(unchained + i + 1), At: at.Add(time.Duration(i) * time.Second), Actor: "a", Action: "x",
			Target: "t", Details: []byte(`{"i":` + string(rune('0'+i%10)) + `}`), PrevHash: prev}
		h, err := Hash(r)
		if err != nil {
			t.Fatal(err)
		}
		r.Hash = h
		prev = h
		recs = append(recs, r)
	}
	return recs
}

type fakeSource struct {
	recs []Record
	head Head
}

func (f fakeSource) WalkAudit(_ context.Context, fn func(Record) error) (Head, error) {
	for _, r := range f.recs {
		if err := fn(r); err != nil {
			return f.head, err
		}
	}
	return f.head, nil
}

func headOf(recs []Record) Head {
	last := recs[len(recs)-1]
	return Head{LastID: last.ID, Hash: last.Hash}
}

func TestVerify(t *testing.T) {
	cases := []struct {
		name    string
		tamper  func(recs []Record, head *Head) []Record
		badID   int64
		problem string
	}{
		{"intact", func(r []Record, _ *Head) []Record { return r }, 0, ""},
		{"content changed", func(r []Record, _ *Head) []Record { r[4].Actor = "mallory"; return r }, 5, "hash mismatch"},
		{"details changed", func(r []Record, _ *Head) []Record { r[3].Details = []byte(`{"i":9}`); return r }, 4, "hash mismatch"},
		{"rehashed after change", func(r []Record, _ *Head) []Record {
			r[2].Actor = "mallory"
			r[2].Hash, _ = Hash(r[2])
			return r
		}, 4, "broken link"},
		{"removed in the middle", func(r []Record, _ *Head) []Record { return append(r[:3], r[4:]...) }, 5, "broken link"},
		{"removed at the start", func(r []Record, _ *Head) []Record { return r[1:] }, 2, "broken link"},
		{"removed at the end", func(r []Record, _ *Head) []Record { return r[:len(r)-2] }, 6, "removed from the end"},
		{"contents swapped", func(r []Record, _ *Head) []Record {
			r[2].Details, r[3].Details = r[3].Details, r[2].Details
			return r
		}, 3, "hash mismatch"},
		{"hash erased", func(r []Record, _ *Head) []Record { r[2].Hash, r[2].PrevHash = nil, nil; return r }, 3, "no hash"},
		{"head changed", func(r []Record, h *Head) []Record { h.LastID, h.Hash = 3, r[2].Hash; return r }, 6, "head"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs := chainOf(t, 0, 6)
			head := headOf(recs)
			recs = c.tamper(recs, &head)
			rep, err := Verify(t.Context(), fakeSource{recs: recs, head: head})
			if c.badID == 0 {
				if err != nil || rep.Checked != 6 {
					t.Fatalf("intact chain: checked %d, err %v", rep.Checked, err)
				}
				return
			}
			var broken *BrokenError
			if !errors.As(err, &broken) {
				t.Fatalf("err = %v, want a BrokenError", err)
			}
			if broken.ID != c.badID || !strings.Contains(broken.Problem, c.problem) {
				t.Fatalf("broken at %d (%s), want %d (%s)", broken.ID, broken.Problem, c.badID, c.problem)
			}
		})
	}
}

// TestUnchainedEventsAreNotSilentlyAccepted: events without hashes before
// the first chained one are accepted only when the head records them as
// older than the chain (migration 00604 did, for trails begun before the
// chain); rows slipped in ahead of the chain are not (issue 12 item 7).
func TestUnchainedEventsAreNotSilentlyAccepted(t *testing.T) {
	recs := chainOf(t, 3, 4)
	_, err := Verify(t.Context(), fakeSource{recs: recs, head: headOf(recs)})
	var broken *BrokenError
	if !errors.As(err, &broken) || broken.ID != 1 || !strings.Contains(broken.Problem, "before the chain") {
		t.Fatalf("unchained events nobody recorded: err %v, want event 1 named", err)
	}
	empty, err := Verify(t.Context(), fakeSource{})
	if err != nil || empty.Checked != 0 {
		t.Fatalf("empty trail: %+v, %v", empty, err)
	}
}

func TestVerifyAcceptsEventsFromBeforeTheChain(t *testing.T) {
	recs := chainOf(t, 3, 4)
	head := headOf(recs)
	head.PreChainLastID = 3
	rep, err := Verify(t.Context(), fakeSource{recs: recs, head: head})
	if err != nil || rep.Unchained != 3 || rep.Checked != 4 {
		t.Fatalf("report %+v, err %v; want 3 unchained, 4 checked", rep, err)
	}
}

// TestVerifyAgainstAnAnchor: a head exported earlier (keystone audit head)
// must still be in the chain with the same hash: a rewritten and re-hashed
// trail passes every link but not the anchor.
func TestVerifyAgainstAnAnchor(t *testing.T) {
	recs := chainOf(t, 0, 6)
	anchor := Anchor{ID: recs[3].ID, Hash: recs[3].Hash}
	if _, err := Verify(t.Context(), fakeSource{recs: recs, head: headOf(recs)}, anchor); err != nil {
		t.Fatalf("intact chain against its anchor: %v", err)
	}
	// Rewrite event 2 and re-hash everything after it, as a superuser could.
	rewritten := chainOf(t, 0, 6)
	rewritten[1].Actor = "mallory"
	prev := rewritten[0].Hash
	for i := 1; i < len(rewritten); i++ {
		rewritten[i].PrevHash = prev
		rewritten[i].Hash, _ = Hash(rewritten[i])
		prev = rewritten[i].Hash
	}
	if _, err := Verify(t.Context(), fakeSource{recs: rewritten, head: headOf(rewritten)}); err != nil {
		t.Fatalf("the re-hashed chain should pass on its own: %v", err)
	}
	_, err := Verify(t.Context(), fakeSource{recs: rewritten, head: headOf(rewritten)}, anchor)
	var broken *BrokenError
	if !errors.As(err, &broken) || broken.ID != anchor.ID || !strings.Contains(broken.Problem, "anchor") {
		t.Fatalf("re-hashed chain against the anchor: %v", err)
	}
	_, err = Verify(t.Context(), fakeSource{recs: recs[:3], head: headOf(recs[:3])}, anchor)
	if !errors.As(err, &broken) || !strings.Contains(broken.Problem, "anchor") {
		t.Fatalf("anchored event missing: %v", err)
	}
}
