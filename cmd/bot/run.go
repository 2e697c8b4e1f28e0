package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/keystone-app/keystone/internal/config"
)

// env is what a subcommand may use of the process: its arguments, standard
// streams and environment. Tests build their own.
type env struct {
	args   []string // after the subcommand's name
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	lookup func(string) (string, bool)
}

// command is one subcommand. Adding one is a file with its run function and a
// line in commands.
type command struct {
	usage   string
	summary string
	run     func(ctx context.Context, e env) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":       {usage: "serve", summary: "run Keystone: webhooks, jobs, status page", run: serve},
		"proxy":       {usage: "proxy", summary: "run the router: apps by host name or port, HTTPS, zero-downtime switches", run: proxy},
		"migrate":     {usage: "migrate", summary: "apply database migrations and exit", run: migrate},
		"version":     {usage: "version", summary: "print the version", run: printVersion},
		"secret":      {usage: "secret set|list|unset OWNER/REPO APP [KEY]", summary: "set (value on stdin), list names of, or unset an app's secrets", run: secretCommand},
		"app":         {usage: appUsage, summary: "allow an app to be created or re-pointed by pushes to a non-default branch; forget the GitHub App stored by setup", run: appCommand},
		"keys":        {usage: keysUsage, summary: "print a new encryption key, or re-encrypt every secret under the first key", run: keysCommand},
		"audit":       {usage: auditUsage, summary: "check the audit trail's hash chain (against anchors), or print its head to keep outside the database", run: auditCommand},
		"healthcheck": {usage: "healthcheck", summary: "exit 0 when the local Keystone answers /healthz (Docker HEALTHCHECK)", run: healthcheck},
		"user":        {usage: "user add|list|remove", summary: "manage status page users (add: password on stdin)", run: userCommand},
		"doctor":      {usage: "doctor", summary: "check the database, Docker, the router, the GitHub App, webhooks and the public URL", run: doctor},
	}
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(ctx context.Context) error {
	return dispatch(ctx, env{
		args: os.Args[1:], stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, lookup: os.LookupEnv,
	})
}

// dispatch runs the subcommand named by e.args[0]. Errors are printed here,
// once, to stderr.
func dispatch(ctx context.Context, e env) error {
	cmds := commands()
	if len(e.args) == 0 || e.args[0] == "help" || e.args[0] == "-h" || e.args[0] == "--help" {
		printUsage(e.stdout, cmds)
		if len(e.args) == 0 {
			return report(e, usageError{"no command given"})
		}
		return nil
	}
	cmd, ok := cmds[e.args[0]]
	if !ok {
		printUsage(e.stderr, cmds)
		return report(e, usageError{fmt.Sprintf("unknown command %q", e.args[0])})
	}
	sub := e
	sub.args = e.args[1:]
	return report(e, cmd.run(ctx, sub))
}

func report(e env, err error) error {
	if err != nil {
		fmt.Fprintln(e.stderr, "keystone:", err)
	}
	return err
}

func printUsage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: keystone COMMAND\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-44s %s\n", cmds[n].usage, cmds[n].summary)
	}
	io.WriteString(w, b.String())
}

func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	default:
		return 1
	}
}

// loadConfig reads the configuration from e's environment.
func loadConfig(e env) (config.Config, error) { return config.Load(e.lookup) }

// newLogger writes JSON lines to w (SPEC §12).
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// noArgs refuses extra arguments.
func noArgs(e env, name string) error {
	if len(e.args) > 0 {
		return usageError{fmt.Sprintf("%s takes no arguments, got %q", name, strings.Join(e.args, " "))}
	}
	return nil
}
