package queue

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/store"
)

// DeliveryStore is what the record-only workers need from the store.
type DeliveryStore interface {
	Delivery(ctx context.Context, id int64) (store.Delivery, error)
	MarkDeliveryProcessed(ctx context.Context, id int64) error
}

// RecordCommentWorker is the comment worker until comment commands exist.
type RecordCommentWorker struct {
	river.WorkerDefaults[CommentArgs]
	Store  DeliveryStore
	Logger *slog.Logger
}

// Timeout is CommentTimeout.
func (w *RecordCommentWorker) Timeout(*river.Job[CommentArgs]) time.Duration { return CommentTimeout }

// Work marks the comment delivery processed.
func (w *RecordCommentWorker) Work(ctx context.Context, job *river.Job[CommentArgs]) error {
	return recordDelivery(ctx, w.Store, w.Logger, job.ID, job.Args.DeliveryID)
}

func recordDelivery(ctx context.Context, st DeliveryStore, logger *slog.Logger, jobID, deliveryID int64) error {
	d, err := st.Delivery(ctx, deliveryID)
	if err != nil {
		return fmt.Errorf("job %d: %w", jobID, err)
	}
	if err := st.MarkDeliveryProcessed(ctx, d.ID); err != nil {
		return fmt.Errorf("job %d: %w", jobID, err)
	}
	logger.InfoContext(ctx, "delivery recorded", slog.String("delivery_id", d.GUID),
		slog.Int64("job_id", jobID), slog.String("event", d.Event), slog.String("repository", d.Repository))
	return nil
}
