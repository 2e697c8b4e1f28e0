package users

import (
	"testing"
)

// TestDecoyHashIsWellFormedAndMatchesNothing: the decoy parses with the
// directory's parameters, so checking against it costs a real check, and no
// password matches it.
func TestDecoyHashIsWellFormedAndMatchesNothing(t *testing.T) {
	p := Params{MemoryKiB: 64, Time: 1, Threads: 1}
	decoy := decoyHash(p)
	got, _, key, err := parseHash(decoy)
	if err != nil || got != p || len(key) != keyLen {
		t.Fatalf("decoy %q parses to %+v, %d-byte key, %v", decoy, got, len(key), err)
	}
	for _, pw := range []string{"", "decoy password that matches nothing", "hunter2"} {
		if CheckPassword(decoy, pw) {
			t.Fatalf("password %q matches the decoy", pw)
		}
	}
	if decoyHash(p) == decoy {
		t.Fatal("two decoys are equal: the key must be random")
	}
}
