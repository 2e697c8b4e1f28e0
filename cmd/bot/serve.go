package main

import (
	"context"

	"github.com/keystone-app/keystone/internal/server"
)

func serve(ctx context.Context, e env) error {
	if err := noArgs(e, "serve"); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	return server.Run(ctx, cfg, newLogger(e.stdout))
}
