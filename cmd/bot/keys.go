package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/setup"
)

const keysUsage = "keys generate | rotate"

// keysCommand is `keystone keys generate|rotate`.
func keysCommand(ctx context.Context, e env) error {
	sub, _, err := subcommand(e, "keys", keysUsage, map[string]int{"generate": 0, "rotate": 0})
	if err != nil {
		return err
	}
	if sub == "generate" {
		line, err := secrets.GenerateKey(rand.Reader, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, line)
		fmt.Fprintln(e.stderr, "keystone: put it first in KEYSTONE_ENCRYPTION_KEYS (keep the old keys after it), restart Keystone, then run keystone keys rotate")
		return nil
	}
	svc, st, err := openSecrets(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	// The GitHub App stored by setup is sealed under the keys too.
	moved, err := setup.Reseal(ctx, st, svc.Keys())
	if err != nil {
		return err
	}
	if moved {
		fmt.Fprintln(e.stdout, "re-encrypted the stored GitHub App credentials")
	}
	res, err := svc.Rotate(ctx, cliActor(e))
	fmt.Fprintf(e.stdout, "re-encrypted %d secrets under key %s\n", res.Rotated, res.KeyID)
	for _, f := range res.Failed {
		fmt.Fprintf(e.stderr, "keystone: not re-encrypted: %s\n", f)
	}
	if len(res.Unused) > 0 {
		fmt.Fprintf(e.stdout, "no secret uses %s any more: it can be removed from KEYSTONE_ENCRYPTION_KEYS\n", strings.Join(res.Unused, ", "))
	}
	return err
}
