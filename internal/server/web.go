package server

import (
	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/users"
	"github.com/keystone-app/keystone/internal/web"
)

// addWeb mounts the status page (SPEC §9) and its housekeeping loop, which
// also ends live log streams when Keystone stops. It needs addSecrets and
// addDeploy first: redeploy and rollback go through the deploy engine's
// requester, and container state comes from the engine.
func (p *parts) addWeb() error {
	accounts, err := users.NewDirectory(p.store, users.DefaultParams())
	if err != nil {
		return err
	}
	h, err := web.New(web.Options{
		Store: p.store, Accounts: accounts, Secrets: p.secrets, Logger: p.logger,
		PublicURL: p.cfg.PublicURL, GitHubWebURL: p.cfg.GitHubWebURL, GitHubAPIURL: p.cfg.GitHubAPIURL,
		Apps: p.appURLs(), OAuthClientID: p.cfg.OAuthClientID, OAuthClientSecret: p.cfg.OAuthClientSecret,
		OAuth:     p.creds.OAuth,
		Requester: p.requester, Containers: containers{p.engine}, Certificates: p.certs,
	})
	if err != nil {
		return err
	}
	p.mounts = append(p.mounts, h.Mount)
	p.loops = append(p.loops, loop{name: "status page", run: h.Run})
	return nil
}

// appURLs says where apps are served, for every place that links to one.
func (p *parts) appURLs() appurl.Config {
	return appurl.Config{AppHost: p.cfg.AppHost, AppsDomain: p.cfg.Router.AppsDomain,
		HTTPS: p.cfg.Router.AppsDomain != "" && p.cfg.Router.TLS == config.TLSACME}
}
