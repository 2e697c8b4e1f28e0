package web

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Build and container output carries terminal escape sequences. The page
// turns SGR colours and styles into runs of text with fixed classes (the
// template escapes the text), and drops every other escape and control
// character: nothing from a log reaches the page as markup.

// sgr is the style in effect.
type sgr struct {
	fg, bg                       int // -1: default; 0-7 normal, 8-15 bright
	bold, dim, italic, underline bool
}

func (s sgr) class() string {
	var parts []string
	if s.fg >= 0 {
		parts = append(parts, "ansi-"+colourName(s.fg))
	}
	if s.bg >= 0 {
		parts = append(parts, "ansi-bg-"+colourName(s.bg))
	}
	if s.bold {
		parts = append(parts, "ansi-bold")
	}
	if s.dim {
		parts = append(parts, "ansi-dim")
	}
	if s.italic {
		parts = append(parts, "ansi-italic")
	}
	if s.underline {
		parts = append(parts, "ansi-underline")
	}
	return strings.Join(parts, " ")
}

// colourName names colour c: 0-7 the basic colours in SGR order, 8-15
// their bright forms.
func colourName(c int) string {
	const names = "black  red    green  yellow blue   magentacyan   white  "
	name := strings.TrimSpace(names[c%8*7 : c%8*7+7])
	if c >= 8 {
		return "bright-" + name
	}
	return name
}

// parseANSI splits a log line into styled segments. A carriage return keeps
// only what was written after it (progress bars redraw their line).
func parseANSI(line string) []Segment {
	line = strings.TrimRight(line, "\r\n")
	if i := strings.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	line = strings.ToValidUTF8(line, "\uFFFD")
	st := sgr{fg: -1, bg: -1}
	var segs []Segment
	var text strings.Builder
	flush := func() {
		if text.Len() == 0 {
			return
		}
		cls := st.class()
		if n := len(segs); n > 0 && segs[n-1].Class == cls {
			segs[n-1].Text += text.String()
		} else {
			segs = append(segs, Segment{Text: text.String(), Class: cls})
		}
		text.Reset()
	}
	for i := 0; i < len(line); {
		b := line[i]
		if b == 0x1b {
			end, params, final := escapeSequence(line, i)
			if final == 'm' {
				flush()
				st.apply(params)
			}
			i = end
			continue
		}
		r, size := utf8.DecodeRuneInString(line[i:])
		if r == '\t' || (r >= 0x20 && r != 0x7f && (r < 0x80 || r > 0x9f)) {
			text.WriteString(line[i : i+size])
		}
		i += size
	}
	flush()
	return segs
}

// escapeSequence reads the escape sequence starting at line[i] (an ESC) and
// returns where it ends, and for a CSI its parameters and final byte.
func escapeSequence(line string, i int) (end int, params string, final byte) {
	j := i + 1
	if j >= len(line) {
		return j, "", 0
	}
	switch line[j] {
	case '[': // CSI: parameters 0x30-0x3F, intermediates 0x20-0x2F, final 0x40-0x7E
		j++
		start := j
		for j < len(line) && line[j] >= 0x30 && line[j] <= 0x3f {
			j++
		}
		params = line[start:j]
		for j < len(line) && line[j] >= 0x20 && line[j] <= 0x2f {
			j++
		}
		if j < len(line) && line[j] >= 0x40 && line[j] <= 0x7e {
			return j + 1, params, line[j]
		}
		return j, "", 0
	case ']', 'P', '_', '^': // OSC, DCS, APC, PM: up to BEL or ST (ESC \)
		for j++; j < len(line); j++ {
			if line[j] == 0x07 {
				return j + 1, "", 0
			}
			if line[j] == 0x1b && j+1 < len(line) && line[j+1] == '\\' {
				return j + 2, "", 0
			}
		}
		return j, "", 0
	}
	// Two- or three-byte escapes: intermediates, then one final byte.
	for j < len(line) && line[j] >= 0x20 && line[j] <= 0x2f {
		j++
	}
	if j < len(line) && line[j] >= 0x30 && line[j] <= 0x7e {
		j++
	}
	return j, "", 0
}

// apply changes the style by the SGR parameters ("1;31", "38;5;9", "").
func (s *sgr) apply(params string) {
	codes := strings.FieldsFunc(params, func(r rune) bool { return r == ';' || r == ':' })
	if len(codes) == 0 {
		*s = sgr{fg: -1, bg: -1}
		return
	}
	for k := 0; k < len(codes); k++ {
		n, err := strconv.Atoi(codes[k])
		if err != nil {
			continue
		}
		switch {
		case n == 0:
			*s = sgr{fg: -1, bg: -1}
		case n == 1:
			s.bold = true
		case n == 2:
			s.dim = true
		case n == 3:
			s.italic = true
		case n == 4:
			s.underline = true
		case n == 22:
			s.bold, s.dim = false, false
		case n == 23:
			s.italic = false
		case n == 24:
			s.underline = false
		case n >= 30 && n <= 37:
			s.fg = n - 30
		case n == 39:
			s.fg = -1
		case n >= 40 && n <= 47:
			s.bg = n - 40
		case n == 49:
			s.bg = -1
		case n >= 90 && n <= 97:
			s.fg = n - 90 + 8
		case n >= 100 && n <= 107:
			s.bg = n - 100 + 8
		case n == 38 || n == 48:
			colour, used := extendedColour(codes[k+1:])
			k += used
			if n == 38 {
				s.fg = colour
			} else {
				s.bg = colour
			}
		}
	}
}

// extendedColour reads the rest of a 38/48 code: "5;N" (256 colours, of
// which the first 16 map to classes) or "2;R;G;B" (true colour, shown in the
// default colour). It returns the colour (-1 for default) and codes used.
func extendedColour(rest []string) (int, int) {
	if len(rest) == 0 {
		return -1, 0
	}
	switch rest[0] {
	case "5":
		if len(rest) < 2 {
			return -1, 1
		}
		if n, err := strconv.Atoi(rest[1]); err == nil && n >= 0 && n < 16 {
			return n, 2
		}
		return -1, 2
	case "2":
		return -1, min(len(rest), 4)
	}
	return -1, 0
}

// plainLine is a log line with every escape and control character removed,
// for the plain-text log.
func plainLine(line string) string {
	var b strings.Builder
	for _, s := range parseANSI(line) {
		b.WriteString(s.Text)
	}
	return b.String()
}

// logLine formats one stored log line for a page.
func logLine(seq int, text string) LogLine { return LogLine{Seq: seq, Segs: parseANSI(text)} }
