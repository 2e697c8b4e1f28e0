package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/store"
)

// openDatabase loads the configuration and opens the migrated store, for the
// administration commands.
func openDatabase(ctx context.Context, e env) (config.Config, *store.Store, error) {
	cfg, err := loadConfig(e)
	if err != nil {
		return config.Config{}, nil, err
	}
	if cfg.DatabaseURL == "" {
		return config.Config{}, nil, errors.New("DATABASE_URL is not set")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return config.Config{}, nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return config.Config{}, nil, err
	}
	return cfg, st, nil
}

// openSecrets opens the store and the secrets service over the configured keys.
func openSecrets(ctx context.Context, e env) (*secrets.Service, *store.Store, error) {
	cfg, st, err := openDatabase(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	keys, err := secrets.NewKeyring(cfg.EncryptionKeys)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return secrets.New(st, keys), st, nil
}

// cliActor names who runs a command, for the audit trail: "cli:" and the
// login that ran sudo, else the OS user.
func cliActor(e env) string {
	if u, ok := e.lookup("SUDO_USER"); ok && u != "" {
		return "cli:" + u
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if u, ok := e.lookup("USER"); ok && u != "" {
		return "cli:" + u
	}
	return "cli:uid-" + strconv.Itoa(os.Getuid())
}

// subcommand splits "GROUP SUB ARGS…" and checks the argument count.
func subcommand(e env, group, usage string, subs map[string]int) (string, []string, error) {
	if len(e.args) == 0 {
		return "", nil, usageError{fmt.Sprintf("%s needs a subcommand: keystone %s", group, usage)}
	}
	want, ok := subs[e.args[0]]
	if !ok {
		return "", nil, usageError{fmt.Sprintf("unknown %s subcommand %q: keystone %s", group, e.args[0], usage)}
	}
	if len(e.args)-1 != want {
		return "", nil, usageError{fmt.Sprintf("%s %s takes %d arguments, got %d: keystone %s", group, e.args[0], want, len(e.args)-1, usage)}
	}
	return e.args[0], e.args[1:], nil
}
