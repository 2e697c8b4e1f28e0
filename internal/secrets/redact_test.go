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
	f.Fuzz(func(t *testing.T, text, v1, v2 string) {
		out := NewRedactor(map[string]string{"A": v1, "B": v2}).Redact(text)
		for _, segment := range strings.Split(out, Mask) {
			for _, v := range []string{v1, v2} {
				if v != "" && strings.Contains(segment, v) {
					t.Fatalf("Redact(%q) with %q, %q = %q: %q survives", text, v1, v2, out, v)
				}
			}
		}
	})
}
