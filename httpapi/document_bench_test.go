package httpapi

import (
	"context"
	"fmt"
	"testing"

	"github.com/99designs/gqlgen/complexity"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/bont/switchboard/graph"
)

// BenchmarkDocumentAnalysis measures the document guard's analysis
// (parsing excluded) on fragment bombs: by size, and by the length n of
// a chain of fragments each spreading the next twice (2^n selections
// once resolved). visited/op is the selections the analysis looked at.
// Every one of these documents is refused.
func BenchmarkDocumentAnalysis(b *testing.B) {
	run := func(b *testing.B, q string) {
		doc, err := parser.ParseQuery(&ast.Source{Input: q})
		if err != nil {
			b.Fatal(err)
		}
		var rep documentReport
		b.ReportAllocs()
		for b.Loop() {
			var derr *documentError
			rep, derr = analyzeDocument(doc, defaultLimits())
			if derr == nil {
				b.Fatal("accepted")
			}
		}
		b.ReportMetric(float64(rep.Visited), "visited/op")
	}
	for _, size := range []int{1 << 10, 10 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) { run(b, fragmentBombOfSize(size)) })
	}
	for n := 10; n <= 40; n += 5 {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { run(b, fragmentBomb(n)) })
	}
}

// BenchmarkFragmentBombBefore is what the same chains cost before the
// guard: gqlgen's complexity.Calculate and the depth walk the gateway
// used (oldDepth), neither remembering a fragment. Exponential: run it
// for small n only.
func BenchmarkFragmentBombBefore(b *testing.B) {
	es := graph.NewExecutableSchema(graph.Config{})
	for n := 10; n <= 20; n += 2 {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			doc, err := parser.ParseQuery(&ast.Source{Input: fragmentBomb(n)})
			if err != nil {
				b.Fatal(err)
			}
			if errs := validator.ValidateWithRules(es.Schema(), doc, nil); errs != nil {
				b.Fatal(errs)
			}
			op := doc.Operations[0]
			var visited int
			for b.Loop() {
				visited = 0
				complexity.Calculate(context.Background(), es, op, nil)
				oldDepth(doc, op.SelectionSet, DepthLimit+1, &visited)
			}
			// complexity.Calculate visits what the depth walk visits.
			b.ReportMetric(float64(2*visited), "visited/op")
		})
	}
}

// oldDepth is the depth walk the gateway used before the guard, counting
// the selections it looks at.
func oldDepth(doc *ast.QueryDocument, set ast.SelectionSet, stop int, visited *int) int {
	if stop <= 0 {
		return 0
	}
	best := 0
	for _, s := range set {
		*visited++
		var d int
		switch s := s.(type) {
		case *ast.Field:
			d = 1 + oldDepth(doc, s.SelectionSet, stop-1, visited)
		case *ast.InlineFragment:
			d = oldDepth(doc, s.SelectionSet, stop, visited)
		case *ast.FragmentSpread:
			if f := doc.Fragments.ForName(s.Name); f != nil {
				d = oldDepth(doc, f.SelectionSet, stop, visited)
			}
		}
		best = max(best, d)
		if best >= stop {
			return best
		}
	}
	return best
}
