package gqlws

import (
	"context"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

func opContext(t *testing.T, query string, vars map[string]any) *graphql.OperationContext {
	t.Helper()
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		t.Fatal(err)
	}
	return &graphql.OperationContext{RawQuery: query, Doc: doc, Operation: doc.Operations[0], Variables: vars}
}

func TestOperationKeyIgnoresRootArgumentsOnly(t *testing.T) {
	const q = `subscription($after: Revision, $withHistory: Boolean!) {
		integrationEvents(afterRevision: $after) { revision integration { id accountHistory @include(if: $withHistory) { from } } }
	}`
	a := operationKey(opContext(t, q, map[string]any{"after": "1", "withHistory": true}))
	b := operationKey(opContext(t, q, map[string]any{"after": "99", "withHistory": true}))
	c := operationKey(opContext(t, q, map[string]any{"after": "1", "withHistory": false}))
	if a != b {
		t.Errorf("resuming from another revision changed the key:\n%q\n%q", a, b)
	}
	if a == c {
		t.Errorf("a variable the selection reads did not change the key")
	}

	const frag = `subscription($v: Boolean!) { integrationEvents { ...F } } fragment F on IntegrationEvent { revision @skip(if: $v) }`
	if operationKey(opContext(t, frag, map[string]any{"v": true})) == operationKey(opContext(t, frag, map[string]any{"v": false})) {
		t.Errorf("a variable read inside a fragment did not change the key")
	}
	if operationKey(opContext(t, `subscription { integrationEvents { revision } }`, nil)) ==
		operationKey(opContext(t, `subscription { integrationEvents { revision kind } }`, nil)) {
		t.Errorf("different selections share a key")
	}
}

func TestGroupCacheAndRefs(t *testing.T) {
	var gs groups
	first := &pollSource[int]{slot: make(chan int, 1)}
	g, made := gs.join("k", first, nil, context.Background(), nil)
	if !made || g.exec.src != source(first) {
		t.Fatal("the first member did not make the group with its executor")
	}
	if g2, made := gs.join("k", &pollSource[int]{}, nil, context.Background(), nil); g2 != g || made {
		t.Fatal("same key, different groups")
	}
	for i := uint64(1); i <= groupCacheSize+1; i++ {
		g.store(i, []byte{byte(i)})
	}
	if g.lookup(1) != nil {
		t.Error("the oldest entry survived a full ring")
	}
	if b := g.lookup(groupCacheSize + 1); len(b) != 1 || b[0] != groupCacheSize+1 {
		t.Errorf("latest entry: got %v", b)
	}
	gs.leave(g)
	gs.leave(g)
	if g2, made := gs.join("k", first, nil, context.Background(), nil); g2 == g || !made {
		t.Error("a group outlived its last member")
	}
}

func TestShareFeedsTheExecutorsChannel(t *testing.T) {
	exec := &pollSource[int]{slot: make(chan int, 1)}
	items := []int{7}
	member := &pollSource[int]{slot: make(chan int, 1), key: func(v int) uint64 { return uint64(v) },
		poll: func() (int, bool, bool) {
			if len(items) == 0 {
				return 0, false, true
			}
			v := items[0]
			items = items[1:]
			return v, true, true
		}}
	if (&pollSource[string]{}).share(exec) {
		t.Fatal("shared a channel of another item type")
	}
	if !member.share(exec) {
		t.Fatal("could not share a channel of the same item type")
	}
	if key, state := member.take(); state != itemGot || key != 7 {
		t.Fatalf("take: %d %d", key, state)
	}
	member.feed()
	if got := <-exec.slot; got != 7 {
		t.Fatalf("the executor's channel got %d; want 7", got)
	}
}

// A subscription alone in its group, or in none, writes a backlog several
// items per visit; members of a larger group one, so that they move
// through events together.
func TestVisitLimit(t *testing.T) {
	var gs groups
	if l := (&sub{}).visitLimit(); l != soloVisit {
		t.Fatalf("ungrouped: %d items per visit; want %d", l, soloVisit)
	}
	g, _ := gs.join("k", nil, nil, context.Background(), nil)
	s := &sub{group: g}
	if l := s.visitLimit(); l != soloVisit {
		t.Fatalf("alone in its group: %d items per visit; want %d", l, soloVisit)
	}
	gs.join("k", nil, nil, context.Background(), nil)
	if l := s.visitLimit(); l != 1 {
		t.Fatalf("in a group of two: %d items per visit; want 1", l)
	}
	gs.leave(g)
	if l := s.visitLimit(); l != soloVisit {
		t.Fatalf("alone again: %d items per visit; want %d", l, soloVisit)
	}
}
