package deploy

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// storedLog writes chunks through a deployment log redacting secrets and
// returns the lines stored.
func storedLog(secrets map[string]string, chunks ...string) []string {
	st := &memLog{}
	l := newDeployLog(st, 1, newLogRedactor(secrets), DefaultLogLimit, slog.New(slog.DiscardHandler))
	for _, c := range chunks {
		_, _ = l.Write([]byte(c))
	}
	l.Close()
	return st.lines
}

// TestLogRedactionAttacks: output a hostile build or app prints to recover
// a secret from what Keystone stores (issue 12 item 5).
func TestLogRedactionAttacks(t *testing.T) {
	pad := strings.Repeat("x", maxLineBytes-4)
	cases := []struct {
		name    string
		secrets map[string]string
		chunks  []string
		leaks   []string // none of these may be stored
		keeps   []string // each must be stored as is
	}{
		{"overlapping secrets leave no tail", map[string]string{"A": "abcd1234", "B": "1234wxyz"},
			[]string{"abcd1234wxyz\n"}, []string{"wxyz", "abcd"}, []string{"[redacted]"}},
		{"a short line of a multi-line secret is not masked alone", map[string]string{"JSON": "{\n  \"key\": \"s3cr3t-value-123\"\n}"},
			[]string{"func main() {}\n", "}\n", "  \"key\": \"s3cr3t-value-123\"\n"}, []string{"s3cr3t"}, []string{"func main() {}", "}"}},
		{"a value straddling the 8 KiB cut", map[string]string{"TOKEN": "hunter2-secret"},
			[]string{pad, "hunter2-secret", "tail\n"}, []string{"hunt", "cret"}, nil},
		{"a value straddling the cut of a long line", map[string]string{"TOKEN": "hunter2-secret"},
			[]string{pad + "hunter2-secret" + "tail\n"}, []string{"hunt", "cret"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := storedLog(c.secrets, c.chunks...)
			all := strings.Join(lines, "\n")
			for _, l := range c.leaks {
				if strings.Contains(all, l) {
					t.Errorf("stored log holds %q:\n%q", l, shorten(lines))
				}
			}
			for _, k := range c.keeps {
				found := false
				for _, l := range lines {
					found = found || l == k
				}
				if !found {
					t.Errorf("stored log lacks the line %q:\n%q", k, shorten(lines))
				}
			}
		})
	}
}

func shorten(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > 40 {
			l = "…" + l[len(l)-40:]
		}
		out[i] = l
	}
	return out
}

// TestGitErrorsHoldNoTokenInAnyForm: whatever git prints about its request
// (here the header itself, as a trace or a hostile helper would), the error
// holds neither the token nor its base64 basic-auth form.
func TestGitErrorsHoldNoTokenInAnyForm(t *testing.T) {
	s := NewSources(t.TempDir())
	token := "ghs_exampletoken1234567890"
	_, err := s.git(t.Context(), "", token, nil,
		"-c", "alias.leak=!git config --get http.extraHeader >&2; exit 1", "leak")
	var ge *GitError
	if !errors.As(err, &ge) {
		t.Fatalf("git: %v, want a GitError", err)
	}
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
	if !strings.Contains(ge.Stderr, "Authorization") {
		t.Fatalf("the test did not make git print its header: %q", ge.Stderr)
	}
	for _, form := range []string{token, basic} {
		if strings.Contains(ge.Stderr, form) || strings.Contains(err.Error(), form) {
			t.Errorf("git's error holds %q: %q", form, ge.Stderr)
		}
	}
}

// TestDeployErrorsAreRedacted: an error's text becomes a description (a
// commit status on GitHub) and River's record: both redacted.
func TestDeployErrorsAreRedacted(t *testing.T) {
	r := newLogRedactor(map[string]string{"TOKEN": "hunter2-secret"})
	err := redactedError{msg: r.Redact("start: bad value hunter2-secret"), err: errors.New("start: bad value hunter2-secret")}
	if got := r.Redact(errorSummary(err)); strings.Contains(got, "hunter2") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("summary %q, error %q", got, err.Error())
	}
}
