// Command keystone is the Keystone deploy bot: `keystone serve` runs it, and
// the other subcommands administer it (SPEC §10).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(run(ctx))
	stop()
	os.Exit(code)
}
