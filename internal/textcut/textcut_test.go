package textcut

import (
	"testing"
	"unicode/utf8"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"aé", 2, "a"},  // é is two bytes: not split
		{"aé", 3, "aé"}, // fits
		{"日本", 4, "日"},  // three-byte runes
		{"日本", 2, ""},   // nothing whole fits
		{"x🙂y", 4, "x"}, // a four-byte rune
		{"abc", 0, ""},
		{"abc", -1, ""},
	} {
		if got := Bytes(tc.in, tc.n); got != tc.want {
			t.Errorf("Bytes(%q, %d): got %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func FuzzBytes(f *testing.F) {
	f.Add("Subscriber for 日本語 already exists", 20)
	f.Fuzz(func(t *testing.T, s string, n int) {
		got := Bytes(s, n)
		if len(got) > max(n, 0) || len(got) > len(s) || s[:len(got)] != got {
			t.Fatalf("Bytes(%q, %d) = %q: not a prefix within the limit", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Bytes(%q, %d) = %q split a rune", s, n, got)
		}
	})
}
