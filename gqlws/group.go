package gqlws

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// groupCacheSize is how many rendered items a group keeps. Members of a
// group read the same events in the same order, give or take a replay, so
// a few suffice; a miss only costs an execution.
const groupCacheSize = 8

// groups holds the live groups of identical subscriptions, by key.
type groups struct {
	mu sync.Mutex
	m  map[string]*group
}

// group is the subscriptions sharing one key. renderMu makes the first
// member to meet an item execute it while the others wait and reuse it.
type group struct {
	key string
	// members counts the group's subscriptions; changed under groups.mu,
	// read without it (a writer's visit asks it per subscription).
	members atomic.Int32

	// exec renders for every member, under renderMu; set when the group
	// is made, then read-only.
	exec executor

	renderMu sync.Mutex
	mu       sync.Mutex
	keys     [groupCacheSize]uint64
	payloads [groupCacheSize][]byte
	next     int
}

// executor is what runs gqlgen's executor for a group: the response
// handler of the member that made the group, the source whose channel that
// handler reads (other members feed it their items), and that member's
// context without its cancellation, so that it serves the group after that
// member ends. The group's members share the operation text and name, the
// variables the selection set reads and the viewer key, so any member's
// item renders the same under it.
type executor struct {
	src       source
	responses graphql.ResponseHandler
	ctx       context.Context
	// fast renders without gqlgen's executor where it can; nil: never.
	fast Renderer
}

// join adds a member to the group of key, making the group with src,
// responses and ctx as its executor if there is none (and compiling its
// Renderer with compile, when set); made reports that.
func (gs *groups) join(key string, src source, responses graphql.ResponseHandler, ctx context.Context, compile func(context.Context) Renderer) (g *group, made bool) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.m == nil {
		gs.m = map[string]*group{}
	}
	g = gs.m[key]
	if g == nil {
		ex := executor{src: src, responses: responses, ctx: context.WithoutCancel(ctx)}
		if compile != nil {
			ex.fast = compile(ex.ctx)
		}
		g = &group{key: key, exec: ex}
		gs.m[key] = g
		made = true
	}
	g.members.Add(1)
	return g, made
}

// compile is t.Compile for rc, or nil when t has none.
func (t *Transport) compile(rc *graphql.OperationContext) func(context.Context) Renderer {
	if t.Compile == nil {
		return nil
	}
	return func(ctx context.Context) Renderer { return t.Compile(ctx, rc) }
}

func (gs *groups) leave(g *group) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g.members.Add(-1) == 0 && gs.m[g.key] == g {
		delete(gs.m, g.key)
	}
}

func (g *group) lookup(key uint64) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, k := range g.keys {
		if k == key && g.payloads[i] != nil {
			return g.payloads[i]
		}
	}
	return nil
}

func (g *group) store(key uint64, b []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keys[g.next] = key
	g.payloads[g.next] = b
	g.next = (g.next + 1) % groupCacheSize
}

// operationKey names what decides how one item renders for an operation:
// its text, its name, and the values of the variables read anywhere but in
// the arguments of the root subscription field. Those arguments
// (afterRevision, category) choose which items arrive, not how an item
// renders, so subscribers resuming from different revisions still share.
func operationKey(rc *graphql.OperationContext) string {
	var b strings.Builder
	b.WriteString(rc.OperationName)
	b.WriteByte(0)
	b.WriteString(rc.RawQuery)
	b.WriteByte(0)

	used := map[string]bool{}
	var walkValue func(v *ast.Value)
	walkValue = func(v *ast.Value) {
		if v == nil {
			return
		}
		if v.Kind == ast.Variable {
			used[v.Raw] = true
		}
		for _, ch := range v.Children {
			walkValue(ch.Value)
		}
	}
	walkDirectives := func(ds ast.DirectiveList) {
		for _, d := range ds {
			for _, a := range d.Arguments {
				walkValue(a.Value)
			}
		}
	}
	seenFragments := map[string]bool{}
	var walkSet func(set ast.SelectionSet)
	walkSet = func(set ast.SelectionSet) {
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				for _, a := range s.Arguments {
					walkValue(a.Value)
				}
				walkDirectives(s.Directives)
				walkSet(s.SelectionSet)
			case *ast.InlineFragment:
				walkDirectives(s.Directives)
				walkSet(s.SelectionSet)
			case *ast.FragmentSpread:
				walkDirectives(s.Directives)
				if seenFragments[s.Name] {
					continue
				}
				seenFragments[s.Name] = true
				if f := rc.Doc.Fragments.ForName(s.Name); f != nil {
					walkDirectives(f.Directives)
					walkSet(f.SelectionSet)
				}
			}
		}
	}
	op := rc.Operation
	walkDirectives(op.Directives)
	for _, sel := range op.SelectionSet {
		switch s := sel.(type) {
		case *ast.Field:
			// The root field's arguments are left out on purpose.
			walkDirectives(s.Directives)
			walkSet(s.SelectionSet)
		default:
			// A fragment at the root: be conservative, everything counts.
			walkSet(ast.SelectionSet{sel})
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v, _ := json.Marshal(rc.Variables[n])
		b.WriteString(n)
		b.WriteByte('=')
		b.Write(v)
		b.WriteByte(0)
	}
	return b.String()
}
