//go:build faults

package faults_test

import "os"

// quick reports whether the suite runs its reduced set
// (KEYSTONE_FAULTS_QUICK=1, as `make test` does): fewer bad bodies,
// commands and files, the same assertions.
func quick() bool { return os.Getenv("KEYSTONE_FAULTS_QUICK") == "1" }

// scaled is full, or reduced in the quick set.
func scaled(full, reduced int) int {
	if quick() {
		return reduced
	}
	return full
}
