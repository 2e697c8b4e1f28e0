package store

import (
	"context"
	"fmt"
	"time"
)

// Delivery is a stored webhook delivery.
type Delivery struct {
	ID             int64
	GUID           string
	Event          string
	Action         string
	InstallationID int64 // 0 when the payload had none
	Repository     string
	Payload        []byte
	ReceivedAt     time.Time
	ProcessedAt    *time.Time
}

// InsertDelivery stores d unless a delivery with the same GUID exists. It
// returns the new row's id and inserted=false for a duplicate; run it in the
// transaction that also enqueues the delivery's work.
func (q *Queries) InsertDelivery(ctx context.Context, d Delivery) (id int64, inserted bool, err error) {
	rows, err := q.db.Query(ctx, `
		INSERT INTO webhook_deliveries (guid, event, action, installation_id, repository, payload)
		VALUES ($1, $2, $3, NULLIF($4, 0), $5, $6)
		ON CONFLICT (guid) DO NOTHING
		RETURNING id`,
		noNUL(d.GUID), noNUL(d.Event), noNUL(d.Action), d.InstallationID, noNUL(d.Repository), d.Payload)
	if err != nil {
		return 0, false, fmt.Errorf("insert delivery %s: %w", d.GUID, err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return 0, false, fmt.Errorf("insert delivery %s: %w", d.GUID, err)
		}
		inserted = true
	}
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("insert delivery %s: %w", d.GUID, err)
	}
	return id, inserted, nil
}

// Delivery returns the stored delivery with the given row id.
func (q *Queries) Delivery(ctx context.Context, id int64) (Delivery, error) {
	var d Delivery
	var inst *int64
	err := q.db.QueryRow(ctx, `
		SELECT id, guid, event, action, installation_id, repository, payload, received_at, processed_at
		FROM webhook_deliveries WHERE id = $1`, id).
		Scan(&d.ID, &d.GUID, &d.Event, &d.Action, &inst, &d.Repository, &d.Payload, &d.ReceivedAt, &d.ProcessedAt)
	if err != nil {
		return Delivery{}, notFound(err, fmt.Sprintf("delivery %d", id))
	}
	if inst != nil {
		d.InstallationID = *inst
	}
	return d, nil
}

// DeliveryStored reports whether a delivery with this GUID was stored.
func (q *Queries) DeliveryStored(ctx context.Context, guid string) (bool, error) {
	var ok bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE guid = $1)`, noNUL(guid)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up delivery %s: %w", guid, err)
	}
	return ok, nil
}

// MarkDeliveryProcessed records that the delivery's job has done its work.
func (q *Queries) MarkDeliveryProcessed(ctx context.Context, id int64) error {
	tag, err := q.db.Exec(ctx, `UPDATE webhook_deliveries SET processed_at = now() WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("mark delivery %d processed: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("mark delivery %d processed: %w", id, ErrNotFound)
	}
	return nil
}

// InsertDeliveries stores many deliveries in one statement, skipping any
// whose GUID is already stored, and returns the new rows' ids by GUID (a
// GUID missing from the map was a duplicate). GUIDs must be distinct within
// ds. The intake's group commit uses it: one round trip for a whole batch.
func (q *Queries) InsertDeliveries(ctx context.Context, ds []Delivery) (map[string]int64, error) {
	n := len(ds)
	guids, events, actions, repos := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	insts, payloads := make([]int64, n), make([][]byte, n)
	for i, d := range ds {
		guids[i], events[i], actions[i], repos[i] = noNUL(d.GUID), noNUL(d.Event), noNUL(d.Action), noNUL(d.Repository)
		insts[i], payloads[i] = d.InstallationID, d.Payload
	}
	rows, err := q.db.Query(ctx, `
		INSERT INTO webhook_deliveries (guid, event, action, installation_id, repository, payload)
		SELECT g, e, a, NULLIF(i, 0), r, p
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bytea[])
			WITH ORDINALITY AS d(g, e, a, i, r, p, n)
		ORDER BY n
		ON CONFLICT (guid) DO NOTHING
		RETURNING guid, id`, guids, events, actions, insts, repos, payloads)
	if err != nil {
		return nil, fmt.Errorf("insert %d deliveries: %w", n, err)
	}
	defer rows.Close()
	ids := make(map[string]int64, n)
	for rows.Next() {
		var guid string
		var id int64
		if err := rows.Scan(&guid, &id); err != nil {
			return nil, fmt.Errorf("insert %d deliveries: %w", n, err)
		}
		ids[guid] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("insert %d deliveries: %w", n, err)
	}
	return ids, nil
}
