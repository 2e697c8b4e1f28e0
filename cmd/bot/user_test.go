package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/users"
)

// runCLI runs `keystone args…` with stdin against the database and returns
// the exit code, stdout and stderr.
func runCLI(t *testing.T, dbURL, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := env{args: args, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		lookup: func(k string) (string, bool) {
			switch k {
			case "DATABASE_URL":
				return dbURL, true
			}
			return "", false
		}}
	return exitCode(dispatch(t.Context(), e)), out.String(), errOut.String()
}

func TestUserCommands(t *testing.T) {
	dbURL := storetest.Fresh(t)
	steps := []struct {
		name        string
		stdin       string
		args        []string
		exit        int
		stdout      string // substring
		stderr      string // substring
		notInOutput string
	}{
		{"add admin, CRLF stripped", "s3cret-password\r\nignored second line\n", []string{"user", "add", "alice", "--role", "admin"},
			0, "added alice (admin), signs in with password", "", "s3cret"},
		{"add GitHub-only user, flags first", "", []string{"user", "add", "--role=viewer", "--github", "Octo-Cat", "octo"},
			0, "signs in with GitHub Octo-Cat only", "", ""},
		{"short password warns", "short\n", []string{"user", "add", "bob", "--role", "deployer"},
			0, "added bob (deployer)", "shorter than 12 characters", ""},
		{"duplicate", "another-password\n", []string{"user", "add", "alice", "--role", "viewer"},
			1, "", "user alice already exists", ""},
		{"no password", "", []string{"user", "add", "carol", "--role", "viewer"},
			1, "", "no password on standard input", ""},
		{"bad role", "pw-pw-pw-pw-pw\n", []string{"user", "add", "carol", "--role", "owner"},
			2, "", `role "owner" is not one of viewer, deployer, admin`, ""},
		{"bad name", "pw-pw-pw-pw-pw\n", []string{"user", "add", "Carol", "--role", "viewer"},
			2, "", `user name "Carol" is not valid`, ""},
		{"missing role", "pw\n", []string{"user", "add", "carol"},
			2, "", "usage: keystone user add NAME --role", ""},
		{"unknown flag", "pw\n", []string{"user", "add", "carol", "--role", "viewer", "--admin"},
			2, "", "unknown flag --admin", ""},
		{"flag without value", "pw\n", []string{"user", "add", "carol", "--role"},
			2, "", "--role needs a value", ""},
		{"list", "", []string{"user", "list"},
			0, "alice  admin     -         yes\nbob    deployer  -         yes\nocto   viewer    Octo-Cat  no\n", "", "$argon2id"},
		{"remove", "", []string{"user", "remove", "bob"},
			0, "removed bob", "", ""},
		{"remove unknown", "", []string{"user", "remove", "bob"},
			1, "", "no user is called bob", ""},
		{"unknown subcommand", "", []string{"user", "rename", "a", "b"},
			2, "", `unknown user subcommand "rename"`, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, dbURL, st.stdin, st.args...)
			if code != st.exit || !strings.Contains(stdout, st.stdout) || !strings.Contains(stderr, st.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q",
					code, stdout, stderr, st.exit, st.stdout, st.stderr)
			}
			if st.notInOutput != "" && strings.Contains(stdout+stderr, st.notInOutput) {
				t.Fatalf("output shows %q", st.notInOutput)
			}
		})
	}

	// What the CLI stored signs in, and the changes are audited as the operator.
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir, err := users.NewDirectory(st, users.Params{MemoryKiB: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Authenticate(t.Context(), "alice", "s3cret-password"); err != nil {
		t.Fatalf("alice cannot sign in with the password given on stdin: %v", err)
	}
	list, err := dir.List(t.Context())
	if err != nil || len(list) != 2 || list[1].Name != "octo" || list[1].GitHubLogin != "Octo-Cat" || list[1].Role != "viewer" {
		t.Fatalf("users: %+v, %v", list, err)
	}
	events, err := st.AuditPage(t.Context(), 0, 10)
	if err != nil || len(events) != 4 || events[0].Action != store.AuditUserRemoved || !strings.HasPrefix(events[0].Actor, "cli:") {
		t.Fatalf("audit events: %+v, %v", events, err)
	}
}
