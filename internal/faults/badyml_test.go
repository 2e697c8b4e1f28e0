//go:build faults

package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/gittest"
)

// badYML pushes n malformed or hostile .keystone.yml files to main, where
// app web is serving: the fuzz corpus of the parser, then mutations of the
// app's own file that the parser rejects. Each push must end with a
// failure status naming the parser's first problem, run nothing (no build,
// no container) and be logged by `keystone serve` with its delivery id.
// It returns the deliveries' GUIDs.
func (w *world) badYML(rng *rand.Rand, n int) []string {
	w.t.Helper()
	valid := gittest.KeystoneYML("web", "main")
	cases := fuzzCorpus(w.t)
	for len(cases) < n {
		if y := mutateYML(rng, valid); rejected(y) {
			cases = append(cases, y)
		}
	}
	cases = cases[:n]
	type pushed struct {
		sha, guid string
		yml       []byte
	}
	var all []pushed
	for i, y := range cases {
		files := w.files(gittest.Behaviour{Version: "bad-yml-" + strconv.Itoa(i)})
		files[".keystone.yml"] = y
		sha := w.Repo.Commit(w.t, "main", files, "bad .keystone.yml "+strconv.Itoa(i))
		w.mu.Lock()
		w.pushed = append(w.pushed, sha)
		w.mu.Unlock()
		d := w.hooks.deliver("push", w.Repo.PushEvent("main", sha, "alice"))
		if d.Code != 202 {
			w.t.Errorf("push of bad .keystone.yml %d answered %d %s", i, d.Code, d.Status)
		}
		all = append(all, pushed{sha, d.GUID, y})
	}
	var guids []string
	for i, p := range all {
		st := w.finalStatus(p.sha, 2*time.Minute)
		if want := wantInvalid(p.yml); !strings.HasPrefix(st, "failure ") || !namesProblem(strings.TrimPrefix(st, "failure "), want) {
			w.t.Errorf("bad .keystone.yml %d %q: status %q, want failure %q", i, clipBytes(p.yml), st, want)
		}
		guids = append(guids, p.guid)
	}
	// Nothing ran: no deployment of a bad file has a container or a log of
	// a build, and web's one container still serves the version before.
	var ran int
	if err := w.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM deployments
		WHERE description LIKE 'Invalid .keystone.yml:%' AND (container_id <> '' OR started_at IS NOT NULL)`).Scan(&ran); err != nil {
		w.t.Fatal(err)
	}
	if ran != 0 {
		w.t.Errorf("%d deployments of a bad .keystone.yml started or made a container", ran)
	}
	return guids
}

// rejected reports whether the engine's parser, with serve's default caps,
// refuses y.
func rejected(y []byte) bool {
	_, err := keystoneyml.ParseLimited(y, "main", keystoneyml.Limits{Memory: 4 << 30, CPUs: 2})
	return err != nil
}

// wantInvalid is the description Keystone gives a push of y, unclipped.
func wantInvalid(y []byte) string {
	if len(y) > keystoneyml.MaxSize {
		return "Invalid .keystone.yml: the file is larger than 64 KiB"
	}
	_, err := keystoneyml.ParseLimited(y, "main", keystoneyml.Limits{Memory: 4 << 30, CPUs: 2})
	if err == nil {
		return "(accepted)"
	}
	return "Invalid .keystone.yml: " + err.Error()
}

// namesProblem reports whether status description got is want, clipped to
// GitHub's limit and with its white space folded.
func namesProblem(got, want string) bool {
	want = strings.ToValidUTF8(strings.Join(strings.Fields(want), " "), "?")
	got, clipped := strings.CutSuffix(got, "…")
	if !clipped {
		return got == want
	}
	return len([]rune(got)) == deploy.MaxDescription-1 && strings.HasPrefix(want, got)
}

// fuzzCorpus is the parser's saved fuzz inputs (go test fuzz v1 files:
// the first argument is the file's bytes).
func fuzzCorpus(t *testing.T) [][]byte {
	t.Helper()
	paths, err := filepath.Glob("../deploy/keystoneyml/testdata/fuzz/FuzzParse/*")
	if err != nil || len(paths) == 0 {
		t.Fatalf("the keystoneyml fuzz corpus: %v (%d files)", err, len(paths))
	}
	var out [][]byte
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if quoted, ok := strings.CutPrefix(sc.Text(), "[]byte("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if rejected([]byte(s)) {
					out = append(out, []byte(s))
				}
				break
			}
		}
		f.Close()
	}
	return out
}

// mutateYML breaks valid one of a few ways: a hostile value in place of a
// line's, a line dropped or doubled, bytes flipped, aliases that expand,
// or a file over the size limit.
func mutateYML(rng *rand.Rand, valid []byte) []byte {
	lines := strings.Split(strings.TrimRight(string(valid), "\n"), "\n")
	hostile := []string{"$(touch /tmp/pwned)", "`id`", "../../../etc", "/etc/passwd", "\xff\xfe", "\u202e",
		"[" + strings.Repeat("[", 5000), "*undefined", "&a [*a]", "!!binary aGk=", "99999999999999999999",
		"-1", "web; rm -rf /", "{PORT: 1}", "\t", "null", "~", strings.Repeat("A", 70000)}
	switch rng.IntN(6) {
	case 0: // a hostile value
		i := 1 + rng.IntN(len(lines)-1)
		key, _, _ := strings.Cut(lines[i], ":")
		lines[i] = key + ": " + hostile[rng.IntN(len(hostile))]
	case 1: // a line dropped
		i := rng.IntN(len(lines))
		lines = append(lines[:i], lines[i+1:]...)
	case 2: // a line doubled
		i := 1 + rng.IntN(len(lines)-1)
		lines = append(lines[:i+1], lines[i:]...)
	case 3: // bytes flipped
		b := []byte(strings.Join(lines, "\n"))
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] = byte(rng.UintN(256))
		}
		return b
	case 4: // aliases that expand (a billion laughs)
		laughs := "a: &a [x, x, x, x, x, x, x, x, x]\n"
		for i := range 8 {
			prev := string(rune('a' + i))
			laughs += string(rune('b'+i)) + ": &" + string(rune('b'+i)) + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		}
		return []byte(laughs + strings.Join(lines, "\n") + "\n")
	default: // over the size limit, in a comment
		return append(bytes.Clone(valid), []byte("# "+strings.Repeat("x", keystoneyml.MaxSize)+"\n")...)
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

func clipBytes(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// logLine is one JSON line of `keystone serve`'s log.
type logLine struct {
	Level, Msg string
	Delivery   string `json:"delivery_id"`
	Job        int64  `json:"job_id"`
	State      string
}

// serveLog is what the running `keystone serve` logged so far.
func (w *world) serveLog() []logLine {
	var out []logLine
	for _, l := range strings.Split(w.ks.Output(), "\n") {
		var ll logLine
		if json.Unmarshal([]byte(l), &ll) == nil {
			out = append(out, ll)
		}
	}
	return out
}

// clipGUID is how the webhook handler writes a delivery id in its log:
// cut to 60 characters.
func clipGUID(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}

// unloggedRejections counts the rejections serve did not log: each
// delivery answered 4xx needs its own "webhook refused" warning, each one
// answered "duplicate" or "ignored" its info line, all with the delivery
// id; each comment job and each bad .keystone.yml push (given by GUID)
// needs a line of the job that handled it. It returns the number of
// rejections and those not logged.
func (w *world) unloggedRejections(comments, ymls []string) (rejections int, unlogged []string) {
	w.t.Helper()
	byDelivery := map[string]map[string]int{} // delivery id → message → count
	jobDone := map[string]bool{}
	for _, l := range w.serveLog() {
		if byDelivery[l.Delivery] == nil {
			byDelivery[l.Delivery] = map[string]int{}
		}
		byDelivery[l.Delivery][l.Msg]++
		if l.Job != 0 && (l.Msg == "command answered" || strings.HasPrefix(l.Msg, "comment ignored") ||
			(l.Msg == "push recorded" && l.State == "failed")) {
			jobDone[l.Delivery] = true
		}
	}
	take := func(guid string, match func(msg string) bool) bool {
		for msg, n := range byDelivery[clipGUID(guid)] {
			if n > 0 && match(msg) {
				byDelivery[clipGUID(guid)][msg]--
				return true
			}
		}
		return false
	}
	for _, d := range w.hooks.all() {
		var match func(string) bool
		switch {
		case d.Code >= 400:
			match = func(m string) bool { return strings.HasPrefix(m, "webhook refused") }
		case d.Status == "duplicate":
			match = func(m string) bool { return strings.HasPrefix(m, "webhook duplicate") }
		case d.Status == "ignored":
			match = func(m string) bool { return m == "webhook ignored" }
		default:
			continue
		}
		rejections++
		if !take(d.GUID, match) {
			unlogged = append(unlogged, fmt.Sprintf("delivery %q answered %d %s", clipGUID(d.GUID), d.Code, d.Status))
		}
	}
	for _, guid := range append(append([]string(nil), comments...), ymls...) {
		rejections++
		if !jobDone[guid] {
			unlogged = append(unlogged, "delivery "+guid+" (a comment or a bad .keystone.yml): no line of its job")
		}
	}
	return rejections, unlogged
}
