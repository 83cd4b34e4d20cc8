package httpapi

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// Error codes of the document limits.
const (
	CodeLimitExceeded         = "LIMIT_EXCEEDED"
	CodeIntrospectionDisabled = "INTROSPECTION_DISABLED"
)

// documentGuard applies documentLimits to every operation, whatever its
// transport (POST, GET, both websocket subprotocols): all of them create
// their operation through the executor, which runs this before it parses
// and validates the document. That order is the point: validation's
// overlapping-fields rule is quadratic in the fields it merges, so a
// document must be measured before it is validated.
//
// A document in the executor's query cache passed this guard and
// validation before, so it is not measured again; any other is parsed
// here (a second parse, once per new document) and measured. A document
// that does not parse is left to the executor, which answers the parse
// error. What it found, with the work it did, is in the operation's
// statistics under the extension's name (a *documentReport).
type documentGuard struct {
	limits     documentLimits
	tokenLimit int
	cache      graphql.Cache[*ast.QueryDocument]
	// refused, when set, counts a refusal by limit name.
	refused func(limit string)
}

var (
	_ graphql.HandlerExtension          = (*documentGuard)(nil)
	_ graphql.OperationParameterMutator = (*documentGuard)(nil)
)

func (*documentGuard) ExtensionName() string                   { return "DocumentLimits" }
func (*documentGuard) Validate(graphql.ExecutableSchema) error { return nil }

func (g *documentGuard) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	if params.Query == "" {
		return nil
	}
	if g.cache != nil {
		if _, ok := g.cache.Get(ctx, params.Query); ok {
			return nil
		}
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: params.Query}, g.tokenLimit)
	if err != nil || doc == nil {
		return nil
	}
	rep, derr := analyzeDocument(doc, g.limits)
	if graphql.HasOperationContext(ctx) {
		graphql.GetOperationContext(ctx).Stats.SetExtension(g.ExtensionName(), &rep)
	}
	if derr == nil {
		return nil
	}
	if derr.Limit != "" && g.refused != nil {
		g.refused(derr.Limit)
	}
	return derr.gqlError()
}

// gqlError is the refusal as clients see it: LIMIT_EXCEEDED with the
// limit's name and value, DEPTH_LIMIT_EXCEEDED (its code since before
// the other limits) with the depth, INTROSPECTION_DISABLED, or for a
// fragment cycle the validation failure validation would answer.
func (e *documentError) gqlError() *gqlerror.Error {
	err := gqlerror.Errorf("%s", e.Message)
	switch e.Limit {
	case "":
		errcode.Set(err, errcode.ValidationFailed)
	case LimitDepth:
		err.Extensions = map[string]any{"code": CodeDepthExceeded, "limit": e.Max}
	case LimitIntrospection:
		err.Extensions = map[string]any{"code": CodeIntrospectionDisabled}
	default:
		err.Extensions = map[string]any{"code": CodeLimitExceeded, "limit": e.Limit, "max": e.Max}
	}
	return err
}
