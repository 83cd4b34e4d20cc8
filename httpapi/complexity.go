package httpapi

import (
	"context"
	"math"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// complexityLimit is gqlgen's extension.FixedComplexityLimit (the same
// name, statistics, error text and code) that computes the figure of
// gqlgen's complexity.Calculate once per fragment (operationComplexity)
// and remembers each parsed operation's complexity instead of walking it
// on every request. Remembering is right only while no field has a
// complexity function of its own, so that a field costs one plus its
// children whatever the arguments: then the
// figure depends on the operation alone, not on its variables. New turns
// the memory on only when the schema's graph.Config sets no complexity
// function (variableFree).
//
// Operations come from the parsed-query cache, so a repeated query is the
// same *ast.OperationDefinition; the memory holds at most
// complexityMemoryMax of them and starts over when full.
type complexityLimit struct {
	limit        int
	variableFree bool
	es           graphql.ExecutableSchema

	// refused, when set, counts a refusal.
	refused func(limit string)

	mu   sync.Mutex
	seen map[*ast.OperationDefinition]int
}

const complexityMemoryMax = 2000

var (
	_ graphql.HandlerExtension        = (*complexityLimit)(nil)
	_ graphql.OperationContextMutator = (*complexityLimit)(nil)
)

// ExtensionName is gqlgen's, so extension.GetComplexityStats finds the
// figures.
func (c *complexityLimit) ExtensionName() string { return "ComplexityLimit" }

func (c *complexityLimit) Validate(es graphql.ExecutableSchema) error {
	c.es = es
	return nil
}

func (c *complexityLimit) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	op := opCtx.Doc.Operations.ForName(opCtx.OperationName)
	n, ok := 0, false
	if c.variableFree {
		c.mu.Lock()
		n, ok = c.seen[op]
		c.mu.Unlock()
	}
	if !ok {
		n, _ = operationComplexity(ctx, c.es, op, opCtx.Variables)
		if c.variableFree {
			c.mu.Lock()
			if c.seen == nil || len(c.seen) >= complexityMemoryMax {
				c.seen = make(map[*ast.OperationDefinition]int)
			}
			c.seen[op] = n
			c.mu.Unlock()
		}
	}
	opCtx.Stats.SetExtension(c.ExtensionName(), &extension.ComplexityStats{Complexity: n, ComplexityLimit: c.limit})
	if n > c.limit {
		err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", n, c.limit)
		errcode.Set(err, "COMPLEXITY_LIMIT_EXCEEDED")
		if c.refused != nil {
			c.refused(LimitComplexity)
		}
		return err
	}
	return nil
}

// operationComplexity is gqlgen's complexity.Calculate (the same figure,
// the same calls to the schema's complexity functions) computing each
// fragment's complexity once and reusing it wherever the fragment is
// spread: within one operation a fragment's fields, their arguments and
// the variables are the same at every spread, so is its figure. Visited
// counts the selections looked at: each selection of the operation and
// of the fragments it reaches, once. It expects a validated operation
// and stays total on any other (an unknown field or fragment counts
// nothing, a fragment cycle is cut).
func operationComplexity(ctx context.Context, es graphql.ExecutableSchema, op *ast.OperationDefinition, vars map[string]any) (complexity, visited int) {
	w := complexityWalker{es: es, schema: es.Schema(), vars: vars, memo: map[*ast.FragmentDefinition]*fragmentComplexity{}}
	n := w.selectionSet(ctx, op.SelectionSet)
	return n, w.visited
}

type fragmentComplexity struct {
	n    int
	done bool
}

type complexityWalker struct {
	es      graphql.ExecutableSchema
	schema  *ast.Schema
	vars    map[string]any
	memo    map[*ast.FragmentDefinition]*fragmentComplexity
	visited int
}

func (w *complexityWalker) selectionSet(ctx context.Context, set ast.SelectionSet) int {
	var n int
	for _, s := range set {
		w.visited++
		switch s := s.(type) {
		case *ast.Field:
			if s.Definition == nil || s.ObjectDefinition == nil {
				continue
			}
			def := w.schema.Types[s.Definition.Type.Name()]
			if def == nil || def.Name == "__Schema" {
				continue
			}
			var child int
			switch def.Kind {
			case ast.Object, ast.Interface, ast.Union:
				child = w.selectionSet(ctx, s.SelectionSet)
			}
			args := s.ArgumentMap(w.vars)
			var field int
			if s.ObjectDefinition.Kind == ast.Interface {
				// An interface's field costs what its costliest
				// implementation's does.
				for _, t := range w.schema.GetPossibleTypes(s.ObjectDefinition) {
					field = max(field, w.field(ctx, t, def.Kind, s.Name, child, args))
				}
			} else {
				field = w.field(ctx, s.ObjectDefinition, def.Kind, s.Name, child, args)
			}
			n = safeAdd(n, field)
		case *ast.FragmentSpread:
			if s.Definition == nil {
				continue
			}
			c := w.memo[s.Definition]
			if c == nil {
				c = &fragmentComplexity{}
				w.memo[s.Definition] = c
				c.n = w.selectionSet(ctx, s.Definition.SelectionSet)
				c.done = true
			}
			// An unfinished entry is a cycle, which validation refuses;
			// it counts what is known so far.
			n = safeAdd(n, c.n)
		case *ast.InlineFragment:
			n = safeAdd(n, w.selectionSet(ctx, s.SelectionSet))
		}
	}
	return n
}

// field is gqlgen's: the schema's complexity function when it has one
// that answers at least 1, else 1 plus the children.
func (w *complexityWalker) field(ctx context.Context, obj *ast.Definition, kind ast.DefinitionKind, name string, child int, args map[string]any) int {
	if c, ok := w.es.Complexity(ctx, obj.Name, name, child, args); ok && c >= 1 {
		return c
	}
	return safeAdd(1, child)
}

// safeAdd is gqlgen's: saturating, ignoring negative operands.
func safeAdd(a, b int) int {
	switch {
	case a < 0 && b < 0:
		return 1
	case a < 0:
		return b
	case b < 0:
		return a
	}
	if c := a + b; c >= a {
		return c
	}
	return math.MaxInt
}
