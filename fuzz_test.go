package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzGraphQLRequest sends arbitrary bodies through the whole /graphql
// path (authentication, body cap, request decoding, parsing, validation,
// limits, execution) of a real gateway. Whatever the body, the answer is
// never a 5xx or a panic, and is JSON whose errors carry a stable code.
func FuzzGraphQLRequest(f *testing.F) {
	for _, seed := range []string{
		`{"query":"{ viewer { role } }"}`,
		`{"query":"query($id: ID!) { integration(id: $id) { id status } }","variables":{"id":"int_x"}}`,
		`{"query":"mutation { configureIntegration(input: {id: \"x\", settings: []}) { id } }"}`,
		`{"query":"{ integrations { id provider { id } } }","operationName":"Nope"}`,
		`{"query":"{ __schema { types { name } } }"}`,
		`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`,
		`{"query": 5}`, `[]`, `{`, ``, `{"query":"{ a { b { c { d { e { f { g { h { i { j { k { l { m { n { o { p } } } } } } } } } } } } } } } }"}`,
	} {
		f.Add([]byte(seed))
	}
	m := mustStart(f, "")
	h := m.server.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/graphql", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+m.DemoToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var out struct {
			Errors []struct {
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("not JSON for %q: %s", body, rec.Body)
		}
		for _, e := range out.Errors {
			if code, _ := e.Extensions["code"].(string); code == "" || code == "INTERNAL" {
				t.Fatalf("error without a stable code (%q) for %q: %s", code, body, rec.Body)
			}
		}
	})
}

// FuzzOAuthCallback sends arbitrary parameters to /oauth/callback. It
// never answers 5xx or panics, never redirects without a valid state, and
// never reflects a parameter unescaped into the page.
func FuzzOAuthCallback(f *testing.F) {
	f.Add("", "", "", "")
	f.Add("abc", "code", "", "")
	f.Add("abc", "", "access_denied", "The user said no")
	f.Add("s", "c", "<script>alert(1)</script>", "\x00\x1b[31m")
	f.Add(strings.Repeat("s", 5000), "c", "server_error", strings.Repeat("é", 300))
	m := mustStart(f, "")
	h := m.server.Handler
	f.Fuzz(func(t *testing.T, state, code, errParam, desc string) {
		q := url.Values{}
		for k, v := range map[string]string{"state": state, "code": code, "error": errParam, "error_description": desc} {
			if v != "" {
				q.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/oauth/callback?"+q.Encode(), nil))
		switch rec.Code {
		case http.StatusBadRequest, http.StatusConflict, http.StatusBadGateway:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, q.Encode(), rec.Body)
		}
		if strings.Contains(rec.Body.String(), "<script>alert") {
			t.Fatalf("parameter reflected unescaped: %s", rec.Body)
		}
	})
}
