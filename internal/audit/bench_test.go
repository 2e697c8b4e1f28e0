package audit

import "testing"

// BenchmarkHash: what verify spends per event (canonicalising the stored
// details and hashing). Run: go test -run '^$' -bench Hash ./internal/audit
func BenchmarkHash(b *testing.B) {
	r := Record{ID: 123456, At: at, Actor: "alice", Action: "deployment.requested", Target: "acme/web/api",
		Details:  []byte(`{"sha": "0123456789abcdef0123456789abcdef01234567", "kind": "update", "trigger": "push", "n": 12}`),
		PrevHash: Genesis()}
	for b.Loop() {
		if _, err := Hash(r); err != nil {
			b.Fatal(err)
		}
	}
}
