package main

import (
	"context"
	"fmt"

	"github.com/keystone-app/keystone/internal/audit"
)

const auditUsage = "audit verify"

// auditCommand is `keystone audit verify`: it walks the hash chain and fails
// naming the first event that does not fit.
func auditCommand(ctx context.Context, e env) error {
	if _, _, err := subcommand(e, "audit", auditUsage, map[string]int{"verify": 0}); err != nil {
		return err
	}
	_, st, err := openDatabase(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := audit.Verify(ctx, st)
	if err != nil {
		fmt.Fprintf(e.stdout, "checked %d audit events before the first bad one\n", rep.Checked)
		return fmt.Errorf("audit trail broken: %w", err)
	}
	fmt.Fprintf(e.stdout, "audit trail intact: %d events checked", rep.Checked)
	if rep.Unchained > 0 {
		fmt.Fprintf(e.stdout, " (%d older events from before the chain began are not covered)", rep.Unchained)
	}
	if rep.LastID > 0 {
		fmt.Fprintf(e.stdout, "; last event %d, hash %x", rep.LastID, rep.LastHash)
	}
	fmt.Fprintln(e.stdout)
	return nil
}
