package users_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/users"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var cheap = users.Params{MemoryKiB: 64, Time: 1, Threads: 1}

func TestPasswordHashes(t *testing.T) {
	hash, err := users.HashPassword("correct horse", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not an argon2id PHC string with its parameters", hash)
	}
	other, _ := users.HashPassword("correct horse", cheap)
	if other == hash {
		t.Fatal("two hashes of one password are equal: no random salt")
	}
	cases := []struct {
		name, hash, password string
		want                 bool
	}{
		{"right password", hash, "correct horse", true},
		{"wrong password", hash, "correct horsE", false},
		{"empty password", hash, "", false},
		{"not PHC", "plain", "correct horse", false},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuv", "correct horse", false},
		{"argon2i", strings.Replace(hash, "argon2id", "argon2i", 1), "correct horse", false},
		{"huge memory", strings.Replace(hash, "m=64,", "m=99999999,", 1), "correct horse", false},
		{"zero time", strings.Replace(hash, "t=1,", "t=0,", 1), "correct horse", false},
		{"bad salt", strings.Join(append(strings.Split(hash, "$")[:4], "!!", strings.Split(hash, "$")[5]), "$"), "correct horse", false},
		{"default parameters", mustHash(t, "pw", users.DefaultParams()), "pw", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := users.CheckPassword(tc.hash, tc.password); got != tc.want {
				t.Fatalf("CheckPassword = %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := users.HashPassword("", cheap); err == nil {
		t.Error("an empty password was hashed")
	}
	if _, err := users.HashPassword(strings.Repeat("x", 2000), cheap); err == nil {
		t.Error("a 2000-byte password was hashed")
	}
}

func mustHash(t *testing.T, pw string, p users.Params) string {
	t.Helper()
	h, err := users.HashPassword(pw, p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestValidation(t *testing.T) {
	names := map[string]bool{"alice": true, "a": true, "bob.smith_2-x": true, "0ps": true,
		strings.Repeat("a", 40): true, strings.Repeat("a", 41): false, "Alice": false, "-bob": false,
		".bob": false, "": false, "bob smith": false, "bob/x": false, "böb": false}
	for name, ok := range names {
		if err := users.ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	roles := map[string]bool{"viewer": true, "deployer": true, "admin": true, "Admin": false, "root": false, "": false}
	for role, ok := range roles {
		if err := users.ValidateRole(role); (err == nil) != ok {
			t.Errorf("ValidateRole(%q) = %v, want ok=%v", role, err, ok)
		}
	}
	logins := map[string]bool{"octocat": true, "Octo-Cat": true, "a1": true, strings.Repeat("a", 39): true,
		strings.Repeat("a", 40): false, "-octo": false, "octo-": false, "oc--to": false, "octo_cat": false, "": false}
	for login, ok := range logins {
		if err := users.ValidateGitHubLogin(login); (err == nil) != ok {
			t.Errorf("ValidateGitHubLogin(%q) = %v, want ok=%v", login, err, ok)
		}
	}
}

func TestRoleAtLeast(t *testing.T) {
	cases := []struct {
		role, min string
		want      bool
	}{
		{"viewer", "viewer", true}, {"viewer", "deployer", false}, {"viewer", "admin", false},
		{"deployer", "viewer", true}, {"deployer", "deployer", true}, {"deployer", "admin", false},
		{"admin", "viewer", true}, {"admin", "admin", true}, {"", "viewer", false}, {"root", "viewer", false},
	}
	for _, tc := range cases {
		if got := users.RoleAtLeast(tc.role, tc.min); got != tc.want {
			t.Errorf("RoleAtLeast(%q, %q) = %v", tc.role, tc.min, got)
		}
	}
}

func newDirectory(t *testing.T) (*users.Directory, *store.Store) {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	dir, err := users.NewDirectory(st, cheap)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st
}

func TestDirectory(t *testing.T) {
	dir, st := newDirectory(t)
	ctx := t.Context()
	alice, err := dir.Add(ctx, "cli:root", users.NewUser{Name: "alice", Role: "admin", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	if alice.PasswordHash == "" || strings.Contains(alice.PasswordHash, "alice-pw") {
		t.Fatalf("stored hash %q", alice.PasswordHash)
	}
	if _, err := dir.Add(ctx, "cli:root", users.NewUser{Name: "gh", Role: "viewer", GitHubLogin: "Octo-Cat"}); err != nil {
		t.Fatal(err)
	}

	refusals := []struct {
		name string
		nu   users.NewUser
		want string
	}{
		{"duplicate name", users.NewUser{Name: "alice", Role: "viewer", Password: "x"}, "user alice already exists"},
		{"GitHub login taken, other case", users.NewUser{Name: "bob", Role: "viewer", GitHubLogin: "octo-cat"}, "GitHub login octo-cat is already mapped to another user"},
		{"no password nor login", users.NewUser{Name: "carol", Role: "viewer"}, "a password is needed"},
		{"bad role", users.NewUser{Name: "carol", Role: "owner", Password: "x"}, `role "owner" is not one of viewer, deployer, admin`},
		{"bad name", users.NewUser{Name: "Carol", Role: "viewer", Password: "x"}, `user name "Carol" is not valid`},
		{"bad login", users.NewUser{Name: "carol", Role: "viewer", GitHubLogin: "-x"}, `GitHub login "-x" is not valid`},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := dir.Add(ctx, "cli:root", tc.nu); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Add = %v, want an error containing %q", err, tc.want)
			}
		})
	}

	auth := []struct {
		name, user, password string
		ok                   bool
	}{
		{"right", "alice", "alice-pw", true},
		{"wrong", "alice", "alice-PW", false},
		{"unknown", "mallory", "alice-pw", false},
		{"GitHub-only user has no password", "gh", "", false},
	}
	for _, tc := range auth {
		t.Run("authenticate "+tc.name, func(t *testing.T) {
			u, err := dir.Authenticate(ctx, tc.user, tc.password)
			if tc.ok && (err != nil || u.Name != tc.user) {
				t.Fatalf("Authenticate = %+v, %v", u, err)
			}
			if !tc.ok && !errors.Is(err, users.ErrBadCredentials) {
				t.Fatalf("Authenticate = %+v, %v, want ErrBadCredentials", u, err)
			}
		})
	}
	if u, err := dir.ByGitHubIdentity(ctx, 101, "OCTO-cat"); err != nil || u.Name != "gh" {
		t.Fatalf("ByGitHubIdentity = %+v, %v", u, err)
	}

	list, err := dir.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "alice" || list[1].Name != "gh" || list[1].GitHubLogin != "Octo-Cat" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := dir.Remove(ctx, "cli:root", "gh"); err != nil {
		t.Fatal(err)
	}
	if err := dir.Remove(ctx, "cli:root", "gh"); err == nil || !strings.Contains(err.Error(), "no user is called gh") {
		t.Fatalf("second Remove = %v", err)
	}

	events, err := st.AuditPage(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Actor+" "+e.Action+" "+e.Target)
		if strings.Contains(strings.Join(mapValues(e.Details), " "), "alice-pw") {
			t.Errorf("audit event %d holds the password", e.ID)
		}
	}
	want := []string{"cli:root user.removed user:gh", "cli:root user.added user:gh", "cli:root user.added user:alice"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func mapValues(m map[string]any) []string {
	var out []string
	for k, v := range m {
		s, _ := v.(string)
		out = append(out, k+"="+s)
	}
	return out
}
