package web

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseANSI(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []Segment
	}{
		{"plain", "hello world", []Segment{{Text: "hello world"}}},
		{"empty", "", nil},
		{"markup stays text", "<script>alert(1)</script>", []Segment{{Text: "<script>alert(1)</script>"}}},
		{"red then reset", "\x1b[31mred\x1b[0m plain", []Segment{{Text: "red", Class: "ansi-red"}, {Text: " plain"}}},
		{"bold bright green", "\x1b[1;92mok\x1b[m", []Segment{{Text: "ok", Class: "ansi-bright-green ansi-bold"}}},
		{"background and underline", "\x1b[44;4mx\x1b[24my", []Segment{{Text: "x", Class: "ansi-bg-blue ansi-underline"}, {Text: "y", Class: "ansi-bg-blue"}}},
		{"256 colours: first 16 kept", "\x1b[38;5;9ma\x1b[38;5;200mb", []Segment{{Text: "a", Class: "ansi-bright-red"}, {Text: "b"}}},
		{"true colour then bold", "\x1b[38;2;255;0;0;1mx", []Segment{{Text: "x", Class: "ansi-bold"}}},
		{"cursor moves dropped", "a\x1b[2Kb\x1b[1A\x1b[?25lc", []Segment{{Text: "abc"}}},
		{"OSC title dropped (BEL)", "\x1b]0;evil title\x07after", []Segment{{Text: "after"}}},
		{"OSC hyperlink dropped (ST)", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", []Segment{{Text: "link"}}},
		{"charset escape dropped", "\x1b(Bok", []Segment{{Text: "ok"}}},
		{"carriage return keeps the redraw", "10%\r50%\r100%", []Segment{{Text: "100%"}}},
		{"trailing CR and LF", "done\r\n", []Segment{{Text: "done"}}},
		{"control characters dropped, tab kept", "a\x00b\x07c\td\x7f\u009be", []Segment{{Text: "abc\tde"}}},
		{"invalid UTF-8 replaced", "a\xffb", []Segment{{Text: "a\uFFFDb"}}},
		{"unterminated escape", "x\x1b[31", []Segment{{Text: "x"}}},
		{"lone escape", "x\x1b", []Segment{{Text: "x"}}},
		{"same style merges", "\x1b[31ma\x1b[31mb", []Segment{{Text: "ab", Class: "ansi-red"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseANSI(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseANSI(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestPlainLine(t *testing.T) {
	if got := plainLine("\x1b[1;31m<b>Error</b>\x1b[0m: \x1b]0;t\x07x"); got != "<b>Error</b>: x" {
		t.Fatalf("plainLine = %q", got)
	}
}

// allowedClass reports whether c is one of the fixed ANSI classes.
func allowedClass(c string) bool {
	if c == "" {
		return true
	}
	for _, part := range strings.Split(c, " ") {
		name, ok := strings.CutPrefix(part, "ansi-")
		if !ok {
			return false
		}
		name = strings.TrimPrefix(strings.TrimPrefix(name, "bg-"), "bright-")
		switch name {
		case "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white", "bold", "dim", "italic", "underline":
		default:
			return false
		}
	}
	return true
}

// FuzzParseANSI: whatever a log holds, segments are valid UTF-8 text with no
// escape or control characters but tab, and classes from the fixed set.
func FuzzParseANSI(f *testing.F) {
	for _, seed := range []string{"plain", "\x1b[1;31mred\x1b[0m", "\x1b]0;t\x07", "\x1b[38;5;9m\x1b[48;2;1;2;3m",
		"a\rb", "\xff\xfe", "\x1b[", "\x1b]8;;x\x1b\\", "<script>", "\u009b31m"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, s := range parseANSI(in) {
			if s.Text == "" {
				t.Fatalf("empty segment from %q", in)
			}
			if !utf8.ValidString(s.Text) {
				t.Fatalf("invalid UTF-8 %q from %q", s.Text, in)
			}
			for _, r := range s.Text {
				if (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
					t.Fatalf("control character %U in %q from %q", r, s.Text, in)
				}
			}
			if !allowedClass(s.Class) {
				t.Fatalf("class %q from %q is not a fixed ANSI class", s.Class, in)
			}
		}
	})
}
