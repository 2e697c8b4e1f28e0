package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// PullRequests tells whether a pull request is still open: the periodic
// pass asks GitHub about each pull request with a preview.
type PullRequests interface {
	// PullRequestOpen reports whether pull request number of owner/repo is
	// open; false (and no error) when it is closed or gone.
	PullRequestOpen(ctx context.Context, installation int64, owner, repo string, number int) (bool, error)
}

// SweepPreviews removes the previews of pull requests that are closed (or
// gone) on GitHub although Keystone missed the closed event (SPEC §14). A
// deleted head branch closes its pull request, so its preview goes too. A
// pull request GitHub cannot tell about now is left for the next pass.
func (e *Engine) SweepPreviews(ctx context.Context, prs PullRequests) error {
	open, err := e.store.OpenPreviews(ctx)
	if err != nil {
		return err
	}
	type key struct {
		owner, repo string
		number      int
	}
	asked := map[key]bool{}
	var errs []error
	for _, p := range open {
		k := key{p.Owner, p.Repo, p.PRNumber}
		if asked[k] {
			continue
		}
		asked[k] = true
		isOpen, err := prs.PullRequestOpen(ctx, p.InstallationID, p.Owner, p.Repo, p.PRNumber)
		if err != nil {
			errs = append(errs, fmt.Errorf("preview %s: %w", p.Key(), err))
			continue
		}
		if isOpen {
			continue
		}
		e.logger.InfoContext(ctx, "pull request closed while its event was missed: removing its previews",
			slog.String("repository", p.FullName()), slog.Int("pull_request", p.PRNumber))
		errs = append(errs, e.ClosePreviews(ctx, p.Owner, p.Repo, p.PRNumber, 0, "pull request closed"))
	}
	return errors.Join(errs...)
}

// PreviewSweeper returns the loop running SweepPreviews every interval
// until ctx ends.
func (e *Engine) PreviewSweeper(prs PullRequests, interval time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := e.SweepPreviews(ctx, prs); err != nil && ctx.Err() == nil {
				e.logger.WarnContext(ctx, "preview sweep", slog.String("error", err.Error()))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
}
