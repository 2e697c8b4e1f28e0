//go:build faults

package faults_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestMain runs the scenarios, then prints the report table and, when
// KEYSTONE_FAULTS_REPORT names a file, writes it there as markdown.
func TestMain(m *testing.M) {
	code := storetest.Run(m)
	if table := report.markdown(); table != "" {
		fmt.Println("\nfault suite report:\n" + table)
		if path := os.Getenv("KEYSTONE_FAULTS_REPORT"); path != "" {
			if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "write %s: %v\n", path, err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// row is one scenario's line of the report.
type row struct {
	Scenario         string
	Faults           string
	Sent, Stored     int // deliveries sent to Keystone / stored by it
	Jobs             int // jobs run to completion
	Requests, Failed int // requests through the router / failed
	Pending          int // statuses still pending, deployments or jobs unfinished
	Orphaned         string
	Lost             int // acknowledged deliveries not stored or not processed
	Passed           bool
}

type table struct {
	mu   sync.Mutex
	rows []row
}

// The one piece of package state: TestMain prints what the tests added.
var report table

func (tb *table) add(r row) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.rows = append(tb.rows, r)
}

func (tb *table) markdown() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| Scenario | Faults injected | Deliveries sent/stored | Jobs run | Requests sent/failed (router) | Pending at end | Orphaned containers/routes/ports | Data lost | Result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range tb.rows {
		result := "pass"
		if !r.Passed {
			result = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d/%d | %d | %d/%d | %d | %s | %d | %s |\n", r.Scenario, r.Faults,
			r.Sent, r.Stored, r.Jobs, r.Requests, r.Failed, r.Pending, r.Orphaned, r.Lost, result)
	}
	return b.String()
}
