package web

import (
	"html/template"
	"strconv"
	"strings"
)

// Fragments: the small pieces pages repeat (links, times, commits, badges,
// log lines, and the rows of the two long tables) render themselves,
// escaping every value for text and for double-quoted attributes; classes
// come from fixed sets. Through the template, a row of the overview costs
// some forty reflective calls; here a few microseconds, which keeps the
// overview of a hundred apps and a log of thousands of lines fast (see
// BenchmarkRenderOverview and BenchmarkPages). Page structure and headers
// stay in the templates.

// htmlBuilder writes markup, escaping every value.
type htmlBuilder struct{ strings.Builder }

func (b *htmlBuilder) raw(s string) { b.WriteString(s) }

// text writes s escaped: & < > " ' become entities, as html.EscapeString
// does, without allocating.
func (b *htmlBuilder) text(s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var ent string
		switch s[i] {
		case '&':
			ent = "&amp;"
		case '<':
			ent = "&lt;"
		case '>':
			ent = "&gt;"
		case '"':
			ent = "&#34;"
		case '\'':
			ent = "&#39;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(ent)
		last = i + 1
	}
	b.WriteString(s[last:])
}

func (b *htmlBuilder) html() template.HTML { return template.HTML(b.String()) }
func (b *htmlBuilder) cell(label string)   { b.raw(`</td><td data-label="` + label + `">`) }
func (b *htmlBuilder) muted(s string)      { b.raw(`<span class="muted">` + s + `</span>`) }

// textOrDash writes s, or a muted dash when it is empty.
func (b *htmlBuilder) textOrDash(s string) {
	if s == "" {
		b.muted("—")
		return
	}
	b.text(s)
}

// fragment is what renders itself into a builder.
type fragment interface{ write(b *htmlBuilder) }

func render(f fragment) template.HTML {
	var b htmlBuilder
	f.write(&b)
	return b.html()
}

// Link is a link with its text.
type Link struct {
	Href, Text string
}

// HTML renders the link.
func (l Link) HTML() template.HTML { return render(l) }

func (l Link) write(b *htmlBuilder) {
	b.raw(`<a href="`)
	b.text(l.Href)
	b.raw(`">`)
	b.text(l.Text)
	b.raw(`</a>`)
}

// HTML renders the time relative, with the absolute time beside it, as a
// link when the time has one.
func (t Time) HTML() template.HTML { return render(t) }

func (t Time) write(b *htmlBuilder) {
	if t.Href != "" {
		b.raw(`<a href="`)
		b.text(t.Href)
		b.raw(`">`)
	}
	b.raw(`<time datetime="`)
	b.text(t.ISO)
	b.raw(`" title="`)
	b.text(t.Abs)
	b.raw(`">`)
	b.text(t.Rel)
	b.raw(`</time> <span class="abs">`)
	b.text(t.Abs)
	b.raw(`</span>`)
	if t.Href != "" {
		b.raw(`</a>`)
	}
}

// HTML renders the short SHA linked to its commit on GitHub.
func (c Commit) HTML() template.HTML { return render(c) }

func (c Commit) write(b *htmlBuilder) {
	b.raw(`<a class="sha" href="`)
	b.text(c.URL)
	b.raw(`" title="`)
	b.text(c.Full)
	b.raw(`"><code>`)
	b.text(c.Short)
	b.raw(`</code></a>`)
}

// HTML renders the badge.
func (bd Badge) HTML() template.HTML { return render(bd) }

func (bd Badge) write(b *htmlBuilder) {
	b.raw(`<span class="badge `)
	b.text(bd.Class)
	b.raw(`">`)
	b.text(bd.Text)
	b.raw(`</span>`)
}

// HTML renders the line with an anchor id, each styled run in a span of
// its class, and a line break.
func (l LogLine) HTML() template.HTML { return render(l) }

func (l LogLine) write(b *htmlBuilder) {
	b.raw(`<span class="line" id="L`)
	b.raw(strconv.Itoa(l.Seq))
	b.raw(`">`)
	for _, s := range l.Segs {
		if s.Class == "" {
			b.text(s.Text)
			continue
		}
		b.raw(`<span class="`)
		b.text(s.Class)
		b.raw(`">`)
		b.text(s.Text)
		b.raw(`</span>`)
	}
	b.raw("</span>\n")
}

// HTML renders the app's row of the overview.
func (r AppRow) HTML() template.HTML {
	var b htmlBuilder
	b.Grow(1200)
	b.raw(`<tr><th scope="row" data-label="App">`)
	r.App.write(&b)
	if r.Locked {
		b.raw(` <span class="badge warn">locked</span>`)
	}
	b.raw(`</th><td data-label="Repository">`)
	r.Repository.write(&b)
	b.cell("Branch")
	b.raw(`<code>`)
	b.text(r.Branch)
	b.raw(`</code>`)
	b.cell("Serving")
	if r.Serving != nil {
		r.Serving.write(&b)
	} else {
		b.muted("nothing")
	}
	b.cell("Last deploy")
	r.State.write(&b)
	if r.LastDeploy != nil {
		b.raw(" ")
		r.LastDeploy.write(&b)
	}
	b.cell("Health")
	b.textOrDash(r.Health)
	b.cell("URL")
	if r.URL != nil {
		r.URL.write(&b)
	} else {
		b.muted("—")
	}
	b.raw("</td></tr>\n")
	return b.html()
}

// HTML renders the deployment's row of an app's history.
func (r DeploymentRow) HTML() template.HTML {
	var b htmlBuilder
	b.Grow(1000)
	b.raw(`<tr><th scope="row" data-label="#">`)
	r.Number.write(&b)
	b.raw(`</th><td data-label="Kind">`)
	b.text(r.Kind)
	b.cell("Commit")
	r.Commit.write(&b)
	b.cell("Who")
	b.text(r.Actor)
	b.raw(` <span class="muted">via `)
	b.text(r.Trigger)
	b.raw(`</span>`)
	b.cell("Result")
	r.State.write(&b)
	b.raw(" ")
	b.text(r.Description)
	b.cell("Duration")
	b.textOrDash(r.Duration)
	b.cell("Queued")
	r.Queued.write(&b)
	b.raw("</td></tr>\n")
	return b.html()
}
