package server

import (
	"github.com/keystone-app/keystone/internal/users"
	"github.com/keystone-app/keystone/internal/web"
)

// addWeb mounts the status page (SPEC §9) and its housekeeping loop, which
// also ends live log streams when Keystone stops. It needs addSecrets
// first. The redeploy/rollback requester and Docker's container state are
// left nil until their capabilities are wired here: the page then says they
// are not available.
func (p *parts) addWeb() error {
	accounts, err := users.NewDirectory(p.store, users.DefaultParams())
	if err != nil {
		return err
	}
	h, err := web.New(web.Options{
		Store: p.store, Accounts: accounts, Secrets: p.secrets, Logger: p.logger,
		PublicURL: p.cfg.PublicURL, GitHubWebURL: p.cfg.GitHubWebURL, GitHubAPIURL: p.cfg.GitHubAPIURL,
		AppHost: p.cfg.AppHost, OAuthClientID: p.cfg.OAuthClientID, OAuthClientSecret: p.cfg.OAuthClientSecret,
	})
	if err != nil {
		return err
	}
	p.mounts = append(p.mounts, h.Mount)
	p.loops = append(p.loops, loop{name: "status page", run: h.Run})
	return nil
}
