package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/keystone-app/keystone/internal/audit"
)

const auditUsage = "audit verify [--anchor ID:HASH]… | audit head"

// auditCommand is `keystone audit verify`, which walks the hash chain and
// fails naming the first event that does not fit (and, with --anchor, checks
// heads exported earlier), and `keystone audit head`, which prints the
// chain's head as ID:HASH to keep outside the database.
func auditCommand(ctx context.Context, e env) error {
	if len(e.args) == 0 {
		return usageError{"audit needs a subcommand: keystone " + auditUsage}
	}
	var anchors []audit.Anchor
	switch sub, rest := e.args[0], e.args[1:]; sub {
	case "head":
		if len(rest) != 0 {
			return usageError{"audit head takes no arguments: keystone " + auditUsage}
		}
	case "verify":
		for i := 0; i < len(rest); i++ {
			arg := rest[i]
			if arg == "--anchor" && i+1 < len(rest) {
				i++
				arg = "--anchor=" + rest[i]
			}
			value, ok := strings.CutPrefix(arg, "--anchor=")
			a, err := parseAnchor(value)
			if !ok || err != nil {
				return usageError{fmt.Sprintf("%q is not --anchor ID:HASH (as `keystone audit head` prints): keystone %s", arg, auditUsage)}
			}
			anchors = append(anchors, a)
		}
	default:
		return usageError{fmt.Sprintf("unknown audit subcommand %q: keystone %s", sub, auditUsage)}
	}
	_, st, err := openDatabase(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	if e.args[0] == "head" {
		id, hash, err := st.AuditHead(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d:%x\n", id, hash)
		return nil
	}
	rep, err := audit.Verify(ctx, st, anchors...)
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
	if len(anchors) > 0 {
		fmt.Fprintf(e.stdout, "; %d anchors match", len(anchors))
	}
	fmt.Fprintln(e.stdout)
	return nil
}

// parseAnchor reads ID:HASH (hex SHA-256).
func parseAnchor(s string) (audit.Anchor, error) {
	idText, hashText, ok := strings.Cut(s, ":")
	id, err := strconv.ParseInt(idText, 10, 64)
	if !ok || err != nil || id <= 0 {
		return audit.Anchor{}, fmt.Errorf("bad anchor id in %q", s)
	}
	hash, err := hex.DecodeString(hashText)
	if err != nil || len(hash) != audit.HashSize {
		return audit.Anchor{}, fmt.Errorf("bad anchor hash in %q", s)
	}
	return audit.Anchor{ID: id, Hash: hash}, nil
}
