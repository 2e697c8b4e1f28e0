package keystoneyml

import (
	"time"
)

// switchValue reads the keys of the zero-downtime switch (SPEC §13):
// drain_timeout, from MinDrainTimeout to MaxDrainTimeout, and keep_previous,
// 0 (off) or from 1s to MaxKeepPrevious.
func (p *parser) switchValue(a *App, e entry) {
	v, ok := p.scalar(e, "a duration like 30s")
	if !ok {
		return
	}
	d, err := time.ParseDuration(v.Value)
	if v.ShortTag() != "!!str" || err != nil {
		p.add(v.Line, "%s must be a duration like 30s or 10m, got %s", e.key, describe(v))
		return
	}
	switch e.key {
	case "drain_timeout":
		if d < MinDrainTimeout || d > MaxDrainTimeout {
			p.add(v.Line, "drain_timeout must be from %s to %s, got %s", MinDrainTimeout, MaxDrainTimeout, clipValue(v.Value))
			return
		}
		a.DrainTimeout = d
	case "keep_previous":
		if d != 0 && (d < time.Second || d > MaxKeepPrevious) {
			p.add(v.Line, "keep_previous must be 0s (off) or from 1s to %s, got %s", MaxKeepPrevious, clipValue(v.Value))
			return
		}
		a.KeepPrevious = d
	}
}

// keepWithinCap reports keep_previous when the kept container and the
// serving one together would ask for more memory than the operator's cap
// KEYSTONE_MAX_MEMORY: a kept container counts against it.
func (p *parser) keepWithinCap(a App, entries []entry) {
	if a.KeepPrevious == 0 || p.limits.Memory <= 0 || 2*a.Memory <= p.limits.Memory {
		return
	}
	for _, e := range entries {
		if e.key == "keep_previous" {
			p.add(lineOf(e.value, e.line), "keep_previous keeps a second container: 2 × memory %s is above the operator's cap KEYSTONE_MAX_MEMORY=%s (lower memory or drop keep_previous)",
				FormatMemory(a.Memory), FormatMemory(p.limits.Memory))
		}
	}
}
