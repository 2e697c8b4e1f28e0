package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// HashSize is the length of an event's hash.
const HashSize = sha256.Size

// TimeLayout is how an event's time enters its hash: UTC with microseconds,
// the precision PostgreSQL keeps. Writers must store times truncated to it.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// encodingVersion starts every hashed text, so a future encoding can never
// collide with this one.
const encodingVersion = "keystone.audit.v1"

// Record is one stored audit event as the chain sees it.
type Record struct {
	ID     int64
	At     time.Time
	Actor  string
	Action string
	Target string
	// Details is the JSON text of the details object, in any key order and
	// number spelling: it is canonicalised before hashing.
	Details []byte
	// PrevHash is the hash of the event before, Genesis for the first one,
	// and nil on events stored before the chain began.
	PrevHash []byte
	Hash     []byte
}

// Genesis returns the previous hash of the first chained event: zero bytes.
func Genesis() []byte { return make([]byte, HashSize) }

// CanonicalDetails returns the canonical JSON text of details ({} for nil),
// which is what a writer stores and hashes.
func CanonicalDetails(details map[string]any) ([]byte, error) {
	if details == nil {
		return []byte("{}"), nil
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("encode details: %w", err)
	}
	return CanonicalJSON(raw)
}

// Hash returns the hash of r (r.Hash is ignored): SHA-256 over the canonical
// JSON array ["keystone.audit.v1", id, at, actor, action, target, details,
// hex(prev_hash)].
func Hash(r Record) ([]byte, error) {
	details, err := CanonicalJSON(r.Details)
	if err != nil {
		return nil, fmt.Errorf("details: %w", err)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	writeString(&b, encodingVersion)
	b.WriteByte(',')
	b.WriteString(strconv.FormatInt(r.ID, 10))
	for _, s := range []string{r.At.UTC().Format(TimeLayout), r.Actor, r.Action, r.Target} {
		b.WriteByte(',')
		writeString(&b, s)
	}
	b.WriteByte(',')
	b.Write(details)
	b.WriteByte(',')
	writeString(&b, hex.EncodeToString(r.PrevHash))
	b.WriteByte(']')
	sum := sha256.Sum256(b.Bytes())
	return sum[:], nil
}

// Head is the chain's tip as the writers recorded it: the last event's id and
// hash (0 and nil before the first chained event).
type Head struct {
	LastID int64
	Hash   []byte
	// PreChainLastID is the last event written before the chain began (0:
	// none): only events up to it may lack hashes.
	PreChainLastID int64
}

// Anchor is a chain head exported earlier (keystone audit head) and kept
// outside the database: event ID must still have Hash.
type Anchor struct {
	ID   int64
	Hash []byte
}

// Source is where Verify reads the trail from (the store).
type Source interface {
	// WalkAudit calls fn with every audit event in id order, all from one
	// snapshot, and returns the head recorded in that same snapshot. It stops
	// at fn's first error and returns it.
	WalkAudit(ctx context.Context, fn func(Record) error) (Head, error)
}

// Report is what Verify checked.
type Report struct {
	Checked   int   // chained events whose hash and link were checked
	Unchained int   // events stored before the chain began: no hash to check
	LastID    int64 // the last chained event, 0 if none
	LastHash  []byte
}

// BrokenError names the first event that does not fit the chain and what is
// wrong with it.
type BrokenError struct {
	ID      int64
	Problem string
}

func (e *BrokenError) Error() string { return fmt.Sprintf("audit event %d: %s", e.ID, e.Problem) }

// Verify walks the whole trail and returns a *BrokenError naming the first
// event whose hash does not match its content, whose link does not match the
// event before it, or, at the end, a head that does not match the last event
// (events removed from the end).
//
// Each anchor's event must be in the chain with the anchor's hash: someone
// able to rewrite and re-hash the whole trail cannot match a hash recorded
// outside the database.
func Verify(ctx context.Context, src Source, anchors ...Anchor) (Report, error) {
	var c Chain
	found := make([]bool, len(anchors))
	head, err := src.WalkAudit(ctx, func(r Record) error {
		if err := c.Add(r); err != nil {
			return err
		}
		for i, a := range anchors {
			if r.ID != a.ID {
				continue
			}
			if !bytes.Equal(r.Hash, a.Hash) {
				return &BrokenError{ID: r.ID, Problem: fmt.Sprintf(
					"does not match the anchor kept outside the database (stored %x, anchor %x): the trail was rewritten", r.Hash, a.Hash)}
			}
			found[i] = true
		}
		return nil
	})
	if err != nil {
		return c.Report(), err
	}
	if err := c.CheckHead(head); err != nil {
		return c.Report(), err
	}
	for i, a := range anchors {
		if !found[i] {
			return c.Report(), &BrokenError{ID: a.ID, Problem: "missing: the anchor names an event the trail does not have"}
		}
	}
	return c.Report(), nil
}

// Chain checks events fed to it in id order. The zero value is ready.
type Chain struct {
	rep     Report
	started bool
	// firstUnchained is the first event without hashes, 0 if none.
	firstUnchained, lastUnchained int64
}

// Report returns what has been checked so far.
func (c *Chain) Report() Report { return c.rep }

// Add checks r against the events added before it.
func (c *Chain) Add(r Record) error {
	if r.Hash == nil && r.PrevHash == nil {
		if c.started {
			return &BrokenError{ID: r.ID, Problem: "no hash: stored after the chain began without being chained"}
		}
		c.rep.Unchained++
		if c.firstUnchained == 0 {
			c.firstUnchained = r.ID
		}
		c.lastUnchained = r.ID
		return nil
	}
	if r.Hash == nil || r.PrevHash == nil {
		return &BrokenError{ID: r.ID, Problem: "hash or prev_hash missing"}
	}
	got, err := Hash(r)
	if err != nil {
		return &BrokenError{ID: r.ID, Problem: "unreadable details: " + err.Error()}
	}
	if !bytes.Equal(got, r.Hash) {
		return &BrokenError{ID: r.ID, Problem: fmt.Sprintf(
			"hash mismatch: the event was changed after it was written (stored %x, computed %x)", r.Hash, got)}
	}
	want, before := Genesis(), "the start of the chain (zero hash)"
	if c.started {
		want, before = c.rep.LastHash, fmt.Sprintf("event %d", c.rep.LastID)
	}
	if !bytes.Equal(r.PrevHash, want) {
		return &BrokenError{ID: r.ID, Problem: fmt.Sprintf(
			"broken link: prev_hash %x is not the hash of %s (%x): an event before it was removed or changed", r.PrevHash, before, want)}
	}
	c.started = true
	c.rep.Checked++
	c.rep.LastID, c.rep.LastHash = r.ID, r.Hash
	return nil
}

// CheckHead checks that the recorded head is the last event added, which
// catches events removed from the end of the trail.
func (c *Chain) CheckHead(h Head) error {
	if c.lastUnchained > h.PreChainLastID {
		return &BrokenError{ID: max(c.firstUnchained, h.PreChainLastID+1), Problem: fmt.Sprintf(
			"no hash, and not among the events from before the chain began (up to event %d): inserted without being chained",
			h.PreChainLastID)}
	}
	if h.LastID == c.rep.LastID && bytes.Equal(h.Hash, c.rep.LastHash) {
		return nil
	}
	if h.LastID > c.rep.LastID {
		return &BrokenError{ID: h.LastID, Problem: fmt.Sprintf(
			"missing: the chain head records event %d but the trail ends at %d: events were removed from the end", h.LastID, c.rep.LastID)}
	}
	return &BrokenError{ID: c.rep.LastID, Problem: fmt.Sprintf(
		"the chain head records event %d (hash %x), not the last event: the head was changed", h.LastID, h.Hash)}
}
