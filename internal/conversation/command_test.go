package conversation

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFindCommand(t *testing.T) {
	tests := []struct {
		body, line string
		ok         bool
	}{
		{"/keystone help", "/keystone help", true},
		{"LGTM\n  /KeyStone rollback web\n/keystone help", "/KeyStone rollback web", true},
		{"please run /keystone deploy", "", false},
		{"/keystones are great\n/keystone status", "/keystone status", true},
		{"/keystone-bot help", "", false},
		{"/keystone\r\n", "/keystone", true},
		{"", "", false},
		// Hidden from the reader: quoted in a fenced code block or inside an
		// HTML comment, a /keystone line is text, not a command.
		{"How to roll back:\n```\n/keystone rollback web\n```", "", false},
		{"~~~sh\n/keystone deploy\n~~~\n", "", false},
		{"````\n```\n/keystone deploy\n````", "", false},
		{"```\nexample\n```\n/keystone status", "/keystone status", true},
		{"```\nnever closed\n/keystone deploy", "", false},
		{"<!--\n/keystone rollback web\n-->", "", false},
		{"<!-- /keystone deploy -->", "", false},
		{"LGTM <!-- hidden\n/keystone lock web\n-->\n/keystone status", "/keystone status", true},
		{"<!-- a --> /keystone deploy", "", false},
		{"<!-- note -->\n/keystone help", "/keystone help", true},
	}
	for _, tt := range tests {
		line, ok := FindCommand(tt.body)
		if line != tt.line || ok != tt.ok {
			t.Errorf("FindCommand(%q) = %q, %v; want %q, %v", tt.body, line, ok, tt.line, tt.ok)
		}
	}
}

func TestParseAndBind(t *testing.T) {
	one := []string{"web"}
	two := []string{"api", "web"}
	tests := []struct {
		body    string
		apps    []string
		want    Action
		problem string // substring of the usage error; "" for none
	}{
		{"/keystone help", two, Action{Verb: "help"}, ""},
		{"/keystone HELP me please", two, Action{Verb: "help"}, ""},
		{"/keystone status", two, Action{Verb: "status"}, ""},
		{"/keystone status api", two, Action{Verb: "status", App: "api"}, ""},
		{"/keystone status nope", two, Action{}, "no app `nope`"},
		{"/keystone status a b", two, Action{}, "at most an app name"},
		{"/keystone rollback", one, Action{Verb: "rollback", App: "web"}, ""},
		{"/keystone rollback", two, Action{}, "several apps (api, web)"},
		{"/keystone rollback web", two, Action{Verb: "rollback", App: "web"}, ""},
		{"/keystone Rollback to ABCDEF1", one, Action{Verb: "rollback", App: "web", SHA: "abcdef1"}, ""},
		{"/keystone rollback api to 0123456789abcdef0123456789abcdef01234567", two,
			Action{Verb: "rollback", App: "api", SHA: "0123456789abcdef0123456789abcdef01234567"}, ""},
		{"/keystone rollback #42", one, Action{Verb: "rollback", App: "web", DeploymentID: 42}, ""},
		{"/keystone rollback web #7", two, Action{Verb: "rollback", App: "web", DeploymentID: 7}, ""},
		{"/keystone rollback to", one, Action{}, "needs one commit SHA"},
		{"/keystone rollback to xyz", one, Action{}, "needs one commit SHA"},
		{"/keystone rollback to abc123", one, Action{}, "needs one commit SHA"},
		{"/keystone rollback #0", one, Action{}, "deployment number"},
		{"/keystone rollback #x", one, Action{}, "deployment number"},
		{"/keystone rollback web now", two, Action{}, "not one of those"},
		{"/keystone rollback abc1234", one, Action{}, "write `/keystone rollback to abc1234`"},
		{"/keystone deploy", one, Action{Verb: "deploy", App: "web"}, ""},
		{"/keystone deploy abcdef1", one, Action{Verb: "deploy", App: "web", SHA: "abcdef1"}, ""},
		{"/keystone deploy web abcdef1", two, Action{Verb: "deploy", App: "web", SHA: "abcdef1"}, ""},
		{"/keystone deploy web", two, Action{Verb: "deploy", App: "web"}, ""},
		{"/keystone deploy web main", two, Action{}, "not a commit SHA"},
		{"/keystone deploy nope", two, Action{}, "no app `nope`"},
		{"/keystone lock", one, Action{Verb: "lock", App: "web"}, ""},
		{"/keystone lock web release freeze until Monday", two, Action{Verb: "lock", App: "web", Reason: "release freeze until Monday"}, ""},
		{"/keystone lock release freeze", one, Action{Verb: "lock", App: "web", Reason: "release freeze"}, ""},
		{"/keystone lock release freeze", two, Action{}, "several apps"},
		{"/keystone unlock", one, Action{Verb: "unlock", App: "web"}, ""},
		{"/keystone unlock api", two, Action{Verb: "unlock", App: "api"}, ""},
		{"/keystone", one, Action{}, "needs a command"},
		{"/keystone destroy everything", one, Action{}, "`destroy` is not a Keystone command"},
		{"/keystone `rm", one, Action{}, "`'rm` is not"},
		{"/keystone status", nil, Action{Verb: "status"}, ""},
		{"/keystone unlock", nil, Action{}, "no app in its .keystone.yml"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			cmd, found, err := Parse(tt.body)
			if !found {
				t.Fatalf("no command found")
			}
			var got Action
			if err == nil {
				got, err = Bind(cmd, tt.apps)
			}
			var ue *UsageError
			switch {
			case tt.problem == "" && err != nil:
				t.Fatalf("error %v, want %+v", err, tt.want)
			case tt.problem != "" && (!errors.As(err, &ue) || !strings.Contains(ue.Problem, tt.problem)):
				t.Fatalf("error %v, want a usage error with %q", err, tt.problem)
			case tt.problem == "" && got != tt.want:
				t.Fatalf("action %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	cmd, _, err := Parse("/keystone lock web " + strings.Repeat("é", 1000))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Bind(cmd, []string{"web"})
	if err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(a.Reason); n > maxReasonRunes {
		t.Errorf("reason of %d characters, want at most %d", n, maxReasonRunes)
	}
	if _, _, err := Parse("/keystone status" + strings.Repeat(" x", 60)); err == nil {
		t.Error("60 arguments accepted")
	}
	if _, found, _ := Parse("no command here\n/keystonehelp"); found {
		t.Error("found a command in a comment without one")
	}
}

// FuzzParse: no input panics, and whatever binds is a known verb, an app of
// the repository (or none), a well-formed SHA and a bounded reason.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/keystone help", "/keystone rollback web to abc1234", "/keystone rollback #12",
		"/keystone deploy web 0123456789abcdef0123456789abcdef01234567", "/keystone lock web freeze \xff",
		"hi\n/KEYSTONE unlock", "/keystone status api", "/keystone", "/keystone rollback to"} {
		f.Add(s)
	}
	apps := []string{"api", "web"}
	f.Fuzz(func(t *testing.T, body string) {
		cmd, found, err := Parse(body)
		if !found || err != nil {
			return
		}
		a, err := Bind(cmd, apps)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Bind error %T %v is not a usage error", err, err)
			}
			return
		}
		if !strings.Contains(fmt.Sprint(verbs), a.Verb) || a.Verb == "" {
			t.Fatalf("verb %q", a.Verb)
		}
		if a.App != "" && a.App != "api" && a.App != "web" {
			t.Fatalf("app %q is not an app of the repository", a.App)
		}
		if a.SHA != "" && (!shaArg.MatchString(a.SHA) || strings.ToLower(a.SHA) != a.SHA) {
			t.Fatalf("SHA %q", a.SHA)
		}
		if utf8.RuneCountInString(a.Reason) > maxReasonRunes || !utf8.ValidString(a.Reason) {
			t.Fatalf("reason %q", a.Reason)
		}
		if a.DeploymentID < 0 {
			t.Fatalf("deployment %d", a.DeploymentID)
		}
	})
}
