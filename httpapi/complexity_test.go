package httpapi

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/bont/switchboard/graph"
)

// The remembering complexity limit answers what gqlgen's own does, the
// first time and every time after, for operations under, at and over the
// limit, with and without variables.
func TestComplexityLimitIsGqlgens(t *testing.T) {
	cfg := graph.Config{}
	if !reflect.ValueOf(cfg.Complexity).IsZero() {
		t.Fatal("the schema sets complexity functions; the limit must not remember figures")
	}
	run := func(ext graphql.HandlerExtension, query string, vars map[string]any) (*extension.ComplexityStats, string) {
		exec := executor.New(graph.NewExecutableSchema(cfg))
		exec.SetQueryCache(lru.New[*ast.QueryDocument](10))
		exec.Use(ext)
		var stats *extension.ComplexityStats
		var msgs []string
		for range 3 {
			ctx := graphql.StartOperationTrace(context.Background())
			rc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query, Variables: vars})
			if s, _ := rc.Stats.GetExtension("ComplexityLimit").(*extension.ComplexityStats); s != nil {
				stats = s
			}
			msg := ""
			for _, e := range errs {
				msg += e.Message + " " + e.Extensions["code"].(string) + ";"
			}
			msgs = append(msgs, msg)
		}
		if msgs[0] != msgs[1] || msgs[1] != msgs[2] {
			t.Fatalf("%q: answers differ between runs: %q", query, msgs)
		}
		return stats, msgs[0]
	}
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("mutation($in: ConfigureIntegrationInput!) { ")
		for i := range n {
			b.WriteString("m" + strings.Repeat("x", i) + ": configureIntegration(input: $in) { revision } ")
		}
		return b.String() + "}"
	}
	in := map[string]any{"in": map[string]any{"id": "i", "settings": []any{}}}
	for _, c := range []struct {
		query string
		vars  map[string]any
	}{
		{`{ integrations { id status badge { label tone } provider { id name } } }`, nil},
		{`mutation($id: ID!, $v: String!) { configureIntegration(input: {id: $id, settings: [{key: "k", value: $v}]}) { revision } }`, map[string]any{"id": "i", "v": "1"}},
		{many(ComplexityLimit / 2), in},
		{many(ComplexityLimit), in},
		{many(ComplexityLimit + 1), in},
	} {
		ours := &complexityLimit{limit: 10, variableFree: true}
		if strings.HasPrefix(c.query, "mutation($in") {
			ours.limit = ComplexityLimit
		}
		theirs := extension.FixedComplexityLimit(ours.limit)
		gotStats, got := run(ours, c.query, c.vars)
		wantStats, want := run(theirs, c.query, c.vars)
		if got != want || !reflect.DeepEqual(gotStats, wantStats) {
			t.Errorf("%.60q: got %+v %q; want %+v %q", c.query, gotStats, got, wantStats, want)
		}
	}
}
