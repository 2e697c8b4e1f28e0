package keystoneyml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

var (
	namePattern    = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	yamlLineError  = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	memoryPattern  = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$`)
)

// Parse reads a .keystone.yml. defaultBranch (the repository's default
// branch) is the branch of an app that names none; when it is empty, branch
// is required. The error, when not nil, is an *Error.
func Parse(data []byte, defaultBranch string) (f *File, err error) {
	return ParseLimited(data, defaultBranch, Limits{})
}

// Limits are the operator's caps on what an app may ask for
// (KEYSTONE_MAX_MEMORY, KEYSTONE_MAX_CPUS); zero means no cap. A bigger
// ask is a Problem naming the line and the cap; the defaults are lowered
// to the caps.
type Limits struct {
	Memory int64
	CPUs   float64
}

// ParseLimited is Parse with the operator's caps.
func ParseLimited(data []byte, defaultBranch string, limits Limits) (f *File, err error) {
	defer func() {
		// The YAML library is not ours: whatever input crashes it is still
		// only a bad file to the user.
		if r := recover(); r != nil {
			f, err = nil, &Error{Problems: []Problem{{Message: "the file could not be read as YAML"}}}
		}
	}()
	root, problem := decode(data)
	if problem != nil {
		return nil, &Error{Problems: []Problem{*problem}}
	}
	p := &parser{defaultBranch: defaultBranch, limits: limits}
	file := p.file(root)
	if len(p.problems)+len(p.missing) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int { return a.Line - b.Line })
		slices.SortStableFunc(p.missing, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &Error{Problems: append(p.problems, p.missing...)}
	}
	return file, nil
}

// decode parses data as exactly one YAML document and returns its top node.
func decode(data []byte) (*yaml.Node, *Problem) {
	switch {
	case len(data) > MaxSize:
		return nil, &Problem{Message: fmt.Sprintf("the file is larger than %d KiB", MaxSize>>10)}
	case !utf8.Valid(data):
		return nil, &Problem{Message: "the file is not valid UTF-8"}
	}
	doc, extra, err := decodeDocuments(data)
	switch {
	case errors.Is(err, io.EOF):
		return nil, &Problem{Message: "the file is empty: it needs an apps list"}
	case err != nil:
		return nil, syntaxProblem(data, err)
	case extra != nil:
		return nil, &Problem{Line: extra.Line, Message: "only one YAML document is allowed"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 ||
		(doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == "!!null") {
		return nil, &Problem{Message: "the file is empty: it needs an apps list"}
	}
	return doc.Content[0], nil
}

// decodeDocuments decodes the first document of data and, if there is one,
// the start of a second. The error is io.EOF when there is no document.
func decodeDocuments(data []byte) (doc, extra *yaml.Node, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	doc = &yaml.Node{}
	if err := dec.Decode(doc); err != nil {
		return nil, nil, err
	}
	next := &yaml.Node{}
	if err := dec.Decode(next); err == nil {
		return doc, next, nil
	} else if !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	return doc, nil, nil
}

// syntaxProblem turns the YAML library's "yaml: line 3: ..." into a Problem.
// The library names the line where the enclosing block starts, not the line
// at fault, so the line is found again: the first line whose addition makes
// the file unreadable, by bisection over line prefixes.
func syntaxProblem(data []byte, err error) *Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineError.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(n int) bool {
		_, _, err := decodeDocuments(bytes.Join(lines[:n], nil))
		return err != nil && !errors.Is(err, io.EOF)
	}
	if len(lines) > 1 && fails(len(lines)) {
		lo, hi := 0, len(lines) // prefix lo reads, prefix hi fails
		for hi-lo > 1 {
			if mid := (lo + hi) / 2; fails(mid) {
				hi = mid
			} else {
				lo = mid
			}
		}
		line = hi
	}
	return &Problem{Line: line, Message: msg}
}

type parser struct {
	defaultBranch string
	limits        Limits
	problems      []Problem
	// missing are required keys not given. They come after the other
	// problems: a missing port next to an unknown key "prot" is the typo's
	// consequence, and the typo is what the user must read first.
	missing []Problem
}

func (p *parser) add(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) late(line int, format string, args ...any) {
	p.missing = append(p.missing, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

// entry is one key of a mapping with its value.
type entry struct {
	key   string
	line  int
	value *yaml.Node
}

// mapping returns the entries of a mapping node in order, reporting keys that
// are not plain strings, are not in allowed (nil: any) or appear twice. what
// names the mapping in problems.
func (p *parser) mapping(n *yaml.Node, what string, allowed []string) ([]entry, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		p.add(lineOf(n), "%s must be a mapping of keys to values, got %s", what, describe(n))
		return nil, false
	}
	var out []entry
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!merge") {
			p.add(lineOf(k), "%s: keys must be plain words, got %s", what, describe(k))
			continue
		}
		if at, dup := first[k.Value]; dup {
			p.add(k.Line, "duplicate key %q (first at line %d)", clipValue(k.Value), at)
			continue
		}
		first[k.Value] = k.Line
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			p.add(k.Line, "unknown key %q", clipValue(k.Value))
			continue
		}
		out = append(out, entry{key: k.Value, line: k.Line, value: v})
	}
	return out, true
}

func (p *parser) file(root *yaml.Node) *File {
	entries, ok := p.mapping(root, "the top level", []string{"apps"})
	if !ok {
		return nil
	}
	var apps *yaml.Node
	for _, e := range entries {
		apps = resolve(e.value)
		if apps == nil || apps.Kind != yaml.SequenceNode {
			p.add(lineOf(apps), "apps must be a list of apps, got %s", describe(apps))
			return nil
		}
	}
	if apps == nil {
		p.late(root.Line, "apps is required: a list with one entry per app")
		return nil
	}
	if len(apps.Content) == 0 {
		p.add(apps.Line, "apps is empty: list at least one app")
		return nil
	}
	f := &File{}
	seen := map[string]int{}
	for _, item := range apps.Content {
		app, ok := p.app(item)
		if !ok {
			continue
		}
		if at, dup := seen[app.Name]; dup {
			p.add(lineOf(item), "app %q is defined twice (first at line %d)", app.Name, at)
			continue
		}
		seen[app.Name] = lineOf(item)
		f.Apps = append(f.Apps, app)
	}
	return f
}

var appKeys = []string{"name", "branch", "dockerfile", "context", "port", "health_check_path",
	"health_check_timeout", "env", "memory", "cpus", "build_secrets", "preview", "drain_timeout", "keep_previous"}

// app reads one entry of apps; ok is false when it has a problem.
func (p *parser) app(item *yaml.Node) (App, bool) {
	before, missingBefore := len(p.problems), len(p.missing)
	entries, ok := p.mapping(item, "each app", slices.Concat(appKeys, domainKeys))
	if !ok {
		return App{}, false
	}
	a := App{Dockerfile: DefaultDockerfile, Context: DefaultContext,
		HealthCheckTimeout: DefaultHealthCheckTimeout, Memory: DefaultMemory, CPUs: DefaultCPUs}
	if p.limits.Memory > 0 {
		a.Memory = min(a.Memory, p.limits.Memory)
	}
	if p.limits.CPUs > 0 {
		a.CPUs = min(a.CPUs, p.limits.CPUs)
	}
	has := map[string]bool{}
	for _, e := range entries {
		has[e.key] = true
		p.appValue(&a, e)
	}
	switch {
	case !has["name"]:
		p.late(lineOf(item), "app: name is required")
	case !has["port"]:
		p.late(lineOf(item), "app %q: port is required", a.Name)
	}
	p.keepWithinCap(a, entries)
	if !has["branch"] {
		if p.defaultBranch == "" {
			p.late(lineOf(item), "app %q: branch is required", a.Name)
		}
		a.Branch = p.defaultBranch
	}
	return a, len(p.problems) == before && len(p.missing) == missingBefore
}

func (p *parser) appValue(a *App, e entry) {
	switch e.key {
	case "name":
		if s, ok := p.str(e); ok {
			if !namePattern.MatchString(s) {
				p.add(lineOf(e.value), "name %q must be 1 to 40 characters of a-z, 0-9 and -", clipValue(s))
			}
			a.Name = s
		}
	case "branch":
		if s, ok := p.str(e); ok {
			if why := branchProblem(s); why != "" {
				p.add(lineOf(e.value), "branch %q %s", clipValue(s), why)
			}
			a.Branch = s
		}
	case "dockerfile", "context":
		if s, ok := p.str(e); ok {
			clean, why := relativePath(s)
			if why != "" {
				p.add(lineOf(e.value), "%s %q %s", e.key, clipValue(s), why)
			}
			if e.key == "dockerfile" {
				a.Dockerfile = clean
			} else {
				a.Context = clean
			}
		}
	case "port":
		if n, ok := p.integer(e); ok {
			if n < 1 || n > 65535 {
				p.add(lineOf(e.value), "port must be from 1 to 65535, got %d", n)
			}
			a.Port = int(n)
		}
	case "health_check_path":
		if s, ok := p.str(e); ok {
			if !strings.HasPrefix(s, "/") || len(s) > 1024 || strings.IndexFunc(s, badPathRune) >= 0 {
				p.add(lineOf(e.value), "health_check_path %q must be a URL path starting with / (no spaces)", clipValue(s))
			}
			a.HealthCheckPath = s
		}
	case "health_check_timeout":
		a.HealthCheckTimeout = p.duration(e)
	case "domains":
		a.Domains = p.domains(e)
	case "env":
		a.Env = p.env(e)
	case "memory":
		a.Memory = p.memory(e)
	case "cpus":
		a.CPUs = p.cpus(e)
	case "build_secrets":
		a.BuildSecrets = p.buildSecrets(e)
	case "preview":
		a.Preview = p.boolean(e)
	case "drain_timeout", "keep_previous":
		p.switchValue(a, e)
	}
}

// boolean reads true or false (YAML 1.1 spellings such as yes are refused:
// they are too easily meant as strings).
func (p *parser) boolean(e entry) bool {
	v, ok := p.scalar(e, "true or false")
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v.Value)
	if v.ShortTag() != "!!bool" || err != nil || (v.Value != "true" && v.Value != "false") {
		p.add(v.Line, "%s must be true or false, got %s", e.key, describe(v))
		return false
	}
	return b
}

// buildSecrets reads the names of the app's secrets that builds may mount.
func (p *parser) buildSecrets(e entry) []string {
	v := resolve(e.value)
	if v == nil || v.Kind != yaml.SequenceNode {
		p.add(lineOf(v, e.line), "build_secrets must be a list of secret names like [NPM_TOKEN], got %s", describe(v))
		return nil
	}
	var out []string
	for _, item := range v.Content {
		n := resolve(item)
		if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" || !envNamePattern.MatchString(n.Value) {
			p.add(lineOf(n, e.line), "build_secrets: %s is not a secret name (letters, digits and _, not starting with a digit)", describe(n))
			continue
		}
		if slices.Contains(out, n.Value) {
			p.add(n.Line, "build_secrets: %s is listed twice", n.Value)
			continue
		}
		out = append(out, n.Value)
	}
	return out
}

// scalar returns the value as a scalar node, reporting anything else.
func (p *parser) scalar(e entry, want string) (*yaml.Node, bool) {
	v := resolve(e.value)
	if v == nil || v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		p.add(lineOf(v, e.line), "%s must be %s, got %s", e.key, want, describe(v))
		return nil, false
	}
	return v, true
}

func (p *parser) str(e entry) (string, bool) {
	v, ok := p.scalar(e, "a string")
	if !ok {
		return "", false
	}
	if v.ShortTag() == "!!bool" {
		// yes, no, true, false: quote them to mean the word.
		p.add(v.Line, "%s must be a string, got %s", e.key, describe(v))
		return "", false
	}
	if v.Value == "" {
		p.add(v.Line, "%s must not be empty", e.key)
		return "", false
	}
	return v.Value, true
}

func (p *parser) integer(e entry) (int64, bool) {
	v, ok := p.scalar(e, "a whole number")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 0, 64)
	if v.ShortTag() != "!!int" || err != nil {
		p.add(v.Line, "%s must be a whole number, got %s", e.key, describe(v))
		return 0, false
	}
	return n, true
}

func (p *parser) duration(e entry) time.Duration {
	v, ok := p.scalar(e, "a duration like 30s")
	if !ok {
		return DefaultHealthCheckTimeout
	}
	d, err := time.ParseDuration(v.Value)
	if v.ShortTag() != "!!str" || err != nil {
		p.add(v.Line, "%s must be a duration like 30s or 2m, got %s", e.key, describe(v))
		return DefaultHealthCheckTimeout
	}
	if d < MinHealthCheckTimeout || d > MaxHealthCheckTimeout {
		p.add(v.Line, "%s must be from %s to %s, got %s", e.key, MinHealthCheckTimeout, MaxHealthCheckTimeout, v.Value)
	}
	return d
}

func (p *parser) memory(e entry) int64 {
	v, ok := p.scalar(e, "a size like 512m")
	if !ok {
		return DefaultMemory
	}
	m := memoryPattern.FindStringSubmatch(strings.ToLower(v.Value))
	tag := v.ShortTag()
	if m == nil || (tag != "!!str" && tag != "!!int") {
		p.add(v.Line, "memory must be a size like 512m or 1g, got %s", describe(v))
		return DefaultMemory
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	unit := map[string]float64{"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m[2]]
	bytes := n * unit
	if bytes < MinMemory || bytes > MaxMemory {
		p.add(v.Line, "memory must be from 6m to 1024g, got %s", clipValue(v.Value))
		return DefaultMemory
	}
	if p.limits.Memory > 0 && int64(bytes) > p.limits.Memory {
		p.add(v.Line, "memory %s is above the operator's cap KEYSTONE_MAX_MEMORY=%s", clipValue(v.Value), FormatMemory(p.limits.Memory))
		return DefaultMemory
	}
	return int64(bytes)
}

func (p *parser) cpus(e entry) float64 {
	v, ok := p.scalar(e, "a number like 0.5")
	if !ok {
		return DefaultCPUs
	}
	n, err := strconv.ParseFloat(v.Value, 64)
	if (v.ShortTag() != "!!int" && v.ShortTag() != "!!float") || err != nil || math.IsNaN(n) {
		p.add(v.Line, "cpus must be a number like 0.5 or 2, got %s", describe(v))
		return DefaultCPUs
	}
	if n < 0.01 || n > MaxCPUs {
		p.add(v.Line, "cpus must be from 0.01 to %g, got %s", MaxCPUs, clipValue(v.Value))
		return DefaultCPUs
	}
	if p.limits.CPUs > 0 && n > p.limits.CPUs {
		p.add(v.Line, "cpus %s is above the operator's cap KEYSTONE_MAX_CPUS=%g", clipValue(v.Value), p.limits.CPUs)
		return DefaultCPUs
	}
	return n
}

func (p *parser) env(e entry) map[string]string {
	entries, ok := p.mapping(e.value, "env", nil)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(entries))
	for _, kv := range entries {
		switch {
		case !envNamePattern.MatchString(kv.key):
			p.add(kv.line, "env name %q must be letters, digits and _ and not start with a digit", clipValue(kv.key))
			continue
		case kv.key == "PORT":
			p.add(kv.line, "env PORT is set by Keystone to the app's port: remove it")
			continue
		}
		v := resolve(kv.value)
		if v == nil || v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
			p.add(lineOf(v, kv.line), "env %s must be a plain value (quote it: \"\" for empty), got %s", kv.key, describe(v))
			continue
		}
		if len(v.Value) > maxEnvValue || strings.ContainsRune(v.Value, 0) {
			p.add(v.Line, "env %s: value is longer than %d KiB or holds a NUL character", kv.key, maxEnvValue>>10)
			continue
		}
		out[kv.key] = v.Value // the text as written: 4 stays "4", true stays "true"
	}
	return out
}

// relativePath checks a path inside the repository and returns it cleaned.
func relativePath(s string) (string, string) {
	clean := path.Clean(s)
	switch {
	case len(s) > maxPath:
		return clean, fmt.Sprintf("is longer than %d characters", maxPath)
	case strings.HasPrefix(s, "/"):
		return clean, "must be relative to the repository"
	case clean == ".." || strings.HasPrefix(clean, "../"):
		return clean, "must stay inside the repository"
	case strings.ContainsRune(s, '\\') || strings.IndexFunc(s, unicode.IsControl) >= 0:
		return clean, "must be a plain path with / separators"
	}
	return clean, ""
}

// branchProblem applies git's rules for branch names that matter here.
func branchProblem(s string) string {
	switch {
	case len(s) > maxPath:
		return fmt.Sprintf("is longer than %d characters", maxPath)
	case strings.HasPrefix(s, "-") || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
		strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock"):
		return "is not a valid git branch name"
	case strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.Contains(s, "//") ||
		strings.HasPrefix(s, "refs/"):
		return "is not a valid git branch name (give the name without refs/heads/)"
	case strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("~^:?*[\\", r) }) >= 0:
		return "is not a valid git branch name"
	}
	return ""
}

func badPathRune(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) }

// lineOf returns n's line, or fallback's when n is nil.
func lineOf(n *yaml.Node, fallback ...int) int {
	if n != nil && n.Line > 0 {
		return n.Line
	}
	if len(fallback) > 0 {
		return fallback[0]
	}
	return 0
}

// describe names what a node is, for "got ..." in problems.
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!str":
			return fmt.Sprintf("the string %q", clipValue(n.Value))
		case "!!int", "!!float":
			return "the number " + clipValue(n.Value)
		case "!!bool":
			return "the boolean " + clipValue(n.Value)
		default:
			return clipValue(n.Value)
		}
	}
	return "something else"
}
