package httpapi

import (
	"fmt"

	"github.com/vektah/gqlparser/v2/ast"
)

// Defaults of the document limits (Options.MaxFields,
// Options.MaxSelectionFields, Options.MaxMerges). The settings page asks
// for a few dozen fields; a full introspection query, the largest
// document a person sends, resolves to under 500 fields with no merge;
// a query naming the same field twice, or spreading two fragments that
// select it, asks for one merge.
const (
	DefaultMaxFields          = 2000
	DefaultMaxSelectionFields = 500
	DefaultMaxMerges          = 5000
)

// Names of the limits in extensions.limit of a LIMIT_EXCEEDED error, and
// in the refusals metric.
const (
	LimitFields          = "fields"
	LimitSelectionFields = "selectionFields"
	LimitMerges          = "merges"
	LimitWork            = "work"
	LimitDepth           = "depth"
	LimitComplexity      = "complexity"
	LimitIntrospection   = "introspection"
)

// documentLimits bound what one document may ask of validation, cost
// analysis and execution. They hold for every operation and every
// fragment definition in the document, since validation walks them all,
// whichever operation is then run.
type documentLimits struct {
	// maxFields bounds the fields of the document with every fragment
	// spread resolved: the sum over its operations and fragment
	// definitions, each fragment spread and inline fragment counting as
	// one field besides the fields it brings.
	maxFields int
	// maxSelectionFields bounds the fields of one selection set once
	// its fragment spreads and inline fragments are resolved and the
	// fields sharing a response name at one place are merged — the set
	// the overlapping-fields rule compares pairwise.
	maxSelectionFields int
	// maxMerges bounds the pairs that the overlapping-fields rule
	// compares: over every merged selection set, the pairs of its fields
	// sharing a response name and the pairs of distinct fragments spread
	// into it. Its work grows with these pairs, not with the fields.
	maxMerges int
	// maxDepth bounds the nesting of an operation's fields, fragments
	// counted where they are spread.
	maxDepth int
	// noIntrospection refuses __schema and __type.
	noIntrospection bool
}

// documentReport is what analyzeDocument found.
type documentReport struct {
	// Visited counts the selections (fields, fragment spreads, inline
	// fragments) the analysis looked at, each time it looked. It never
	// exceeds Budget: the document's own selections plus maxFields.
	Visited, Budget int
	// Fields, Merges and Depth are as the limits define them; Fields
	// and Merges stop counting past their limits.
	Fields, Merges, Depth int
}

// documentError is a refusal: Limit is one of the Limit names, or empty
// for a document validation would refuse anyway (a fragment cycle).
type documentError struct {
	Limit   string
	Max     int
	Message string
}

// analyzeDocument checks doc against the limits without expanding a
// fragment more than once per definition: each fragment's size and depth
// are computed once and reused wherever it is spread (first pass), and
// only once the resolved size is known to be within maxFields are merged
// selection sets built (second pass), so the work is linear in the
// document plus maxFields whatever its fragments do. It runs on the
// parsed document, before validation, which is why it cannot rely on
// validation's guarantees: unknown fragments count as empty, and a
// fragment cycle is refused here as validation would refuse it.
func analyzeDocument(doc *ast.QueryDocument, lim documentLimits) (documentReport, *documentError) {
	a := &analyzer{
		lim:   lim,
		frags: make(map[string]*ast.FragmentDefinition, len(doc.Fragments)),
		memo:  make(map[*ast.FragmentDefinition]*fragmentCost, len(doc.Fragments)),
		limit: lim.maxFields + 1,
	}
	for _, f := range doc.Fragments {
		if _, ok := a.frags[f.Name]; !ok {
			a.frags[f.Name] = f // the first of duplicates, as validation resolves them
		}
	}
	// The budget cannot be reached by the passes below (each selection is
	// looked at once in the first, the second stops at maxFields); it is
	// a bound enforced, not only argued.
	a.budget = countSelections(doc) + lim.maxFields
	rep := func() documentReport {
		return documentReport{Visited: a.visited, Budget: a.budget, Fields: a.total, Merges: a.merges, Depth: a.depth}
	}

	// First pass: sizes and depths, memoised per fragment definition.
	for _, op := range doc.Operations {
		size, depth := a.selectionSet(op.SelectionSet)
		a.total = satAdd(a.total, size, a.limit)
		a.depth = max(a.depth, depth)
	}
	for _, f := range doc.Fragments {
		a.total = satAdd(a.total, a.fragment(f).size, a.limit)
	}
	if a.err != nil {
		return rep(), a.err
	}
	if lim.maxDepth > 0 && a.depth > lim.maxDepth {
		return rep(), &documentError{Limit: LimitDepth, Max: lim.maxDepth,
			Message: fmt.Sprintf("The operation nests selections deeper than %d levels.", lim.maxDepth)}
	}
	if a.total > lim.maxFields {
		return rep(), &documentError{Limit: LimitFields, Max: lim.maxFields,
			Message: fmt.Sprintf("The document has more than %d fields with its fragments resolved.", lim.maxFields)}
	}

	// Second pass: merged selection sets, from every root validation
	// walks. Its work is at most the sizes summed above.
	for _, op := range doc.Operations {
		a.merged([]ast.SelectionSet{op.SelectionSet})
	}
	for _, f := range doc.Fragments {
		a.merged([]ast.SelectionSet{f.SelectionSet})
	}
	return rep(), a.err
}

type fragmentCost struct {
	size, depth int
	done        bool // false while it is being computed: a cycle
}

type analyzer struct {
	lim   documentLimits
	frags map[string]*ast.FragmentDefinition
	memo  map[*ast.FragmentDefinition]*fragmentCost
	limit int // sizes saturate here

	visited, budget int
	total, depth    int
	merges          int
	err             *documentError
}

// visit counts one selection; false once the budget is spent or the
// document refused, when every walk stops.
func (a *analyzer) visit() bool {
	if a.err != nil {
		return false
	}
	if a.visited >= a.budget {
		a.err = &documentError{Limit: LimitWork, Max: a.budget,
			Message: "The document asks for more work than the server allows."}
		return false
	}
	a.visited++
	return true
}

// selectionSet returns the size (selections, fragments resolved,
// saturating) and the field depth of set.
func (a *analyzer) selectionSet(set ast.SelectionSet) (size, depth int) {
	for _, s := range set {
		if !a.visit() {
			return size, depth
		}
		size = satAdd(size, 1, a.limit)
		var n, d int
		switch s := s.(type) {
		case *ast.Field:
			if a.lim.noIntrospection && (s.Name == "__schema" || s.Name == "__type") {
				a.err = &documentError{Limit: LimitIntrospection, Message: "Introspection is disabled on this server."}
				return size, depth
			}
			n, d = a.selectionSet(s.SelectionSet)
			d++
		case *ast.InlineFragment:
			n, d = a.selectionSet(s.SelectionSet)
		case *ast.FragmentSpread:
			if f := a.frags[s.Name]; f != nil {
				c := a.fragment(f)
				n, d = c.size, c.depth
			}
		}
		size = satAdd(size, n, a.limit)
		depth = max(depth, d)
	}
	return size, depth
}

func (a *analyzer) fragment(f *ast.FragmentDefinition) *fragmentCost {
	if c := a.memo[f]; c != nil {
		if !c.done && a.err == nil {
			a.err = &documentError{Message: fmt.Sprintf("Cannot spread fragment %q within itself.", f.Name)}
		}
		return c
	}
	c := &fragmentCost{}
	a.memo[f] = c
	c.size, c.depth = a.selectionSet(f.SelectionSet)
	c.done = true
	return c
}

// merged collects the fields of sets — selection sets that validation
// merges: the root's, or those of fields sharing a response name at one
// place — with fragments resolved, refuses more than maxSelectionFields
// of them, and goes on into each response name's merged children. A
// fragment spread twice into one collection brings the same fields and
// is collected once. There are no cycles here (the first pass refused
// them), so this ends, and each selection it looks at is one the first
// pass counted in its sizes.
func (a *analyzer) merged(sets []ast.SelectionSet) {
	var (
		order  []string
		groups = map[string][]*ast.Field{}
		seen   map[*ast.FragmentDefinition]bool
		n      int
	)
	var collect func(ast.SelectionSet)
	collect = func(set ast.SelectionSet) {
		for _, s := range set {
			if !a.visit() {
				return
			}
			switch s := s.(type) {
			case *ast.Field:
				n++
				if n > a.lim.maxSelectionFields {
					a.err = &documentError{Limit: LimitSelectionFields, Max: a.lim.maxSelectionFields,
						Message: fmt.Sprintf("A selection set has more than %d fields with its fragments resolved.", a.lim.maxSelectionFields)}
					return
				}
				key := s.Alias
				if key == "" {
					key = s.Name
				}
				if _, ok := groups[key]; !ok {
					order = append(order, key)
				}
				groups[key] = append(groups[key], s)
			case *ast.InlineFragment:
				collect(s.SelectionSet)
			case *ast.FragmentSpread:
				f := a.frags[s.Name]
				if f == nil || seen[f] {
					continue
				}
				if seen == nil {
					seen = map[*ast.FragmentDefinition]bool{}
				}
				seen[f] = true
				collect(f.SelectionSet)
			}
		}
	}
	for _, set := range sets {
		collect(set)
	}
	if a.err != nil {
		return
	}
	a.merges = satAdd(a.merges, pairs(len(seen)), a.lim.maxMerges+1)
	for _, key := range order {
		a.merges = satAdd(a.merges, pairs(len(groups[key])), a.lim.maxMerges+1)
	}
	if a.merges > a.lim.maxMerges {
		a.err = &documentError{Limit: LimitMerges, Max: a.lim.maxMerges,
			Message: fmt.Sprintf("The document repeats fields or fragments at one place more than %d times over; select each once.", a.lim.maxMerges)}
		return
	}
	for _, key := range order {
		if a.err != nil {
			return
		}
		var children []ast.SelectionSet
		for _, f := range groups[key] {
			if len(f.SelectionSet) > 0 {
				children = append(children, f.SelectionSet)
			}
		}
		if len(children) > 0 {
			a.merged(children)
		}
	}
}

// countSelections is the number of selections written in doc, fragments
// not resolved.
func countSelections(doc *ast.QueryDocument) int {
	var count func(ast.SelectionSet) int
	count = func(set ast.SelectionSet) int {
		n := len(set)
		for _, s := range set {
			switch s := s.(type) {
			case *ast.Field:
				n += count(s.SelectionSet)
			case *ast.InlineFragment:
				n += count(s.SelectionSet)
			}
		}
		return n
	}
	n := 0
	for _, op := range doc.Operations {
		n += count(op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		n += count(f.SelectionSet)
	}
	return n
}

// pairs is n choose 2.
func pairs(n int) int { return n * (n - 1) / 2 }

// satAdd adds non-negative a and b, saturating at limit.
func satAdd(a, b, limit int) int {
	if a >= limit || b >= limit-a {
		return limit
	}
	return a + b
}
