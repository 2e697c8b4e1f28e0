package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/certs"
	"github.com/keystone-app/keystone/internal/router/routerapi"
)

// proxy runs `keystone proxy`, the data plane (SPEC §13): the routes stored
// under KEYSTONE_DATA_DIR/router, the admin API on KEYSTONE_PROXY_ADMIN, and
// in domain mode the HTTP (and with KEYSTONE_TLS=acme, HTTPS) listeners.
func proxy(ctx context.Context, e env) error {
	if err := noArgs(e, "proxy"); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	log := newLogger(e.stdout).With("component", "proxy")
	rc := cfg.Router
	r, err := router.New(router.Options{StateDir: filepath.Join(cfg.DataDir, "router"), Logger: log})
	if err != nil {
		return err
	}
	defer r.Close()

	var cm *certs.Manager
	if rc.DomainMode() && rc.TLS == config.TLSACME {
		cm, err = certs.New(certs.Options{
			Dir: filepath.Join(cfg.DataDir, "router", "certs"), DirectoryURL: rc.ACMEDirectory,
			Email: rc.ACMEEmail, CARoots: rc.ACMECARoots, Allowed: r.HasHost, Logger: log,
		}, routedHosts(r))
		if err != nil {
			return err
		}
	}
	adminLn, err := routerapi.Listen(rc.AdminSocket)
	if err != nil {
		return err
	}
	var certList routerapi.Certificates
	if cm != nil {
		certList = cm
	}
	servers := []*served{{name: "admin", ln: adminLn, srv: newServer(routerapi.Handler(r, certList), slog.NewLogLogger(log.Handler(), slog.LevelWarn))}}
	if rc.DomainMode() {
		var plain http.Handler = r
		if cm != nil {
			plain = cm.HTTPHandler(r.RedirectHTTPS()) // HTTP-01 challenges, else to https
			s, err := listen("https", rc.HTTPSAddr, r, r.ServerErrorLog(log))
			if err != nil {
				return err
			}
			s.srv.TLSConfig = cm.TLSConfig()
			s.tls = true
			servers = append(servers, s)
		}
		s, err := listen("http", rc.HTTPAddr, plain, r.ServerErrorLog(log))
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}
	return runServers(ctx, log, servers)
}

// routedHosts lists every host name in the table, for the certificate list.
func routedHosts(r *router.Router) func() []string {
	return func() []string {
		var out []string
		for _, rt := range r.Routes() {
			out = append(out, rt.Hosts...)
		}
		return out
	}
}

type served struct {
	name string
	ln   net.Listener
	srv  *http.Server
	tls  bool
}

// newServer is one listener's server; errorLog gets net/http's own lines.
func newServer(h http.Handler, errorLog *stdlog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10, // a huge Host or header gets 431, not memory
		ErrorLog:          errorLog,
	}
}

func listen(name, addr string, h http.Handler, errorLog *stdlog.Logger) (*served, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy %s listener: %w", name, err)
	}
	return &served{name: name, ln: ln, srv: newServer(h, errorLog)}, nil
}

// runServers serves until ctx ends or one server fails, then shuts all down,
// letting in-flight requests finish for up to 10 s.
func runServers(ctx context.Context, log *slog.Logger, servers []*served) error {
	errc := make(chan error, len(servers))
	for _, s := range servers {
		log.Info("proxy: listening", "listener", s.name, "addr", s.ln.Addr().String())
		go func() {
			var err error
			if s.tls {
				err = s.srv.ServeTLS(s.ln, "", "")
			} else {
				err = s.srv.Serve(s.ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("proxy %s listener: %w", s.name, err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		s.srv.Shutdown(shutCtx)
	}
	log.Info("proxy: stopped")
	return err
}
