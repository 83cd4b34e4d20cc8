// Package jsonwrite appends JSON values to byte slices, byte for byte as
// one of two reference encoders writes them, without reflection or an
// intermediate value:
//
//   - encoding/json (String, Strings, Time): what the store writes, so
//     that its records and changelog stay what json.Marshal gives;
//   - gqlgen's marshalers (GraphQLString, GraphQLStrings, GraphQLTime),
//     then json.Marshal of the response around them (HTMLEscape): what a
//     subscriber receives.
//
// The two differ (encoding/json escapes <, >, & and U+2028/U+2029 and
// replaces invalid UTF-8; gqlgen leaves them, and json.Marshal of the
// response escapes the first ones afterwards), so each writer names its
// reference, and the tests compare each with it.
package jsonwrite

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// String appends s as encoding/json writes a string: plain printable
// ASCII as is, anything else (quotes, backslashes, control characters,
// the HTML-sensitive <, > and &, non-ASCII, invalid UTF-8) through
// json.Marshal itself, so the escaping is exactly its own.
func String(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// Strings appends ss as encoding/json writes a []string: null for a nil
// slice.
func Strings(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = String(dst, s)
	}
	return append(dst, ']')
}

// Time appends *t as encoding/json writes a time (null for a nil
// pointer). A time json.Marshal refuses (a year outside 0–9999) is an
// error, with dst as given.
func Time(dst []byte, t *time.Time) ([]byte, error) {
	if t == nil {
		return append(dst, "null"...), nil
	}
	out, err := t.AppendText(append(dst, '"'))
	if err != nil {
		return dst, err
	}
	return append(out, '"'), nil
}

const hexDigits = "0123456789ABCDEF"

// GraphQLString appends s as graphql.MarshalString writes it: quotes,
// backslashes and control characters escaped, everything else (invalid
// UTF-8 included) as is.
func GraphQLString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '\\' && c != '"' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '\t':
			dst = append(dst, `\t`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\\':
			dst = append(dst, `\\`...)
		case '"':
			dst = append(dst, `\"`...)
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// GraphQLStrings appends ss as gqlgen's executor writes a [String!]!: a
// nil slice is an empty list.
func GraphQLStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = GraphQLString(dst, s)
	}
	return append(dst, ']')
}

// GraphQLTime appends t as graphql.MarshalTime writes it: RFC 3339 with
// nanoseconds, any year, and null for the zero time.
func GraphQLTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// HTMLEscape does to dst[start:], a JSON value, what json.Marshal does
// to a json.RawMessage it writes (gqlgen's response data): <, > and &
// become \u003c, \u003e and \u0026, and U+2028 and U+2029 are escaped
// too. Values without any are returned as they are, without copying.
func HTMLEscape(dst []byte, start int) []byte {
	b := dst[start:]
	if !needsHTMLEscape(b) {
		return dst
	}
	var buf bytes.Buffer
	json.HTMLEscape(&buf, b)
	return append(dst[:start], buf.Bytes()...)
}

func needsHTMLEscape(b []byte) bool {
	for i, c := range b {
		switch {
		case c == '<' || c == '>' || c == '&':
			return true
		case c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && b[i+2]&^1 == 0xA8:
			return true
		}
	}
	return false
}
