package conversation

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Verbs of /keystone (SPEC §8).
const (
	VerbRollback = "rollback"
	VerbDeploy   = "deploy"
	VerbLock     = "lock"
	VerbUnlock   = "unlock"
	VerbStatus   = "status"
	VerbPreview  = "preview"
	VerbHelp     = "help"
)

var verbs = []string{VerbRollback, VerbDeploy, VerbLock, VerbUnlock, VerbStatus, VerbPreview, VerbHelp}

// Limits on what a command line may carry.
const (
	maxLineRunes   = 500 // longer lines are cut before parsing
	maxArgs        = 40
	maxReasonRunes = 200
)

const prefix = "/keystone"

var codeSafe = strings.NewReplacer("`", "'", "<", "‹", ">", "›")

// Command is the /keystone line of a comment, split into its verb and the
// words after it.
type Command struct {
	Line string // the line as written (cut to maxLineRunes)
	Verb string // lower-case; "" when the line had none
	Args []string
}

// UsageError is a command Keystone does not understand; Problem says what
// is wrong, in words for the commenter.
type UsageError struct{ Problem string }

func (e *UsageError) Error() string { return e.Problem }

func usagef(format string, args ...any) error {
	return &UsageError{Problem: fmt.Sprintf(format, args...)}
}

// FindCommand returns the first line of body that starts with /keystone as
// a word (leading blanks allowed, any case); ok is false when there is none.
// Lines a reader does not see as such are not commands: those of a fenced
// code block (``` or ~~~, closed or not) and those in or after the start of
// an HTML comment (<!-- … -->) on the same line.
func FindCommand(body string) (line string, ok bool) {
	var fence string // the opening fence while inside a code block
	inComment := false
	for l := range strings.SplitSeq(body, "\n") {
		l = strings.TrimSpace(l)
		if inComment {
			if _, _, closed := strings.Cut(l, "-->"); closed {
				inComment = false
			}
			continue // the rest of a line that ends a comment is not read either
		}
		if fence != "" {
			if strings.HasPrefix(l, fence) && strings.Trim(l, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		if f := openingFence(l); f != "" {
			fence = f
			continue
		}
		if before, after, found := strings.Cut(l, "<!--"); found {
			inComment = !strings.Contains(after, "-->")
			l = before
		}
		if len(l) < len(prefix) || !strings.EqualFold(l[:len(prefix)], prefix) {
			continue
		}
		if rest := l[len(prefix):]; rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			continue // "/keystones", "/keystone-bot": not the command
		}
		return strings.TrimSpace(l), true
	}
	return "", false
}

// openingFence returns the fence that line opens (three or more backticks
// or tildes, as Markdown has them), "" when it opens none.
func openingFence(line string) string {
	for _, c := range []string{"`", "~"} {
		n := len(line) - len(strings.TrimLeft(line, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// Parse reads the command of body. found is false when body has no
// /keystone line; err is a *UsageError when the line is not a command
// Keystone knows. It checks what can be checked without the repository's
// apps; Bind does the rest.
func Parse(body string) (cmd Command, found bool, err error) {
	line, ok := FindCommand(body)
	if !ok {
		return Command{}, false, nil
	}
	line = strings.ToValidUTF8(line, "\uFFFD")
	if r := []rune(line); len(r) > maxLineRunes {
		line = string(r[:maxLineRunes])
	}
	cmd.Line = line
	words := strings.Fields(line[len(prefix):])
	if len(words) == 0 {
		return cmd, true, usagef("`/keystone` needs a command")
	}
	cmd.Verb = strings.ToLower(words[0])
	cmd.Args = words[1:]
	if !slices.Contains(verbs, cmd.Verb) {
		return cmd, true, usagef("`%s` is not a Keystone command", clip(words[0], 40))
	}
	if len(cmd.Args) > maxArgs {
		return cmd, true, usagef("too many words after `%s`", cmd.Verb)
	}
	switch cmd.Verb {
	case VerbRollback:
		_, _, _, err = rollbackArgs(cmd.Args)
	case VerbDeploy:
		if len(cmd.Args) > 2 {
			err = usagef("`deploy` takes at most an app and a commit SHA")
		} else if len(cmd.Args) == 2 && !shaArg.MatchString(cmd.Args[1]) {
			err = usagef("`%s` is not a commit SHA (7 to 40 hex digits)", clip(cmd.Args[1], 50))
		}
	case VerbUnlock, VerbStatus, VerbPreview:
		if len(cmd.Args) > 1 {
			err = usagef("`%s` takes at most an app name", cmd.Verb)
		}
	}
	return cmd, true, err
}

var (
	shaArg     = regexp.MustCompile(`^[0-9a-fA-F]{7,40}$`)
	appNameArg = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
)

// rollbackArgs splits the words of `rollback [APP] [to SHA|#DEPLOYMENT]`.
func rollbackArgs(args []string) (app, sha string, deployment int64, err error) {
	if len(args) > 0 && !strings.EqualFold(args[0], "to") && !strings.HasPrefix(args[0], "#") {
		app, args = args[0], args[1:]
	}
	switch {
	case len(args) == 0:
		return app, "", 0, nil
	case strings.EqualFold(args[0], "to"):
		if len(args) != 2 || !shaArg.MatchString(args[1]) {
			return "", "", 0, usagef("`rollback … to` needs one commit SHA (7 to 40 hex digits) after `to`")
		}
		return app, strings.ToLower(args[1]), 0, nil
	case strings.HasPrefix(args[0], "#"):
		n, perr := strconv.ParseInt(args[0][1:], 10, 64)
		if len(args) != 1 || perr != nil || n <= 0 {
			return "", "", 0, usagef("`rollback #N` needs one deployment number, like `#42`")
		}
		return app, "", n, nil
	}
	return "", "", 0, usagef("`rollback` takes `[APP] [to SHA|#DEPLOYMENT]`; `%s` is not one of those", clip(args[0], 40))
}

// Action is a command bound to the repository's apps: what to do to which.
type Action struct {
	Verb string
	// App is the app acted on; "" for help, and for status of every app.
	App string
	// SHA is the commit of `rollback to SHA` or `deploy APP SHA`, lower-case,
	// 7 to 40 hex digits as written.
	SHA string
	// DeploymentID is the target of `rollback #N`.
	DeploymentID int64
	// Reason is the reason of `lock`, at most maxReasonRunes characters.
	Reason string
}

// Bind resolves cmd against the names of the repository's apps: APP may be
// left out when there is one app. Errors are *UsageError.
func Bind(cmd Command, apps []string) (Action, error) {
	a := Action{Verb: cmd.Verb}
	args := cmd.Args
	isApp := func(s string) bool { return slices.Contains(apps, strings.ToLower(s)) }
	switch cmd.Verb {
	case VerbHelp:
		return a, nil
	case VerbStatus:
		if len(args) == 1 {
			return a, pick(&a, args[0], apps)
		}
		return a, nil
	case VerbUnlock, VerbPreview:
		return a, pick(&a, first(args), apps)
	case VerbLock:
		if len(args) > 0 && isApp(args[0]) {
			a.App, args = strings.ToLower(args[0]), args[1:]
		} else if err := pick(&a, "", apps); err != nil {
			return a, err
		}
		a.Reason = clip(strings.Join(args, " "), maxReasonRunes)
		return a, nil
	case VerbDeploy:
		switch {
		case len(args) == 2:
			a.SHA = strings.ToLower(args[1])
		case len(args) == 1 && !isApp(args[0]) && shaArg.MatchString(args[0]):
			a.SHA, args = strings.ToLower(args[0]), nil
		}
		return a, pick(&a, first(args), apps)
	case VerbRollback:
		app, sha, dep, err := rollbackArgs(args)
		if err != nil {
			return a, err
		}
		a.SHA, a.DeploymentID = sha, dep
		if app != "" && !isApp(app) && shaArg.MatchString(app) {
			return a, usagef("this repository has no app `%s`; to roll back to that commit write `/keystone rollback to %s`",
				clip(app, 40), clip(app, 40))
		}
		return a, pick(&a, app, apps)
	}
	return a, usagef("`%s` is not a Keystone command", clip(cmd.Verb, 40))
}

// pick sets a.App to name, or to the only app when name is empty.
func pick(a *Action, name string, apps []string) error {
	if name == "" {
		switch len(apps) {
		case 0:
			return usagef("this repository has no app in its .keystone.yml")
		case 1:
			a.App = apps[0]
			return nil
		}
		return usagef("this repository has several apps (%s): name one, like `/keystone %s %s`",
			strings.Join(apps, ", "), a.Verb, apps[0])
	}
	name = strings.ToLower(name)
	if !appNameArg.MatchString(name) || !slices.Contains(apps, name) {
		return usagef("this repository has no app `%s` (its apps: %s)", clip(name, 40), strings.Join(apps, ", "))
	}
	a.App = name
	return nil
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// clip cuts s to n characters, ending with "…" when cut, and replaces the
// characters that could break out of inline code or forge a hidden marker.
func clip(s string, n int) string {
	s = codeSafe.Replace(strings.ToValidUTF8(s, "\uFFFD"))
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
