package httpapi

import (
	"context"
	"testing"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql/introspection"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/bont/switchboard/graph"
)

// FuzzDocumentAnalysis: no document makes the analysis look at more
// selections than its budget (the document's own selections plus the
// fields limit); a document it accepts resolves to no more fields than
// the limit and nests no deeper, counted by a plain expansion; and on a
// document validation accepts, operationComplexity answers what gqlgen's
// complexity.Calculate does, looking at each written selection at most
// once.
func FuzzDocumentAnalysis(f *testing.F) {
	for _, q := range []string{
		fragmentBomb(3),
		fragmentBomb(30),
		fragmentBombOfSize(600),
		repeatedFields(30),
		mergeBomb(3, 4),
		introspection.Query,
		`{ integrations { ...Card } integration(id: "x") { ...Card id } } fragment Card on Integration { id status provider { name } }`,
		`{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`,
		`{ viewer { ...V } } fragment V on Viewer { ... on Viewer { role ...V } }`,
		`query A { viewer { role } } query B { ...F ...F } fragment F on Query { a: viewer { role } b: viewer { role } } fragment F on Query { __typename }`,
		`{ ...Missing integrations(category: CRM) { id } }`,
	} {
		f.Add(q)
	}
	es := graph.NewExecutableSchema(graph.Config{})
	lim := documentLimits{maxFields: 200, maxSelectionFields: 40, maxMerges: 60, maxDepth: 8}
	f.Fuzz(func(t *testing.T, q string) {
		doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: q}, ParserTokenLimit)
		if err != nil {
			return
		}
		rep, derr := analyzeDocument(doc, lim)
		written := countSelections(doc)
		if rep.Budget != written+lim.maxFields || rep.Visited > rep.Budget {
			t.Fatalf("visited %d, budget %d; the document has %d selections", rep.Visited, rep.Budget, written)
		}
		if derr != nil {
			return
		}
		x := expansion{doc: doc, onPath: map[string]bool{}, stop: lim.maxFields + 1}
		for _, op := range doc.Operations {
			if d := x.expand(op.SelectionSet); d > lim.maxDepth {
				t.Fatalf("accepted an operation %d deep", d)
			}
		}
		for _, fd := range doc.Fragments {
			x.expand(fd.SelectionSet)
		}
		if x.n > lim.maxFields {
			t.Fatalf("accepted a document of more than %d fields resolved", lim.maxFields)
		}

		if validator.ValidateWithRules(es.Schema(), doc, nil) != nil {
			return
		}
		for _, op := range doc.Operations {
			vars, gerr := validator.VariableValues(es.Schema(), op, nil)
			if gerr != nil {
				continue
			}
			want := complexity.Calculate(context.Background(), es, op, vars)
			got, visited := operationComplexity(context.Background(), es, op, vars)
			if got != want || visited > written {
				t.Fatalf("complexity %d after %d selections; want %d after at most %d", got, visited, want, written)
			}
		}
	})
}

// expansion resolves every fragment spread where it stands, as a
// document without memory would, cutting cycles; n counts the
// selections, and it stops once n reaches stop.
type expansion struct {
	doc    *ast.QueryDocument
	onPath map[string]bool
	n      int
	stop   int
}

func (x *expansion) expand(set ast.SelectionSet) (depth int) {
	for _, s := range set {
		if x.n >= x.stop {
			return depth
		}
		x.n++
		switch s := s.(type) {
		case *ast.Field:
			depth = max(depth, 1+x.expand(s.SelectionSet))
		case *ast.InlineFragment:
			depth = max(depth, x.expand(s.SelectionSet))
		case *ast.FragmentSpread:
			f := x.doc.Fragments.ForName(s.Name)
			if f == nil || x.onPath[f.Name] {
				continue
			}
			x.onPath[f.Name] = true
			depth = max(depth, x.expand(f.SelectionSet))
			delete(x.onPath, f.Name)
		}
	}
	return depth
}
