package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keystone-app/keystone/internal/secrets"
)

const secretUsage = "secret set [--preview] OWNER/REPO APP KEY | list [--preview] OWNER/REPO APP | unset [--preview] OWNER/REPO APP KEY"

// secretCommand is `keystone secret set|list|unset`. The value of set is all of
// standard input less one trailing line break; it is never printed. With
// --preview (right after the subcommand) it acts on the app's preview
// secrets, which only its pull-request previews get (SPEC §14).
func secretCommand(ctx context.Context, e env) error {
	preview := false
	if len(e.args) > 1 && e.args[1] == "--preview" {
		preview = true
		e.args = append([]string{e.args[0]}, e.args[2:]...)
	}
	sub, args, err := subcommand(e, "secret", secretUsage, map[string]int{"set": 3, "list": 2, "unset": 3})
	if err != nil {
		return err
	}
	owner, repo, ok := strings.Cut(args[0], "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return usageError{fmt.Sprintf("%q is not OWNER/REPO: keystone %s", args[0], secretUsage)}
	}
	app := args[1]
	var value string
	if sub == "set" {
		if err := secrets.ValidName(args[2]); err != nil {
			return err
		}
		if value, err = readSecretValue(e, args[2]); err != nil {
			return err
		}
	}
	svc, st, err := openSecrets(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	target := owner + "/" + repo + "/" + app
	set, unset, list := svc.Set, svc.Unset, svc.List
	if preview {
		target += " (previews)"
		set, unset, list = svc.SetPreview, svc.UnsetPreview, svc.ListPreview
	}
	switch sub {
	case "set":
		if err := set(ctx, cliActor(e), owner, repo, app, args[2], value); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "set %s on %s (used from the next deploy)\n", args[2], target)
	case "unset":
		if err := unset(ctx, cliActor(e), owner, repo, app, args[2]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "unset %s on %s (gone from the next deploy)\n", args[2], target)
	case "list":
		names, err := list(ctx, owner, repo, app)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(e.stdout, n)
		}
	}
	return nil
}

// readSecretValue reads the value from standard input, refusing more than a
// secret may hold and dropping one trailing "\n" or "\r\n".
func readSecretValue(e env, key string) (string, error) {
	if interactive(e.stdin) {
		fmt.Fprintf(e.stderr, "keystone: type the value of %s, then Enter and Ctrl-D\n", key)
	}
	b, err := io.ReadAll(io.LimitReader(e.stdin, secrets.MaxValueBytes+3))
	if err != nil {
		return "", fmt.Errorf("read the value of %s from standard input: %w", key, err)
	}
	v := string(b)
	if s, ok := strings.CutSuffix(v, "\n"); ok {
		v = strings.TrimSuffix(s, "\r")
	}
	if v == "" {
		return "", fmt.Errorf("the value of %s is empty: give it on standard input, e.g. printf %%s \"$VALUE\" | keystone secret set ...", key)
	}
	return v, nil
}

// interactive reports whether r is a terminal (a character device other than
// /dev/null), where a person is about to type.
func interactive(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
