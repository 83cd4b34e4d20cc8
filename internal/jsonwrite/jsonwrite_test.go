package jsonwrite

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
)

// The strings JSON and HTML escaping care about, and every single byte.
var pieces = func() []string {
	ps := []string{
		"", "plain", "Zoë", "caf\u00e9", "漢字", "🙂", "emoji \U0001F600", "<b>&amp;</b>", "a & b", "x > y",
		`say "hi"`, `back\slash`, "tab\tnew\nline\rret", "\x00\x01\x1f", "\x7f del", "\b\f",
		"\u2028line\u2029para", "\u2029", "\u2028", "em—dash", "\xff\xfeinvalid", "\xe2\x80", "\xe2\x80\xa8", "/slash/",
	}
	for c := range 256 {
		ps = append(ps, string([]byte{byte(c)}))
	}
	return ps
}()

// genStrings returns every piece, then random concatenations of them.
func genStrings(seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	out := append([]string(nil), pieces...)
	for range 2000 {
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		out = append(out, b.String())
	}
	return out
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 2*3600), time.FixedZone("X<&>", -(5*3600 + 30*60))}

func genTimes(seed uint64) []time.Time {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	out := []time.Time{
		{},
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 27, 6, 0, 0, 123456789, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for range 500 {
		t := time.Unix(rng.Int64N(4e11)-2e11, 0)
		if rng.IntN(2) == 0 {
			t = t.Add(time.Duration(rng.IntN(1e9)))
		}
		out = append(out, t.In(zones[rng.IntN(len(zones))]))
	}
	return out
}

func TestStringIsEncodingJSON(t *testing.T) {
	for _, s := range genStrings(1) {
		want, _ := json.Marshal(s)
		if got := String([]byte("prefix"), s); string(got) != "prefix"+string(want) {
			t.Fatalf("String(%q) = %s; want %s", s, got[len("prefix"):], want)
		}
	}
}

func TestStringsIsEncodingJSON(t *testing.T) {
	ss := genStrings(2)
	for _, list := range [][]string{nil, {}, {""}, ss[:3], ss[len(ss)-5:]} {
		want, _ := json.Marshal(list)
		if got := Strings(nil, list); !bytes.Equal(got, want) {
			t.Fatalf("Strings(%q) = %s; want %s", list, got, want)
		}
	}
}

func TestTimeIsEncodingJSON(t *testing.T) {
	if got, err := Time([]byte("x"), nil); err != nil || string(got) != "xnull" {
		t.Fatalf("Time(nil) = %q, %v; want %q", got, err, "xnull")
	}
	for _, tm := range genTimes(3) {
		want, werr := json.Marshal(tm)
		got, err := Time([]byte("x"), &tm)
		if werr != nil {
			// What json.Marshal refuses is refused, and nothing is appended.
			if err == nil || string(got) != "x" {
				t.Fatalf("Time(%v) = %q, %v; want an error", tm, got, err)
			}
			continue
		}
		if err != nil || string(got) != "x"+string(want) {
			t.Fatalf("Time(%v) = %q, %v; want %s", tm, got, err, want)
		}
	}
}

func gqlgen(m graphql.Marshaler) string {
	var b bytes.Buffer
	m.MarshalGQL(&b)
	return b.String()
}

func TestGraphQLStringIsGqlgen(t *testing.T) {
	for _, s := range genStrings(4) {
		want := gqlgen(graphql.MarshalString(s))
		if got := GraphQLString([]byte("prefix"), s); string(got) != "prefix"+want {
			t.Fatalf("GraphQLString(%q) = %s; want %s", s, got[len("prefix"):], want)
		}
	}
}

// A [String!]! through gqlgen's executor is its items' MarshalString in
// brackets; nil is an empty list.
func TestGraphQLStrings(t *testing.T) {
	ss := genStrings(5)
	for _, list := range [][]string{nil, {}, {""}, ss[:3], ss[len(ss)-5:]} {
		arr := graphql.Array{}
		for _, s := range list {
			arr = append(arr, graphql.MarshalString(s))
		}
		if got, want := string(GraphQLStrings(nil, list)), gqlgen(arr); got != want {
			t.Fatalf("GraphQLStrings(%q) = %s; want %s", list, got, want)
		}
	}
}

func TestGraphQLTimeIsGqlgen(t *testing.T) {
	for _, tm := range genTimes(6) {
		if got, want := string(GraphQLTime([]byte("x"), tm)), "x"+gqlgen(graphql.MarshalTime(tm)); got != want {
			t.Fatalf("GraphQLTime(%v) = %s; want %s", tm, got, want)
		}
	}
}

// HTMLEscape over what the gqlgen writers produce is json.Marshal of it
// as a json.RawMessage, and appends nothing when there is nothing to
// escape.
func TestHTMLEscapeIsJSONMarshal(t *testing.T) {
	ss := genStrings(7)
	for i := 0; i+3 <= len(ss); i += 3 {
		doc := []byte(`{"a":`)
		doc = GraphQLString(doc, ss[i])
		doc = append(doc, `,"b":`...)
		doc = GraphQLStrings(doc, ss[i+1:i+3])
		doc = append(doc, '}')
		want, err := json.Marshal(json.RawMessage(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		got := HTMLEscape(append([]byte("prefix"), doc...), len("prefix"))
		if string(got) != "prefix"+string(want) {
			t.Fatalf("HTMLEscape(%s) = %s; want %s", doc, got[len("prefix"):], want)
		}
	}
	plain := []byte(`{"a":"plain"}`)
	if got := HTMLEscape(plain, 0); &got[0] != &plain[0] || len(got) != len(plain) {
		t.Fatal("HTMLEscape copied a value with nothing to escape")
	}
}

// Arbitrary strings and times: every writer equals its reference.
//
//	go test -run '^$' -fuzz FuzzWriters -fuzztime 30s ./internal/jsonwrite
func FuzzWriters(f *testing.F) {
	for _, s := range pieces {
		f.Add(s, int64(1700000000), int64(123456789), 3600)
	}
	f.Fuzz(func(t *testing.T, s string, sec, nsec int64, offset int) {
		want, _ := json.Marshal(s)
		if got := String(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("String(%q) = %s; want %s", s, got, want)
		}
		g := GraphQLString(nil, s)
		if want := gqlgen(graphql.MarshalString(s)); string(g) != want {
			t.Fatalf("GraphQLString(%q) = %s; want %s", s, g, want)
		}
		want, _ = json.Marshal(json.RawMessage(g))
		if got := HTMLEscape(g, 0); !bytes.Equal(got, want) {
			t.Fatalf("HTMLEscape(%s) = %s; want %s", g, got, want)
		}
		tm := time.Unix(sec, nsec).In(time.FixedZone(s, offset%(18*3600)))
		if got, want := string(GraphQLTime(nil, tm)), gqlgen(graphql.MarshalTime(tm)); got != want {
			t.Fatalf("GraphQLTime(%v) = %s; want %s", tm, got, want)
		}
		want, werr := json.Marshal(tm)
		got, err := Time(nil, &tm)
		if (err != nil) != (werr != nil) || err == nil && !bytes.Equal(got, want) {
			t.Fatalf("Time(%v) = %s, %v; want %s, %v", tm, got, err, want, werr)
		}
	})
}
