package keystoneyml

import (
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxDomains is how many host names one app may claim under domains:.
const MaxDomains = 10

// domainKeys are the app keys this file reads (SPEC §5, §13).
var domainKeys = []string{"domains"}

// hostPattern is a lower-case DNS name of at least two labels: letters,
// digits and hyphens, no label starting or ending with a hyphen.
var hostPattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// domains reads the host names an app claims: a list of at most MaxDomains
// distinct lower-case DNS names, without wildcards, ports, schemes or
// trailing dots. Whether a name may be claimed (KEYSTONE_ALLOWED_DOMAINS,
// another app's name) is decided at deploy, not here.
func (p *parser) domains(e entry) []string {
	v := resolve(e.value)
	if v == nil || v.Kind != yaml.SequenceNode {
		p.add(lineOf(v, e.line), "domains must be a list of host names like [shop.example.com], got %s", describe(v))
		return nil
	}
	if len(v.Content) > MaxDomains {
		p.add(v.Line, "domains: at most %d host names, got %d", MaxDomains, len(v.Content))
		return nil
	}
	var out []string
	for _, item := range v.Content {
		n := resolve(item)
		if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			p.add(lineOf(n, e.line), "domains: %s is not a host name", describe(n))
			continue
		}
		if why := hostProblem(n.Value); why != "" {
			p.add(n.Line, "domains: %q %s", clipValue(n.Value), why)
			continue
		}
		if slices.Contains(out, n.Value) {
			p.add(n.Line, "domains: %s is listed twice", n.Value)
			continue
		}
		out = append(out, n.Value)
	}
	return out
}

// hostProblem says what keeps s from being a host name domains: may list;
// "" when nothing does.
func hostProblem(s string) string {
	switch {
	case strings.Contains(s, "*"):
		return "is a wildcard: list each host name"
	case strings.Contains(s, "://") || strings.ContainsAny(s, "/:"):
		return "must be a bare host name, without scheme, port or path"
	case s != strings.ToLower(s):
		return "must be lower case"
	case len(s) > 253 || !hostPattern.MatchString(s):
		return "is not a host name like shop.example.com"
	}
	return ""
}
