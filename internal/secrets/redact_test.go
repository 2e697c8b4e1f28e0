package secrets

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	pem := "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END KEY-----\n"
	cases := []struct {
		name    string
		secrets map[string]string
		in      string
		want    string
	}{
		{"no secrets", nil, "hello s3cret", "hello s3cret"},
		{"no match", map[string]string{"A": "s3cret"}, "hello world", "hello world"},
		{"once", map[string]string{"A": "s3cret"}, "password=s3cret;", "password=" + Mask + ";"},
		{"several times", map[string]string{"A": "s3cret"}, "s3cret s3cret-s3cret", Mask + " " + Mask + "-" + Mask},
		{"adjacent", map[string]string{"A": "ab"}, "xababx", "x" + Mask + "x"},
		{"self-overlapping", map[string]string{"A": "aa"}, "baaab", "b" + Mask + "b"},
		{"overlapping values", map[string]string{"A": "abc", "B": "bcd"}, "xabcdx", "x" + Mask + "x"},
		{"one inside another", map[string]string{"A": "token-123", "B": "123"}, "token-123 and 123", Mask + " and " + Mask},
		{"two secrets", map[string]string{"A": "alpha", "B": "omega"}, "alpha to omega", Mask + " to " + Mask},
		{"same value twice", map[string]string{"A": "dup", "B": "dup"}, "dup", Mask},
		{"empty value ignored", map[string]string{"A": ""}, "text", "text"},
		{"unicode", map[string]string{"A": "pässwörd☃"}, "pw: pässwörd☃!", "pw: " + Mask + "!"},
		{"whole multi-line value", map[string]string{"K": pem}, "key:\n" + pem + "end", "key:\n" + Mask + "end"},
		{"line of a multi-line value", map[string]string{"K": pem}, "  KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==", "  " + Mask},
		{"header line of a multi-line value", map[string]string{"K": pem}, "-----END KEY-----", Mask},
		{"short line of a multi-line value kept", map[string]string{"K": "ab\nlong-enough-line"}, "ab long-enough-line", "ab " + Mask},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := NewRedactor(c.secrets).Redact(c.in); got != c.want {
				t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
	var none *Redactor
	if got := none.Redact("x"); got != "x" {
		t.Errorf("nil Redactor changed text: %q", got)
	}
}

// FuzzRedact: whatever the text and values, no value survives in the
// unmasked text between masks.
func FuzzRedact(f *testing.F) {
	f.Add("xabcdx abc", "abc", "bcd")
	f.Add("aaaa", "aa", "a")
	f.Add("[redacted] red", "red", "act")
	f.Add("xxhunter2yy", "hunter2", "")
	f.Fuzz(func(t *testing.T, text, v1, v2 string) {
		r := NewRedactor(map[string]string{"A": v1, "B": v2})
		out := r.Redact(text)
		survives(t, out, v1, v2)
		// Cut into pieces of 3 bytes the way a log stores a long line (with
		// MaxLen-1 bytes of look-ahead): no value survives across a cut.
		var pieces strings.Builder
		rest := text
		for len(rest) > 3+r.MaxLen() {
			piece, used := r.RedactCut(rest, 3)
			if used < 3 {
				t.Fatalf("RedactCut used %d bytes, fewer than the cut", used)
			}
			pieces.WriteString(piece)
			rest = rest[used:]
		}
		pieces.WriteString(r.Redact(rest))
		survives(t, pieces.String(), v1, v2)
	})
}

func survives(t *testing.T, out, v1, v2 string) {
	t.Helper()
	for _, segment := range strings.Split(out, Mask) {
		for _, v := range []string{v1, v2} {
			if v != "" && strings.Contains(segment, v) {
				t.Fatalf("%q with %q, %q: %q survives", out, v1, v2, v)
			}
		}
	}
}

// TestRedactCut: a value crossing the cut moves the cut to its end.
func TestRedactCut(t *testing.T) {
	r := NewRedactor(map[string]string{"A": "hunter2"})
	cases := []struct {
		in       string
		n        int
		want     string
		wantUsed int
	}{
		{"abcdefgh", 4, "abcd", 4},
		{"abhunter2cd", 4, "ab" + Mask, 9},
		{"abhunter2cd", 2, "ab", 2},
		{"abhunter2cd", 9, "ab" + Mask, 9},
		{"abhunter2cd", 99, "ab" + Mask + "cd", 11},
	}
	for _, c := range cases {
		if got, used := r.RedactCut(c.in, c.n); got != c.want || used != c.wantUsed {
			t.Errorf("RedactCut(%q, %d) = %q, %d; want %q, %d", c.in, c.n, got, used, c.want, c.wantUsed)
		}
	}
}
