package secrets

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkRedact: one 200-byte log line against an app's 20 secrets, the
// cost added to each stored line. Run: go test -run '^$' -bench Redact ./internal/secrets
func BenchmarkRedact(b *testing.B) {
	values := map[string]string{}
	for i := range 20 {
		values[fmt.Sprintf("KEY_%d", i)] = fmt.Sprintf("secret-value-%02d-%s", i, strings.Repeat("x", 16))
	}
	r := NewRedactor(values)
	clean := strings.Repeat("GET /healthz 200 in 3ms; ", 8)
	leaky := clean[:100] + values["KEY_7"] + clean[100:]
	for name, line := range map[string]string{"clean": clean, "leaky": leaky} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				_ = r.Redact(line)
			}
		})
	}
}
