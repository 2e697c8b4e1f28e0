package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
)

const userUsage = "user add NAME --role viewer|deployer|admin [--github LOGIN] | user list | user remove NAME"

// userCommand is `keystone user add|list|remove` (SPEC §10).
func userCommand(ctx context.Context, e env) error {
	if len(e.args) == 0 {
		return usageError{"user needs a subcommand: " + userUsage}
	}
	sub, rest := e.args[0], e.args[1:]
	switch sub {
	case "add":
		return userAdd(ctx, e, rest)
	case "list":
		if len(rest) > 0 {
			return usageError{fmt.Sprintf("user list takes no arguments, got %q", strings.Join(rest, " "))}
		}
		return userList(ctx, e)
	case "remove":
		if len(rest) != 1 {
			return usageError{"usage: keystone user remove NAME"}
		}
		return userRemove(ctx, e, rest[0])
	}
	return usageError{fmt.Sprintf("unknown user subcommand %q: %s", sub, userUsage)}
}

// userArgs is the parsed command line of `user add`.
type userArgs struct {
	name, role, github string
}

// parseUserAdd reads NAME and the --role/--github flags in any order, each
// flag as "--flag value" or "--flag=value".
func parseUserAdd(args []string) (userArgs, error) {
	var a userArgs
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			if a.name != "" {
				return a, usageError{fmt.Sprintf("user add takes one NAME, got %q and %q", a.name, arg)}
			}
			a.name = arg
			continue
		}
		flag, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if flag != "role" && flag != "github" {
			return a, usageError{fmt.Sprintf("unknown flag %s (usage: keystone %s)", arg, userUsage)}
		}
		if !hasValue {
			if i+1 >= len(args) {
				return a, usageError{fmt.Sprintf("%s needs a value", arg)}
			}
			i++
			value = args[i]
		}
		if flag == "role" {
			a.role = value
		} else {
			a.github = value
		}
	}
	if a.name == "" || a.role == "" {
		return a, usageError{"usage: keystone user add NAME --role viewer|deployer|admin [--github LOGIN]; the password is the first line of standard input"}
	}
	return a, nil
}

func userAdd(ctx context.Context, e env, args []string) error {
	a, err := parseUserAdd(args)
	if err != nil {
		return err
	}
	// Check what needs no database first, so mistakes are told at once.
	for _, check := range []error{users.ValidateName(a.name), users.ValidateRole(a.role)} {
		if check != nil {
			return usageError{check.Error()}
		}
	}
	password, err := firstLine(e.stdin)
	if err != nil {
		return err
	}
	if password == "" && a.github == "" {
		return errors.New("no password on standard input (its first line is the password), and no --github login to sign in with instead")
	}
	dir, closeStore, err := openDirectory(ctx, e)
	if err != nil {
		return err
	}
	defer closeStore()
	u, err := dir.Add(ctx, cliActor(e), users.NewUser{Name: a.name, Role: a.role, GitHubLogin: a.github, Password: password})
	if err != nil {
		return err
	}
	how := "password"
	switch {
	case u.GitHubLogin != "" && u.PasswordHash != "":
		how = "password or GitHub " + u.GitHubLogin
	case u.GitHubLogin != "":
		how = "GitHub " + u.GitHubLogin + " only"
	}
	fmt.Fprintf(e.stdout, "added %s (%s), signs in with %s\n", u.Name, u.Role, how)
	if password != "" && len(password) < 12 {
		fmt.Fprintln(e.stderr, "keystone: warning: the password is shorter than 12 characters")
	}
	return nil
}

func userList(ctx context.Context, e env) error {
	dir, closeStore, err := openDirectory(ctx, e)
	if err != nil {
		return err
	}
	defer closeStore()
	list, err := dir.List(ctx)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stderr, "no users yet: add one with `keystone user add NAME --role admin`")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tGITHUB\tPASSWORD")
	for _, u := range list {
		login := u.GitHubLogin
		if login == "" {
			login = "-"
		}
		pw := "yes"
		if u.PasswordHash == "" {
			pw = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, login, pw)
	}
	return tw.Flush()
}

func userRemove(ctx context.Context, e env, name string) error {
	dir, closeStore, err := openDirectory(ctx, e)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := dir.Remove(ctx, cliActor(e), name); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed %s; their sessions are ended\n", name)
	return nil
}

// firstLine returns the first line of r without its line break (\n or \r\n).
func firstLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

func openDirectory(ctx context.Context, e env) (*users.Directory, func(), error) {
	cfg, err := loadConfig(e)
	if err != nil {
		return nil, nil, err
	}
	if cfg.DatabaseURL == "" {
		return nil, nil, errors.New("DATABASE_URL is not set")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, nil, err
	}
	dir, err := users.NewDirectory(st, users.DefaultParams())
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return dir, st.Close, nil
}
