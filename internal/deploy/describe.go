package deploy

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Every text a user reads about a deployment (the commit status description
// of SPEC §7, stored on the deployment) is made here.

// MaxDescription is GitHub's limit on a commit status description, in characters.
const MaxDescription = 140

// clipDescription cuts s to MaxDescription runes, ending with "…" when cut.
func clipDescription(s string) string {
	s = strings.ToValidUTF8(strings.Join(strings.Fields(s), " "), "?")
	if utf8.RuneCountInString(s) <= MaxDescription {
		return s
	}
	r := []rune(s)
	return string(r[:MaxDescription-1]) + "…"
}

// shortSHA is the 7-character form of a SHA.
func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

const descQueued = "Queued"

func descFetching(sha string) string { return "Fetching " + shortSHA(sha) }
func descBuilding(sha string) string { return "Building " + shortSHA(sha) }
func descStarting(sha string) string { return "Starting " + shortSHA(sha) }

const descChecking = "Checking health"

// seconds formats a duration as "12.3s", or "2m05s" from two minutes on.
func seconds(d time.Duration) string {
	if d >= 2*time.Minute {
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// wholeSeconds formats a timeout the way configs write it: "30s", "2m", "1m30s".
func wholeSeconds(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func descDeployed(total time.Duration, h HealthResult) string {
	if h.Check == "" {
		return clipDescription(fmt.Sprintf("Deployed in %s · running after %s", seconds(total), seconds(h.After)))
	}
	return clipDescription(fmt.Sprintf("Deployed in %s · healthy (%s %d)", seconds(total), h.Check, h.Status))
}

// descHealthFailed says why the new container was not healthy and what
// serves now: prevSHA ("" when nothing served before) and whether it could
// be brought back.
func descHealthFailed(h HealthResult, prevSHA string, restored bool) string {
	s := "Health check failed: " + h.Problem()
	switch {
	case prevSHA == "":
	case restored:
		s += "; " + shortSHA(prevSHA) + " still serving"
	default:
		s += "; " + shortSHA(prevSHA) + " could not be restarted"
	}
	return clipDescription(s)
}

func descBuildFailed(reason string) string { return clipDescription("Build failed: " + reason) }

func descInvalidConfig(problem string) string {
	return clipDescription("Invalid .keystone.yml: " + problem)
}

// descHostRefused names a domains: host the app may not have, and why.
func descHostRefused(host, why string) string {
	return clipDescription("Invalid .keystone.yml: domains: " + host + " " + why)
}

func descSuperseded(sha string) string { return "Not deployed: superseded by " + shortSHA(sha) }

func descLocked(app, by, reason string) string {
	s := fmt.Sprintf("Not deployed: %s is locked by @%s", app, strings.TrimPrefix(by, "@"))
	if reason != "" {
		s += " (" + reason + ")"
	}
	return clipDescription(s)
}

// descNotDeclared refuses an app that a push to branch may not create or
// re-point, naming who can allow it.
func descNotDeclared(app, branch, defaultBranch string) string {
	return clipDescription(fmt.Sprintf("Not deployed: %s is not declared for %s on %s; add it to %s's .keystone.yml, or an admin runs keystone app allow",
		app, branch, defaultBranch, defaultBranch))
}

const descRemoved = "Not deployed: the app is no longer in .keystone.yml"

// descErrored is Keystone's or the infrastructure's failure, naming what
// serves now.
func descErrored(reason, servingSHA string) string {
	s := "Deploy errored: " + reason
	if servingSHA != "" {
		s += "; " + shortSHA(servingSHA) + " still serving"
	}
	return clipDescription(s)
}

func descFetchFailed(reason string) string { return clipDescription("Fetch failed: " + reason) }
