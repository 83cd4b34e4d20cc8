package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/bont/switchboard/graph"
	"github.com/bont/switchboard/httpapi"
	"github.com/bont/switchboard/resolvers"
	"github.com/bont/switchboard/switchboard"
)

// benchIntegrationsQuery is what the settings page asks for (the load
// command's query scenario sends the same).
const benchIntegrationsQuery = `{ integrations { id category status statusReason statusMessage badge { label tone } actions account { id name email } grantedScopes missingScopes connectedAt settings { key value } disconnectWarning revision provider { id name category settingsLocation available } } }`

// writeBenchProviders writes a providers file of n custom providers
// (OTHER, ids prefix00…, an authorization server nobody answers on) with
// the given extra YAML fields, and returns its path.
func writeBenchProviders(b testing.TB, dir, prefix string, n int, extra string) string {
	b.Helper()
	var y strings.Builder
	y.WriteString("providers:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - {id: %s%02d, name: %s %02d, category: OTHER, clientId: c, clientSecret: s, authUrl: http://127.0.0.1:9/a, tokenUrl: http://127.0.0.1:9/t, scopes: [contacts.read]%s}\n", prefix, i, prefix, i, extra)
	}
	file := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(file, []byte(y.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return file
}

// startWith20 starts a dev gateway whose demo workspace holds 20
// connected integrations: the sandbox CRM and 19 custom providers.
func startWith20(b *testing.B) *Main {
	b.Helper()
	dir := b.TempDir()
	file := writeBenchProviders(b, dir, "bench", 19, "")
	m := mustStart(b, dir, func(m *Main) { m.Config.ProvidersFile = file })
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 20 {
		prov, cat := fmt.Sprintf("bench%02d", i-1), switchboard.CategoryOther
		if i == 0 {
			prov, cat = "sandbox", switchboard.CategoryCRM
		}
		id := fmt.Sprintf("int_bench%02d", i)
		_, err := m.store.Commit(ctx, switchboard.Change{WorkspaceID: DemoWorkspaceID, IntegrationID: id, Create: true,
			Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
				return &switchboard.Integration{ID: id, WorkspaceID: DemoWorkspaceID, ProviderID: prov, Category: cat,
					Status: switchboard.StatusConnected, StatusReason: switchboard.ReasonAuthorized, Generation: 1,
					Account:       &switchboard.Account{ID: "acct1", Name: "Ada", Email: "ada@sandbox.test"},
					GrantedScopes: []string{"contacts.read", "deals.read"}, ConnectedAt: &now}, switchboard.EventConnected, nil
			}})
		if err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// BenchmarkIntegrationsQuery runs the settings page's integrations query
// of a 20-integration workspace through gqlgen's executor in process,
// with the gateway's resolvers, service and bbolt store and a parsed-query
// cache as the gateway has: no HTTP, no authentication.
//
//	go test -run '^$' -bench BenchmarkIntegrationsQuery -benchmem .
func BenchmarkIntegrationsQuery(b *testing.B) {
	m := startWith20(b)
	exec := executor.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{Service: m.service}}))
	exec.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	ctx := switchboard.NewContextWithPrincipal(context.Background(), &switchboard.Principal{
		WorkspaceID: DemoWorkspaceID, UserID: DemoUserID, Role: switchboard.RoleAdmin,
		Scopes: []string{switchboard.ScopeIntegrationsRead, switchboard.ScopeIntegrationsWrite},
	})
	run := func() []byte {
		octx := graphql.StartOperationTrace(ctx)
		rc, errs := exec.CreateOperationContext(octx, &graphql.RawParams{Query: benchIntegrationsQuery})
		if errs != nil {
			b.Fatal(errs)
		}
		h, octx := exec.DispatchOperation(octx, rc)
		resp := h(octx)
		if len(resp.Errors) > 0 {
			b.Fatal(resp.Errors)
		}
		out, err := json.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	if got := strings.Count(string(run()), `"badge"`); got != 20 {
		b.Fatalf("got %d integrations; want 20", got)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		run()
	}
}

// BenchmarkIntegrationsQueryHTTPHandler is the same query through the
// gateway's whole HTTP handler in process (authentication, limits,
// metrics, gqlgen's POST transport), without a network.
//
//	go test -run '^$' -bench BenchmarkIntegrationsQueryHTTPHandler -benchmem .
func BenchmarkIntegrationsQueryHTTPHandler(b *testing.B) {
	m := startWith20(b)
	body, _ := json.Marshal(map[string]string{"query": benchIntegrationsQuery})
	h := m.server.Handler
	do := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/graphql", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+m.DemoToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := do(); w.Code != http.StatusOK || strings.Count(w.Body.String(), `"badge"`) != 20 {
		b.Fatalf("got %d %.300s; want 20 integrations", w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		do()
	}
}

// discardWriter is a ResponseWriter that keeps the status and the number
// of bytes, reused between iterations.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (d *discardWriter) Header() http.Header    { return d.h }
func (d *discardWriter) WriteHeader(status int) { d.status = status }
func (d *discardWriter) Write(b []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	d.n += len(b)
	return len(b), nil
}

// BenchmarkIntegrationsQueryCached is BenchmarkIntegrationsQuery answered
// by the gateway's response cache (httpapi.QueryCache) in front of the
// same gqlgen POST handler: the viewer already authenticated, as in
// BenchmarkIntegrationsQuery; the figure is the cost of a hit, from the
// request body to the bytes written.
//
//	go test -run '^$' -bench 'BenchmarkIntegrationsQuery(Cached)?$' -benchmem .
func BenchmarkIntegrationsQueryCached(b *testing.B) {
	m := startWith20(b)
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{Service: m.service}}))
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	h := httpapi.NewQueryCache(m.store.IntegrationsVersion, 0).Wrap(srv)
	ctx := switchboard.NewContextWithPrincipal(context.Background(), &switchboard.Principal{
		WorkspaceID: DemoWorkspaceID, UserID: DemoUserID, Role: switchboard.RoleAdmin,
		Scopes: []string{switchboard.ScopeIntegrationsRead, switchboard.ScopeIntegrationsWrite},
	})
	body, _ := json.Marshal(map[string]string{"query": benchIntegrationsQuery})
	req := httptest.NewRequest("POST", "/graphql", nil).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	rd := bytes.NewReader(body)
	w := &discardWriter{h: http.Header{}}
	do := func() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		w.status, w.n = 0, 0
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	do()
	if w.status != http.StatusOK || w.n < 1000 {
		b.Fatalf("got %d, %d bytes", w.status, w.n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		do()
	}
	b.StopTimer()
	if w.status != http.StatusOK {
		b.Fatalf("got %d", w.status)
	}
}
