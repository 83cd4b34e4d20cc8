package httpapi

import (
	"context"
	"sync"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// complexityLimit is gqlgen's extension.FixedComplexityLimit (the same
// name, statistics, error text and code) that remembers each parsed
// operation's complexity instead of walking it on every request. That is
// right only while no field has a complexity function of its own, so that
// a field costs one plus its children whatever the arguments: then the
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
		n = complexity.Calculate(ctx, c.es, op, opCtx.Variables)
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
		return err
	}
	return nil
}
