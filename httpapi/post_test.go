package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/bont/switchboard/graph"
	"github.com/bont/switchboard/switchboard"
)

// The POST transport that takes the query cache's decoded parameters
// answers every request exactly as gqlgen's own POST transport does:
// status, content type and body, for results, parse, validation and
// variable errors, every Accept header, and bodies it leaves to gqlgen.
func TestPostTransportIsGqlgens(t *testing.T) {
	build := func(ours bool) http.Handler {
		srv := handler.New(graph.NewExecutableSchema(graph.Config{}))
		if ours {
			srv.AddTransport(postTransport{})
		} else {
			srv.AddTransport(transport.POST{})
		}
		return NewQueryCache(func(string) uint64 { return 1 }, 0).Wrap(srv)
	}
	ours, theirs := build(true), build(false)
	ctx := switchboard.NewContextWithPrincipal(context.Background(), &switchboard.Principal{WorkspaceID: "ws", UserID: "u", Role: switchboard.RoleAdmin})
	bodies := []string{
		`{"query":"{ __typename }"}`,
		`{"query":"query Q { __typename } query R { __typename }","operationName":"R"}`,
		`{"query":"query Q { __typename } query R { __typename }"}`,
		`{"query":"{ "}`,
		`{"query":"{ nope }"}`,
		`{"query":""}`,
		`null`,
		`{"query":"query($n: Int!) { __typename }","variables":{"n":"x"}}`,
		`{"query":"query($n: Int) { __typename }","variables":{"n":12345678901234567890}}`,
		`{"query":"query($n: Float) { __typename }","variables":{"n":1.5e3}}`,
		`{"query":"{ __typename }","variables":null}`,
		`{"query":"{ __typename }","variables":"not an object"}`,
		`{"query":"{ __typename }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`,
		`{"query":"{ __typename }","extensions":[1]}`,
		`{"Query":"{ __typename }","OPERATIONNAME":""}`,
		`{"query":"{ __typename }"} trailing`,
		`[1,2]`,
		`{"query":"mutation { __typename }"}`,
	}
	accepts := []string{"", "application/json", "application/graphql-response+json", "*/*", "text/html", "application/graphql-response+json, application/json", "bad;;"}
	for _, body := range bodies {
		for _, accept := range accepts {
			var br *bodyReader
			do := func(h http.Handler) *httptest.ResponseRecorder {
				r := httptest.NewRequest("POST", "/graphql", nil).WithContext(ctx)
				data := []byte(body)
				br = &bodyReader{Reader: bytes.NewReader(data), data: data}
				r.Body = br
				r.Header.Set("Content-Type", "application/json")
				if accept != "" {
					r.Header.Set("Accept", accept)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			got := do(ours)
			// Every body that is one JSON object (or null) is decoded once.
			wantFast := (strings.HasPrefix(body, "{") || body == "null") && !strings.HasSuffix(body, "trailing")
			if fast := br.params != nil; fast != wantFast {
				t.Errorf("%s: decoded once %v; want %v", body, fast, wantFast)
			}
			want := do(theirs)
			if got.Code != want.Code || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || got.Body.String() != want.Body.String() {
				t.Errorf("%s, Accept %q:\n got %d %q %s\nwant %d %q %s", body, accept,
					got.Code, got.Header().Get("Content-Type"), got.Body, want.Code, want.Header().Get("Content-Type"), want.Body)
			}
		}
	}
}
