package web

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/keystone-app/keystone/internal/store"
)

// at formats t relative to now and absolutely, in UTC.
func at(now, t time.Time) Time {
	return Time{ISO: t.UTC().Format(time.RFC3339), Abs: t.UTC().Format("2006-01-02 15:04:05 UTC"), Rel: relative(now, t)}
}

func atPtr(now time.Time, t *time.Time) *Time {
	if t == nil {
		return nil
	}
	v := at(now, *t)
	return &v
}

// relative says how long ago (or how far ahead) t is, in the largest unit.
func relative(now, t time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	if d < 10*time.Second {
		return "just now"
	}
	var n int
	var unit string
	switch {
	case d < time.Minute:
		n, unit = int(d/time.Second), "second"
	case d < time.Hour:
		n, unit = int(d/time.Minute), "minute"
	case d < 24*time.Hour:
		n, unit = int(d/time.Hour), "hour"
	case d < 30*24*time.Hour:
		n, unit = int(d/(24*time.Hour)), "day"
	case d < 365*24*time.Hour:
		n, unit = int(d/(30*24*time.Hour)), "month"
	default:
		n, unit = int(d/(365*24*time.Hour)), "year"
	}
	if n != 1 {
		unit += "s"
	}
	if future {
		return fmt.Sprintf("in %d %s", n, unit)
	}
	return fmt.Sprintf("%d %s ago", n, unit)
}

// duration formats d for people: 0.4s, 12.3s, 4m 05s, 1h 02m.
func duration(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh %02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// deploymentDuration is how long a deployment ran, or has been running.
func deploymentDuration(now time.Time, d store.Deployment) string {
	if d.StartedAt == nil {
		return ""
	}
	end := now
	if d.FinishedAt != nil {
		end = *d.FinishedAt
	}
	return duration(end.Sub(*d.StartedAt))
}

// commit links a SHA of owner/repo to GitHub.
func (h *Handler) commit(owner, repo, sha string) Commit {
	short := sha
	if len(short) > 7 {
		short = short[:7]
	}
	return Commit{Short: short, Full: sha,
		URL: h.opts.GitHubWebURL + "/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/commit/" + url.PathEscape(sha)}
}

func (h *Handler) repoURL(owner, repo string) string {
	return h.opts.GitHubWebURL + "/" + url.PathEscape(owner) + "/" + url.PathEscape(repo)
}

// appURL is where the app is served, or "" when nothing serves.
func (h *Handler) appURL(a store.App) string {
	if a.CurrentDeploymentID == 0 {
		return ""
	}
	return h.opts.Apps.URL(a)
}

// stateBadge names a deployment state for people and picks its colour.
func stateBadge(state string) Badge {
	switch state {
	case store.StateQueued:
		return Badge{"queued", "muted"}
	case store.StateRunning:
		return Badge{"running", "run"}
	case store.StateSucceeded:
		return Badge{"succeeded", "ok"}
	case store.StateFailed:
		return Badge{"failed", "bad"}
	case store.StateErrored:
		return Badge{"error", "bad"}
	case store.StateSuperseded:
		return Badge{"superseded", "muted"}
	}
	return Badge{state, "muted"}
}

// health describes a deployment's health check result.
func health(d store.Deployment) string {
	switch {
	case d.HealthError != "":
		if d.HealthStatus > 0 {
			return fmt.Sprintf("unhealthy (HTTP %d): %s", d.HealthStatus, d.HealthError)
		}
		return "unhealthy: " + d.HealthError
	case d.HealthStatus > 0 && d.HealthMS > 0:
		return fmt.Sprintf("healthy (HTTP %d after %s)", d.HealthStatus, duration(time.Duration(d.HealthMS)*time.Millisecond))
	case d.HealthStatus > 0:
		return fmt.Sprintf("HTTP %d", d.HealthStatus)
	case d.HealthMS > 0:
		return fmt.Sprintf("healthy (running after %s)", duration(time.Duration(d.HealthMS)*time.Millisecond))
	}
	return ""
}

// switched describes what a switch through the router did to the old
// version's in-flight requests; "" when the deployment switched none.
func switched(d store.Deployment) string {
	if d.RequestsDrained == nil || d.RequestsFailed == nil {
		return ""
	}
	return fmt.Sprintf("no downtime: %s drained, %d failed", plural(*d.RequestsDrained, "in-flight request"), *d.RequestsFailed)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// deploymentRow formats a deployment of app for lists.
func (h *Handler) deploymentRow(now time.Time, a store.App, d store.Deployment) DeploymentRow {
	return DeploymentRow{
		ID: d.ID, Path: deploymentPath(d.ID), Number: Link{deploymentPath(d.ID), fmt.Sprintf("#%d", d.ID)}, Kind: d.Kind, Commit: h.commit(a.Owner, a.Repo, d.SHA),
		Actor: d.Actor, Trigger: d.Trigger, State: stateBadge(d.State), Description: d.Description,
		Health: health(d), Switch: switched(d), Duration: deploymentDuration(now, d), Queued: at(now, d.QueuedAt),
	}
}
