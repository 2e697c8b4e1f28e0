package secrets

import (
	"sort"
	"strings"
)

// Mask replaces a secret value in redacted text.
const Mask = "[redacted]"

// minLineFragment is the shortest line of a multi-line secret that is
// redacted on its own (output is stored line by line, so a PEM key printed by
// an app arrives one line at a time); shorter lines would mask common text.
const minLineFragment = 8

// Redactor removes secret values from text. It is safe for concurrent use.
type Redactor struct {
	values []string
}

// NewRedactor returns a Redactor for the values of secrets (as AppSecrets
// returns them). Every occurrence of a value is masked, also when values
// overlap each other or themselves; each line of at least 8 bytes of a
// multi-line value is masked on its own too. Empty values are ignored.
func NewRedactor(secrets map[string]string) *Redactor {
	seen := map[string]bool{}
	var values []string
	add := func(v string) {
		if v != "" && !seen[v] {
			seen[v] = true
			values = append(values, v)
		}
	}
	for _, v := range secrets {
		add(v)
		if strings.Contains(v, "\n") {
			for _, line := range strings.Split(v, "\n") {
				if line = strings.TrimSpace(line); len(line) >= minLineFragment {
					add(line)
				}
			}
		}
	}
	sort.Strings(values) // deterministic work order; the result does not depend on it
	return &Redactor{values: values}
}

// Redact returns s with every byte that belongs to an occurrence of a secret
// value replaced: each maximal run of such bytes becomes one Mask.
func (r *Redactor) Redact(s string) string {
	if r == nil || len(r.values) == 0 || s == "" {
		return s
	}
	var covered []bool // allocated on the first match only
	for _, v := range r.values {
		for from := 0; from+len(v) <= len(s); {
			i := strings.Index(s[from:], v)
			if i < 0 {
				break
			}
			if covered == nil {
				covered = make([]bool, len(s))
			}
			start := from + i
			for j := start; j < start+len(v); j++ {
				covered[j] = true
			}
			from = start + 1 // overlapping occurrences of v itself
		}
	}
	if covered == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !covered[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(Mask)
		for i < len(s) && covered[i] {
			i++
		}
	}
	return b.String()
}
