// Package textcut shortens text for places with a byte limit (a websocket
// close reason is at most 123 bytes) without splitting a UTF-8 sequence.
package textcut

import "unicode/utf8"

// Bytes returns s cut to at most n bytes, at a rune boundary, so that a
// valid UTF-8 string stays valid.
func Bytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
