// Package audit makes Keystone's audit trail tamper-evident (SPEC §11).
//
// Every stored event carries the SHA-256 of a canonical encoding of itself
// and of the previous event's hash, so changing, removing or reordering a
// stored event breaks the chain; Verify walks it and names the first event
// that does not fit. The encoding is computed from what PostgreSQL gives back
// (jsonb reorders keys and rewrites numbers), so the writer and the verifier
// always hash the same bytes.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// CanonicalJSON returns the canonical text of the JSON value raw: object keys
// sorted by their UTF-8 bytes, no insignificant space, numbers as exact
// decimals in one spelling (1.0, 1e0 and 1 are all "1"), strings escaping only
// what JSON requires. NUL characters are dropped from strings and keys, as
// PostgreSQL cannot store them. Two JSON texts denoting the same value give
// the same canonical text.
func CanonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("canonical JSON: more than one value")
	}
	var b bytes.Buffer
	if err := writeValue(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeValue(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		n, err := canonicalNumber(string(v))
		if err != nil {
			return err
		}
		b.WriteString(n)
	case string:
		writeString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeValue(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		return writeObject(b, v)
	default:
		return fmt.Errorf("canonical JSON: unexpected %T", v)
	}
	return nil
}

func writeObject(b *bytes.Buffer, m map[string]any) error {
	// Dropping NULs may make two keys equal; the later one in key order wins,
	// as it would in PostgreSQL's jsonb.
	clean := make(map[string]any, len(m))
	keys := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		ck := dropNUL(k)
		if _, dup := clean[ck]; !dup {
			keys = append(keys, ck)
		}
		clean[ck] = m[k]
	}
	sort.Strings(keys) // Go compares strings bytewise: UTF-8 byte order
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(b, k)
		b.WriteByte(':')
		if err := writeValue(b, clean[k]); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

const hexDigits = "0123456789abcdef"

// writeString writes s as a JSON string: quote, backslash and control
// characters escaped, everything else as UTF-8. Invalid UTF-8 becomes U+FFFD,
// as encoding/json decodes it.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(dropNUL(s), "\uFFFD") {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[r>>4])
			b.WriteByte(hexDigits[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

func dropNUL(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "")
}

// canonicalNumber rewrites a JSON number as exact decimal digits with no
// trailing zeros, followed by eEXP when the exponent is not 0, except that
// integers of at most 21 digits are written out in full. It never goes
// through float64, so no precision is lost.
func canonicalNumber(s string) (string, error) {
	bad := fmt.Errorf("canonical JSON: %q is not a JSON number", s)
	neg := strings.HasPrefix(s, "-")
	rest := strings.TrimPrefix(s, "-")
	mantissa, expText, hasExp := strings.Cut(strings.ToLower(rest), "e")
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expText)
		// Bounded here only so the arithmetic below cannot overflow; the
		// limit that counts is on the exponent written out.
		if err != nil || e > 1e9 || e < -1e9 {
			return "", bad
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mantissa, ".")
	digits := intPart + frac
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", bad
	}
	exp -= len(frac)
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", nil
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	// The limit applies to the canonical exponent, so that what comes out
	// is always accepted back in (a fixed point): "10e1000000" is refused
	// rather than written as "1e1000001".
	if exp > 1e6 || exp < -1e6 {
		return "", bad
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(digits)
	switch {
	case exp >= 0 && len(digits)+exp <= 21:
		b.WriteString(strings.Repeat("0", exp))
	case exp != 0:
		b.WriteString("e" + strconv.Itoa(exp))
	}
	return b.String(), nil
}
