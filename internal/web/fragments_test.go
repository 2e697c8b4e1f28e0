package web

import (
	"html"
	"strings"
	"testing"
)

// TestFragmentEscapingMatchesTheStandardLibrary: the builder's escaping is
// html.EscapeString's, for every byte that matters.
func TestFragmentEscapingMatchesTheStandardLibrary(t *testing.T) {
	for _, s := range []string{"", "plain", `<script>alert("x")</script>`, "a&b", "'quoted'", "\"><img src=x onerror=alert(1)>",
		"ünïcödé & <tags>", strings.Repeat("<&>", 100)} {
		var b htmlBuilder
		b.text(s)
		if got, want := b.String(), html.EscapeString(s); got != want {
			t.Errorf("text(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestFragments(t *testing.T) {
	hostile := `"><script>x</script>`
	cases := []struct {
		name string
		got  string
		want string
	}{
		{"link", string(Link{Href: "/apps/o/r/a?x=1&y=2", Text: hostile}.HTML()),
			`<a href="/apps/o/r/a?x=1&amp;y=2">&#34;&gt;&lt;script&gt;x&lt;/script&gt;</a>`},
		{"time", string(Time{ISO: "2025-01-02T03:04:05Z", Abs: "2025-01-02 03:04:05 UTC", Rel: "just now"}.HTML()),
			`<time datetime="2025-01-02T03:04:05Z" title="2025-01-02 03:04:05 UTC">just now</time> <span class="abs">2025-01-02 03:04:05 UTC</span>`},
		{"linked time", string(Time{ISO: "i", Abs: "a", Rel: "r", Href: "/deployments/1"}.HTML()),
			`<a href="/deployments/1"><time datetime="i" title="a">r</time> <span class="abs">a</span></a>`},
		{"commit", string(Commit{Short: "abc1234", Full: "abc1234" + hostile, URL: "https://github.com/o/r/commit/abc"}.HTML()),
			`<a class="sha" href="https://github.com/o/r/commit/abc" title="abc1234&#34;&gt;&lt;script&gt;x&lt;/script&gt;"><code>abc1234</code></a>`},
		{"badge", string(Badge{Text: "ok", Class: "ok"}.HTML()), `<span class="badge ok">ok</span>`},
		{"log line", string(logLine(7, "\x1b[31m<b>\x1b[0m&").HTML()),
			`<span class="line" id="L7"><span class="ansi-red">&lt;b&gt;</span>&amp;</span>` + "\n"},
		{"app row without deployments", string(AppRow{App: Link{"/apps/o/r/a", "a"}, Repository: Link{"https://github.com/o/r", "o/r"},
			Branch: "main", State: Badge{"never deployed", "muted"}}.HTML()),
			`<tr><th scope="row" data-label="App"><a href="/apps/o/r/a">a</a></th><td data-label="Repository"><a href="https://github.com/o/r">o/r</a></td>` +
				`<td data-label="Branch"><code>main</code></td><td data-label="Serving"><span class="muted">nothing</span></td>` +
				`<td data-label="Last deploy"><span class="badge muted">never deployed</span></td><td data-label="Health"><span class="muted">—</span></td>` +
				`<td data-label="URL"><span class="muted">—</span></td></tr>` + "\n"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
	}
}
