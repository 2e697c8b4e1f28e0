package audit

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCanonicalJSONEquivalentTextsAgree(t *testing.T) {
	cases := []struct {
		name  string
		texts []string // all denote the same value
		want  string
	}{
		{"key order", []string{`{"b":1,"a":2}`, `{"a":2,"b":1}`, ` { "a" : 2 , "b" : 1 } `}, `{"a":2,"b":1}`},
		{"jsonb key order (length first)", []string{`{"bb":1,"a":2,"ccc":3}`, `{"a": 2, "bb": 1, "ccc": 3}`}, `{"a":2,"bb":1,"ccc":3}`},
		{"nested", []string{`{"z":{"y":[1,{"b":true,"a":null}]},"a":[]}`, `{"a":[],"z":{"y":[1,{"a":null,"b":true}]}}`}, `{"a":[],"z":{"y":[1,{"a":null,"b":true}]}}`},
		{"integers", []string{`[1,-0,0,100]`, `[1.0,0,0.0e5,1e2]`, `[10e-1,-0.0,0E0,100.000]`}, `[1,0,0,100]`},
		{"decimals", []string{`[0.5,-12.25]`, `[5e-1,-1225e-2]`, `[0.50,-12.2500]`}, `[5e-1,-1225e-2]`},
		{"huge integer exact", []string{`[12345678901234567890123]`, `[1.2345678901234567890123e22]`}, `[12345678901234567890123]`},
		{"21 digits", []string{`[1e20]`, `[100000000000000000000]`}, `[100000000000000000000]`},
		{"22 digits", []string{`[1e21]`, `[1000000000000000000000]`}, `[1e21]`},
		{"tiny", []string{`[1e-7]`, `[0.0000001]`}, `[1e-7]`},
		{"beyond float64 precision", []string{`[9007199254740993]`}, `[9007199254740993]`},
		{"unicode escapes", []string{`["caf\u00e9 \u2603 \ud83d\ude00"]`, `["café ☃ 😀"]`}, `["café ☃ 😀"]`},
		{"html escapes of encoding/json", []string{`["\u003cb\u003e \u0026"]`, `["<b> &"]`}, `["<b> &"]`},
		{"control characters", []string{`["a\nb\tc\r\u0001\u001f\"\\\/"]`}, `["a\nb\tc\r\u0001\u001f\"\\/"]`},
		{"NUL dropped", []string{`{"k\u0000":"v\u0000w"}`, `{"k":"vw"}`}, `{"k":"vw"}`},
		{"unicode keys sort by bytes", []string{`{"é":1,"z":2,"Z":3}`, `{"Z":3,"z":2,"é":1}`}, `{"Z":3,"z":2,"é":1}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, text := range c.texts {
				got, err := CanonicalJSON([]byte(text))
				if err != nil {
					t.Fatalf("CanonicalJSON(%s): %v", text, err)
				}
				if string(got) != c.want {
					t.Errorf("CanonicalJSON(%s) = %s, want %s", text, got, c.want)
				}
				if !json.Valid(got) {
					t.Errorf("CanonicalJSON(%s) = %s is not valid JSON", text, got)
				}
			}
		})
	}
}

func TestCanonicalJSONRefusesWhatIsNotOneValue(t *testing.T) {
	for _, text := range []string{``, `{`, `{"a":1} {"b":2}`, `[1,]`, `nope`} {
		if got, err := CanonicalJSON([]byte(text)); err == nil {
			t.Errorf("CanonicalJSON(%q) = %s, want an error", text, got)
		}
	}
}

func TestCanonicalNumberRefusesAbsurdExponents(t *testing.T) {
	// The limit is on the canonical exponent: the digits moved into or out
	// of the exponent count, so whatever is accepted comes back unchanged.
	for _, in := range []string{"1e99999999", "10e1000000", "0.01e-999999", "1e-1000001"} {
		if out, err := canonicalNumber(in); err == nil {
			t.Errorf("canonicalNumber(%q) = %q, want refused", in, out)
		}
	}
	for in, want := range map[string]string{"1e1000000": "1e1000000", "100e999998": "1e1000000", "0.1e-999999": "1e-1000000"} {
		if out, err := canonicalNumber(in); err != nil || out != want {
			t.Errorf("canonicalNumber(%q) = %q, %v; want %q", in, out, err, want)
		}
	}
}

// FuzzCanonicalJSON: the canonical text is valid JSON without NUL, and
// canonicalising it again changes nothing (what verify recomputes from the
// stored text is what the writer hashed).
func FuzzCanonicalJSON(f *testing.F) {
	for _, seed := range []string{`{"b":[1,2.50,{"x":"\u00e9"}],"a":null}`, `-0.0e-3`, `"\ud800"`, `[true,false]`, `{"a\u0000":1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		once, err := CanonicalJSON(raw)
		if err != nil {
			return
		}
		if !json.Valid(once) {
			t.Fatalf("not valid JSON: %q -> %q", raw, once)
		}
		twice, err := CanonicalJSON(once)
		if err != nil || string(twice) != string(once) {
			t.Fatalf("not a fixed point: %q -> %q -> %q (%v)", raw, once, twice, err)
		}
		if strings.ContainsRune(string(once), 0) {
			t.Fatalf("NUL kept: %q", once)
		}
	})
}
