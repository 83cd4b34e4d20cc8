package httpapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/introspection"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/bont/switchboard/graph"
	"github.com/bont/switchboard/switchboard"
)

// Documents that made validation or cost analysis do work far beyond
// their size.

// fragmentBomb is query { ...F0 } with F0..F(n-1) each spreading the
// next fragment twice: 2^n selections once resolved, in about 40n bytes.
func fragmentBomb(n int) string {
	var b strings.Builder
	b.WriteString("query { ...F0 }\n")
	for i := range n {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d }\n", i, i+1, i+1)
	}
	fmt.Fprintf(&b, "fragment F%d on Query { viewer { role } }\n", n)
	return b.String()
}

// fragmentBombOfSize is fragmentBomb padded with wider fragments (each
// spreading the next one four times, with aliases of viewer) to about
// size bytes.
func fragmentBombOfSize(size int) string {
	var b strings.Builder
	b.WriteString("query { ...W0 }\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "fragment W%d on Query { a%d: viewer { role } ...W%d ...W%d ...W%d ...W%d }\n", i, i, i+1, i+1, i+1, i+1)
		if b.Len() >= size {
			fmt.Fprintf(&b, "fragment W%d on Query { viewer { role } }\n", i+1)
		}
	}
	return b.String()
}

// repeatedFields is { __typename ... } with n fields.
func repeatedFields(n int) string {
	return "{ " + strings.Repeat("__typename ", n) + "}"
}

// mergeBomb is outer viewer fields of inner __typename each: one
// selection set of outer*inner fields once the viewers merge.
func mergeBomb(outer, inner int) string {
	return "{ " + strings.Repeat("viewer { "+strings.Repeat("__typename ", inner)+"} ", outer) + "}"
}

func defaultLimits() documentLimits {
	return documentLimits{
		maxFields:          DefaultMaxFields,
		maxSelectionFields: DefaultMaxSelectionFields,
		maxMerges:          DefaultMaxMerges,
		maxDepth:           DepthLimit,
	}
}

// newGuardedExecutor is the executor as graphQLServer sets it up, less
// the transports: the document guard, then the complexity limit.
func newGuardedExecutor(dev bool) *executor.Executor {
	cfg := graph.Config{}
	exec := executor.New(graph.NewExecutableSchema(cfg))
	docs := lru.New[*ast.QueryDocument](100)
	exec.SetQueryCache(docs)
	exec.SetParserTokenLimit(ParserTokenLimit)
	lim := defaultLimits()
	lim.noIntrospection = !dev
	exec.Use(&documentGuard{limits: lim, tokenLimit: ParserTokenLimit, cache: docs})
	exec.Use(&complexityLimit{limit: ComplexityLimit, variableFree: true})
	return exec
}

// TestDocumentLimitsBoundWork sends the documents of issue 13 through
// the executor and checks each is refused with its limit, before
// validation, after looking at no more selections than the document
// holds plus the fields limit — whatever the document asks for once its
// fragments are resolved.
func TestDocumentLimitsBoundWork(t *testing.T) {
	exec := newGuardedExecutor(true)
	type bomb struct {
		name, query string
		limit       string
		maxVisited  int
	}
	var bombs []bomb
	for n := 10; n <= 40; n += 5 {
		// 2n+3 selections are written; the first pass looks at each once.
		bombs = append(bombs, bomb{fmt.Sprintf("fragment bomb n=%d", n), fragmentBomb(n), LimitFields, 2*n + 3})
	}
	// Larger documents are over the parser's token limit.
	for _, size := range []int{1 << 10, 10 << 10} {
		q := fragmentBombOfSize(size)
		doc, err := parser.ParseQuery(&ast.Source{Input: q})
		if err != nil {
			t.Fatal(err)
		}
		bombs = append(bombs, bomb{fmt.Sprintf("%d KB fragment bomb", size>>10), q, LimitFields, countSelections(doc)})
	}
	bombs = append(bombs,
		bomb{"7,000 x __typename", repeatedFields(7000), LimitFields, 7000},
		bomb{"600 x __typename", repeatedFields(600), LimitSelectionFields, 600 + DefaultMaxSelectionFields + 1},
		bomb{"150 x __typename", repeatedFields(150), LimitMerges, 2 * 150},
		bomb{"10 viewers of 1,000 __typename", mergeBomb(10, 1000), LimitFields, 10010},
		bomb{"10 viewers of 100 __typename", mergeBomb(10, 100), LimitSelectionFields, 2*1010 + 1},
	)
	for _, b := range bombs {
		t.Run(b.name, func(t *testing.T) {
			ctx := graphql.StartOperationTrace(context.Background())
			rc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: b.query})
			if len(errs) != 1 || errs[0].Extensions["code"] != CodeLimitExceeded || errs[0].Extensions["limit"] != b.limit {
				t.Fatalf("got %v; want one LIMIT_EXCEEDED error for %s", errs, b.limit)
			}
			if !rc.Stats.Validation.Start.IsZero() {
				t.Error("validation ran before the document was refused")
			}
			rep, _ := rc.Stats.GetExtension("DocumentLimits").(*documentReport)
			if rep == nil {
				t.Fatal("no report of the analysis")
			}
			if rep.Visited > b.maxVisited || rep.Visited > rep.Budget {
				t.Errorf("visited %d selections (budget %d); want at most %d", rep.Visited, rep.Budget, b.maxVisited)
			}
		})
	}
}

// Ordinary documents pass, with the figures a person would count.
func TestDocumentLimitsPassOrdinaryDocuments(t *testing.T) {
	for _, c := range []struct {
		name, query                 string
		fields, merges, depth, work int
	}{
		{"settings page", `{ integrations { id status badge { label tone } actions provider { id name } } }`, 10, 0, 3, 20},
		{"fragments", `{ integrations { ...Card } integration(id: "x") { ...Card id } } fragment Card on Integration { id status }`, 11, 1, 2, 18},
		{"a field twice", `{ viewer { role } viewer { role } }`, 4, 2, 2, 8},
		{"introspection", introspection.Query, 484, 0, DepthLimit, 561},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, err := parser.ParseQuery(&ast.Source{Input: c.query})
			if err != nil {
				t.Fatal(err)
			}
			rep, derr := analyzeDocument(doc, defaultLimits())
			if derr != nil {
				t.Fatalf("refused: %+v", derr)
			}
			if rep.Fields != c.fields || rep.Merges != c.merges || rep.Depth != c.depth || rep.Visited != c.work {
				t.Errorf("got fields %d, merges %d, depth %d, visited %d; want %d, %d, %d, %d",
					rep.Fields, rep.Merges, rep.Depth, rep.Visited, c.fields, c.merges, c.depth, c.work)
			}
		})
	}
}

// A fragment cycle is refused as validation refuses it, before the
// second pass could follow it.
func TestDocumentLimitsRefuseFragmentCycles(t *testing.T) {
	exec := newGuardedExecutor(true)
	for _, q := range []string{
		`{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`,
		`{ viewer { ...V } } fragment V on Viewer { ... on Viewer { ...V } }`,
		`{ __typename } fragment A on Query { viewer { __typename } ...A }`,
	} {
		_, errs := exec.CreateOperationContext(graphql.StartOperationTrace(context.Background()), &graphql.RawParams{Query: q})
		if len(errs) == 0 || errs[0].Extensions["code"] != "GRAPHQL_VALIDATION_FAILED" || !strings.Contains(errs[0].Message, "within itself") {
			t.Errorf("%s: got %v; want a validation failure naming the cycle", q, errs)
		}
	}
}

// In production, introspection is refused with its own code before
// validation; __typename is not introspection.
func TestIntrospectionDisabledInProduction(t *testing.T) {
	exec := newGuardedExecutor(false)
	for _, q := range []string{
		`{ __schema { types { name } } }`,
		`{ __type(name: "Query") { name } }`,
		`{ ...F } fragment F on Query { __schema { queryType { name } } }`,
		introspection.Query,
	} {
		rc, errs := exec.CreateOperationContext(graphql.StartOperationTrace(context.Background()), &graphql.RawParams{Query: q})
		if len(errs) != 1 || errs[0].Extensions["code"] != CodeIntrospectionDisabled {
			t.Errorf("%.40q: got %v; want INTROSPECTION_DISABLED", q, errs)
		}
		if !rc.Stats.Validation.Start.IsZero() {
			t.Errorf("%.40q: validated before refusing", q)
		}
	}
	if _, errs := exec.CreateOperationContext(graphql.StartOperationTrace(context.Background()), &graphql.RawParams{Query: `{ __typename }`}); errs != nil {
		t.Errorf("__typename: %v", errs)
	}
}

// The production rule set suggests nothing, where gqlparser's default
// rules suggest a name for each of these.
func TestRulesWithoutSuggestions(t *testing.T) {
	schema := graph.NewExecutableSchema(graph.Config{}).Schema()
	for _, q := range []string{
		`{ integrationz { id } }`,
		`{ integrations(categry: CRM) { id } }`,
		`{ integrations(category: CRN) { id } }`,
		`mutation { configureIntegration(input: {id: "x", settings: [], expectedRevison: "1"}) { id } }`,
		`{ integrations { ...F } } fragment F on Integratio { id }`,
		`{ integrations { provider } }`,
	} {
		doc, err := parser.ParseQuery(&ast.Source{Input: q})
		if err != nil {
			t.Fatal(err)
		}
		suggests := func(errs gqlerror.List) bool {
			for _, e := range errs {
				if strings.Contains(e.Message, "Did you mean") {
					return true
				}
			}
			return false
		}
		if !suggests(validator.ValidateWithRules(schema, doc, rules.NewDefaultRules())) {
			t.Fatalf("%s: the default rules suggest nothing; the case tests nothing", q)
		}
		doc, _ = parser.ParseQuery(&ast.Source{Input: q})
		errs := validator.ValidateWithRules(schema, doc, rulesWithoutSuggestions())
		if len(errs) == 0 || suggests(errs) {
			t.Errorf("%s: got %v; want an error without a suggestion", q, errs)
		}
	}
}

// operationComplexity is gqlgen's complexity.Calculate, figure for
// figure, with and without complexity functions, fragments and variables.
func TestOperationComplexityIsGqlgens(t *testing.T) {
	custom := graph.Config{}
	custom.Complexity.Query.Integrations = func(child int, category *switchboard.Category, _ *switchboard.Status) int {
		if category != nil {
			return 2 * child
		}
		return 10 * child
	}
	custom.Complexity.Integration.Provider = func(child int) int { return child + 5 }
	queries := []struct {
		query string
		vars  map[string]any
	}{
		{`{ integrations { id status badge { label tone } provider { id name } } }`, nil},
		{`query($c: IntegrationCategory) { integrations(category: $c) { ...Card } }  fragment Card on Integration { id provider { id } ... on Integration { status } }`, map[string]any{"c": "CRM"}},
		{`query($c: IntegrationCategory) { integrations(category: $c) { ...Card } }  fragment Card on Integration { id provider { id } ... on Integration { status } }`, nil},
		{`{ a: integrations { ...Card } b: integrations(category: CRM) { ...Card ...Card } viewer { ...V } } fragment Card on Integration { id ...Inner } fragment Inner on Integration { provider { name } } fragment V on Viewer { role }`, nil},
		{`{ __schema { types { name } } viewer { role } }`, nil},
		{fragmentBomb(12), nil},
	}
	for _, cfg := range []graph.Config{{}, custom} {
		es := graph.NewExecutableSchema(cfg)
		for _, c := range queries {
			doc, err := parser.ParseQuery(&ast.Source{Input: c.query})
			if err != nil {
				t.Fatal(err)
			}
			if errs := validator.ValidateWithRules(es.Schema(), doc, nil); errs != nil {
				t.Fatalf("%.50q: %v", c.query, errs)
			}
			op := doc.Operations[0]
			vars, gerr := validator.VariableValues(es.Schema(), op, c.vars)
			if gerr != nil {
				t.Fatal(gerr)
			}
			want := complexity.Calculate(context.Background(), es, op, vars)
			got, visited := operationComplexity(context.Background(), es, op, vars)
			if got != want {
				t.Errorf("%.50q: got %d; want %d", c.query, got, want)
			}
			if n := countSelections(doc); visited > n {
				t.Errorf("%.50q: visited %d selections; the document has %d", c.query, visited, n)
			}
		}
	}
}
