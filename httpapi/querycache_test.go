package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bont/switchboard/switchboard"
)

func TestDecideCacheable(t *testing.T) {
	for _, c := range []struct {
		query, op string
		want      bool
	}{
		{`{ integrations { id } }`, "", true},
		{`query Q($id: ID!) { integration(id: $id) { id } __typename }`, "", true},
		{`query A { integrations { id } } query B { viewer { role } }`, "A", true},
		{`query A { integrations { id } } query B { viewer { role } }`, "B", false},
		{`query A { integrations { id } } query B { viewer { role } }`, "", false},
		{`{ integrations { id } viewer { role } }`, "", false},
		{`{ ...F } fragment F on Query { apiTokens { id } }`, "", false},
		{`{ ... on Query { integrations { id } } }`, "", false},
		{`mutation { disconnectIntegration(input: {id: "x", confirm: "y"}) { id } }`, "", false},
		{`subscription { integrationEvents { revision } }`, "", false},
		{`{ integrations { id }`, "", false},
	} {
		if got := decideCacheable(c.query, c.op); got != c.want {
			t.Errorf("decideCacheable(%q, %q) = %v; want %v", c.query, c.op, got, c.want)
		}
	}
}

// TestQueryCacheWrap drives the cache with a handler that counts its runs.
func TestQueryCacheWrap(t *testing.T) {
	version := map[string]uint64{}
	qc := NewQueryCache(func(ws string) uint64 { return version[ws] }, 0)
	runs := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		w.Header().Set("Content-Type", "application/json")
		p := switchboard.PrincipalFromContext(r.Context())
		if strings.Contains(r.Header.Get("X-Test"), "error") {
			fmt.Fprintf(w, `{"errors":[{"message":"no"}],"data":null}`)
			return
		}
		fmt.Fprintf(w, `{"data":{"run":%d,"user":%q}}`, runs, p.UserID)
	})
	h := qc.Wrap(next)
	ada := &switchboard.Principal{WorkspaceID: "ws1", UserID: "ada", Role: switchboard.RoleAdmin}
	do := func(p *switchboard.Principal, body, hdr string) string {
		req := httptest.NewRequest("POST", "/graphql", strings.NewReader(body)).WithContext(switchboard.NewContextWithPrincipal(context.Background(), p))
		req.Header.Set("X-Test", hdr)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Body.String()
	}
	const q = `{"query":"{ integrations { id } }"}`
	first := do(ada, q, "")
	if got := do(ada, q, ""); got != first || runs != 1 {
		t.Fatalf("second request: %s after %d runs; want %s from the cache", got, runs, first)
	}
	// Another user, another role or other scopes: their own run.
	for i, p := range []*switchboard.Principal{
		{WorkspaceID: "ws1", UserID: "bob", Role: switchboard.RoleAdmin},
		{WorkspaceID: "ws1", UserID: "ada", Role: switchboard.RoleMember},
		{WorkspaceID: "ws1", UserID: "ada", Role: switchboard.RoleAdmin, Scopes: []string{switchboard.ScopeIntegrationsRead}},
		{WorkspaceID: "ws2", UserID: "ada", Role: switchboard.RoleAdmin},
	} {
		if got := do(p, q, ""); got == first || runs != 2+i {
			t.Fatalf("viewer %d got %s (runs %d)", i, got, runs)
		}
	}
	runs = 10
	version["ws1"]++
	if got := do(ada, q, ""); got == first || runs != 11 {
		t.Fatalf("after a commit: %s (runs %d); want a new run", got, runs)
	}
	// Other variables are another entry; errors and mutations never stay.
	do(ada, `{"query":"{ integrations { id } }","variables":{"a":1}}`, "")
	if runs != 12 {
		t.Fatalf("variables: runs %d; want 12", runs)
	}
	e := `{"query":"{ integration(id: \"nope\") { id } }"}`
	do(ada, e, "error")
	do(ada, e, "error")
	m := `{"query":"mutation { disconnectIntegration(input: {id: \"x\", confirm: \"y\"}) { id } }"}`
	do(ada, m, "")
	do(ada, m, "")
	if runs != 16 {
		t.Fatalf("errors and mutations: runs %d; want 16", runs)
	}
}

func TestQueryCacheBound(t *testing.T) {
	qc := NewQueryCache(func(string) uint64 { return 0 }, 4000)
	for i := range 100 {
		qc.put(&cacheEntry{key: fmt.Sprint("k", i), body: make([]byte, 100)})
	}
	if qc.size > 4000 || len(qc.entries) != qc.lru.Len() || len(qc.entries) > 40 {
		t.Fatalf("size %d, %d entries", qc.size, len(qc.entries))
	}
	if _, ok := qc.entries["k99"]; !ok {
		t.Fatal("the newest entry was evicted")
	}
	if _, ok := qc.entries["k0"]; ok {
		t.Fatal("the oldest entry is still there")
	}
	qc.put(&cacheEntry{key: "big", body: make([]byte, 2000)})
	if _, ok := qc.entries["big"]; ok {
		t.Fatal("an entry over a quarter of the bound was kept")
	}
}
