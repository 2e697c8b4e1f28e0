package keystoneyml_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
)

// appWith is a one-app file whose fifth line on is extra.
func appWith(extra string) string {
	return "apps:\n  - name: web\n    branch: main\n    port: 80\n" + extra
}

// TestParseDomains: domains: is a short list of distinct lower-case host
// names, in file order, stored with the app.
func TestParseDomains(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"flow list", appWith("    domains: [shop.example.com, www.shop.example.com]\n"), []string{"shop.example.com", "www.shop.example.com"}},
		{"block list", appWith("    domains:\n      - b.example.org\n      - a.example.org\n"), []string{"b.example.org", "a.example.org"}},
		{"empty list", appWith("    domains: []\n"), nil},
		{"absent", appWith(""), nil},
		{"digits and hyphens", appWith("    domains: [x-1.9a.example.com]\n"), []string{"x-1.9a.example.com"}},
		{"the maximum", appWith(fmt.Sprintf("    domains: [%s]\n", manyHosts(keystoneyml.MaxDomains))), strings.Split(manyHosts(keystoneyml.MaxDomains), ", ")},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := keystoneyml.Parse([]byte(c.yaml), "")
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Apps[0].Domains; !slices.Equal(got, c.want) {
				t.Errorf("domains %q, want %q", got, c.want)
			}
			raw, err := json.Marshal(f.Apps[0])
			if err != nil {
				t.Fatal(err)
			}
			back, err := keystoneyml.DecodeApp(raw)
			if err != nil || !slices.Equal(back.Domains, c.want) {
				t.Errorf("stored form: %q %v", back.Domains, err)
			}
		})
	}
}

// TestParseDomainsInvalid: every bad domains: value is a Problem naming its line.
func TestParseDomainsInvalid(t *testing.T) {
	for _, c := range []struct{ name, extra, want string }{
		{"not a list", "    domains: shop.example.com\n", `line 5: domains must be a list of host names like [shop.example.com], got the string "shop.example.com"`},
		{"a mapping", "    domains: {a: b}\n", `line 5: domains must be a list of host names like [shop.example.com], got a mapping`},
		{"wildcard", "    domains: [\"*.example.com\"]\n", `line 5: domains: "*.example.com" is a wildcard: list each host name`},
		{"port", "    domains: [\"shop.example.com:8443\"]\n", `line 5: domains: "shop.example.com:8443" must be a bare host name, without scheme, port or path`},
		{"scheme", "    domains:\n      - https://shop.example.com\n", `line 6: domains: "https://shop.example.com" must be a bare host name, without scheme, port or path`},
		{"path", "    domains: [shop.example.com/x]\n", `line 5: domains: "shop.example.com/x" must be a bare host name, without scheme, port or path`},
		{"upper case", "    domains: [Shop.Example.com]\n", `line 5: domains: "Shop.Example.com" must be lower case`},
		{"one label", "    domains: [localhost]\n", `line 5: domains: "localhost" is not a host name like shop.example.com`},
		{"trailing dot", "    domains: [shop.example.com.]\n", `line 5: domains: "shop.example.com." is not a host name like shop.example.com`},
		{"underscore", "    domains: [a_b.example.com]\n", `line 5: domains: "a_b.example.com" is not a host name like shop.example.com`},
		{"label starts with a hyphen", "    domains: [-a.example.com]\n", `line 5: domains: "-a.example.com" is not a host name like shop.example.com`},
		{"label too long", "    domains: [" + strings.Repeat("a", 64) + ".example.com]\n", `line 5: domains: "` + strings.Repeat("a", 40) + `…" is not a host name like shop.example.com`},
		{"IP address", "    domains: [\"10.0.0.1\"]\n", ""}, // numeric labels are DNS-valid; KEYSTONE_ALLOWED_DOMAINS refuses it at deploy
		{"unicode", "    domains: [bücher.example.com]\n", `line 5: domains: "bücher.example.com" is not a host name like shop.example.com`},
		{"space", "    domains: [\"a b.example.com\"]\n", `line 5: domains: "a b.example.com" is not a host name like shop.example.com`},
		{"number", "    domains: [42]\n", `line 5: domains: the number 42 is not a host name`},
		{"null item", "    domains:\n      -\n", `line 6: domains: nothing is not a host name`},
		{"nested list", "    domains: [[a.example.com]]\n", `line 5: domains: a list is not a host name`},
		{"duplicate", "    domains:\n      - a.example.com\n      - a.example.com\n", `line 7: domains: a.example.com is listed twice`},
		{"too many", fmt.Sprintf("    domains: [%s]\n", manyHosts(keystoneyml.MaxDomains+1)), fmt.Sprintf("line 5: domains: at most %d host names, got %d", keystoneyml.MaxDomains, keystoneyml.MaxDomains+1)},
		{"key twice", "    domains: [a.example.com]\n    domains: [b.example.com]\n", `line 6: duplicate key "domains" (first at line 5)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := keystoneyml.Parse([]byte(appWith(c.extra)), "")
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var pe *keystoneyml.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse: %v (%+v), want a *keystoneyml.Error", err, f)
			}
			if err.Error() != c.want {
				t.Errorf("first problem\n got %q\nwant %q", err.Error(), c.want)
			}
		})
	}
}

func manyHosts(n int) string {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d.example.com", i)
	}
	return strings.Join(hosts, ", ")
}
