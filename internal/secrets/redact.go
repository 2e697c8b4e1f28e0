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
	maxLen int
}

// MaxLen is the length of the longest value masked: a text cut into pieces
// must carry that many bytes less one across each cut to be redacted whole
// (RedactCut).
func (r *Redactor) MaxLen() int {
	if r == nil {
		return 0
	}
	return r.maxLen
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
	maxLen := 0
	for _, v := range values {
		maxLen = max(maxLen, len(v))
	}
	return &Redactor{values: values, maxLen: maxLen}
}

// Redact returns s with every byte that belongs to an occurrence of a secret
// value replaced: each maximal run of such bytes becomes one Mask.
func (r *Redactor) Redact(s string) string {
	out, _ := r.RedactCut(s, len(s))
	return out
}

// RedactCut redacts the first n bytes of s, the text before a cut, and
// returns them redacted with how many bytes of s they were: n, or more when
// an occurrence of a value crosses the cut, so that no value is ever split in
// two unmasked halves. The caller keeps s[used:] for the next piece, and
// passes at least MaxLen()-1 bytes after the cut when more text may follow.
func (r *Redactor) RedactCut(s string, n int) (redacted string, used int) {
	n = min(max(n, 0), len(s))
	covered := r.cover(s)
	if covered == nil {
		return s[:n], n
	}
	for n > 0 && n < len(s) && covered[n-1] && covered[n] {
		n++
	}
	var b strings.Builder
	b.Grow(n)
	for i := 0; i < n; {
		if !covered[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(Mask)
		for i < n && covered[i] {
			i++
		}
	}
	return b.String(), n
}

// cover marks the bytes of s that belong to an occurrence of a value; nil
// when none does.
func (r *Redactor) cover(s string) []bool {
	if r == nil || len(r.values) == 0 || s == "" {
		return nil
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
	return covered
}
