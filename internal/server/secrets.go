package server

import (
	"context"
	"log/slog"
	"sort"
	"strings"

	"github.com/keystone-app/keystone/internal/secrets"
)

// addSecrets builds the secrets service over the configured keys (p.secrets:
// deploy.Secrets for the engine, Set/Unset/List for the status page) and,
// once serving, warns about secrets under keys that are no longer configured.
func (p *parts) addSecrets() error {
	p.secrets = secrets.New(p.store, p.keys)
	p.loops = append(p.loops, loop{name: "secret keys check", run: p.checkSecretKeys})
	return nil
}

// checkSecretKeys logs, once, the key ids that secrets use but
// KEYSTONE_ENCRYPTION_KEYS lacks: those apps cannot be deployed until the key
// is put back. It does not stop Keystone, which serves every other app.
func (p *parts) checkSecretKeys(ctx context.Context) error {
	unknown, err := p.secrets.UnknownKeys(ctx)
	if err != nil {
		return err
	}
	if len(unknown) == 0 {
		return nil
	}
	ids := make([]string, 0, len(unknown))
	total := 0
	for id, n := range unknown {
		ids = append(ids, id)
		total += n
	}
	sort.Strings(ids)
	p.logger.Error("secrets are encrypted under keys missing from KEYSTONE_ENCRYPTION_KEYS: their apps cannot deploy",
		slog.String("key_ids", strings.Join(ids, ",")), slog.Int("secrets", total))
	return nil
}
