package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestHostileRequests sends requests a careless or hostile client might,
// and checks each gets the right status and a stable code, and that none
// of them writes anything.
func TestHostileRequests(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	ctx := context.Background()
	before, err := m.store.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const j = "application/json"
	gql := func(query string, vars map[string]any) string {
		b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
		return string(b)
	}
	var aliases, deep strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&aliases, "a%d: integrations { id provider { id settingDefinitions { key } } } ", i)
	}
	deep.WriteString("{ __schema { types { fields { type ")
	for i := 0; i < 20; i++ {
		deep.WriteString("{ ofType ")
	}
	deep.WriteString("{ name }" + strings.Repeat(" }", 20) + " } } } }")

	tests := []struct {
		name, method, ctype, body, query string
		status                           int
		code                             string
	}{
		{name: "malformed JSON", body: `{"query": `, status: 400, code: "INVALID_INPUT"},
		{name: "JSON that is not an object", body: `[1,2]`, status: 400, code: "INVALID_INPUT"},
		{name: "empty body", body: ``, status: 400, code: "INVALID_INPUT"},
		{name: "text/plain", ctype: "text/plain", body: gql(`{ integrations { id } }`, nil), status: 415, code: "INVALID_INPUT"},
		{name: "no content type", ctype: "-", body: gql(`{ integrations { id } }`, nil), status: 415, code: "INVALID_INPUT"},
		{name: "form post", ctype: "application/x-www-form-urlencoded", body: "query=%7B%7D", status: 415, code: "INVALID_INPUT"},
		{name: "no query", body: `{"variables":{}}`, status: 422, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "syntax error", body: gql(`{ integrations { id `, nil), status: 422, code: "GRAPHQL_PARSE_FAILED"},
		{name: "unknown field", body: gql(`{ nope }`, nil), status: 422, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "invalid enum literal", body: gql(`{ integrations(status: NOPE) { id } }`, nil), status: 422, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "invalid enum variable", body: gql(`query($s: IntegrationStatus) { integrations(status: $s) { id } }`, map[string]any{"s": "NOPE"}), status: 422, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "variable of the wrong type", body: gql(`query($id: ID!) { integration(id: $id) { id } }`, map[string]any{"id": map[string]any{"a": 1}}), status: 422, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "missing variable", body: gql(`query($id: ID!) { integration(id: $id) { id } }`, nil), status: 422, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "invalid Revision literal", body: gql(`mutation($id: ID!) { configureIntegration(input: {id: $id, settings: [{key: "pipeline", value: "all"}], expectedRevision: "abc"}) { id } }`, map[string]any{"id": id}), status: 200, code: "INVALID_INPUT"},
		{name: "negative Revision", body: gql(`mutation($id: ID!, $r: Revision) { configureIntegration(input: {id: $id, settings: [{key: "pipeline", value: "all"}], expectedRevision: $r}) { id } }`, map[string]any{"id": id, "r": "-5"}), status: 200, code: "INVALID_INPUT"},
		{name: "Revision beyond uint64", body: gql(`mutation($id: ID!, $r: Revision) { configureIntegration(input: {id: $id, settings: [{key: "pipeline", value: "all"}], expectedRevision: $r}) { id } }`, map[string]any{"id": id, "r": "18446744073709551616"}), status: 200, code: "INVALID_INPUT"},
		{name: "invalid setting value", body: gql(`mutation($id: ID!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: "1e9"}]}) { id } }`, map[string]any{"id": id}), status: 200, code: "INVALID_INPUT"},
		{name: "unknown id", body: gql(`mutation { disconnectIntegration(input: {id: "../../etc/passwd", confirm: true}) { id } }`, nil), status: 200, code: "NOT_FOUND"},
		{name: "huge variables", body: gql(`{ integrations { id } }`, map[string]any{"x": strings.Repeat("a", 2<<20)}), status: 413, code: "REQUEST_TOO_LARGE"},
		{name: "alias-heavy query", body: gql("{ "+aliases.String()+"}", nil), status: 200, code: "COMPLEXITY_LIMIT_EXCEEDED"},
		{name: "deeply nested query", body: gql(deep.String(), nil), status: 200, code: "DEPTH_LIMIT_EXCEEDED"},
		// Refused before validation, after work linear in the document
		// (counted by httpapi's TestDocumentLimitsBoundWork).
		{name: "fragments that spread the next one twice", body: gql(fragmentBomb(20), nil), status: 200, code: "LIMIT_EXCEEDED"},
		{name: "7,000 x __typename", body: gql("{ "+strings.Repeat("__typename ", 7000)+"}", nil), status: 200, code: "LIMIT_EXCEEDED"},
		{name: "a fragment cycle", body: gql("{ ...A } fragment A on Query { ...B } fragment B on Query { viewer { role } ...A }", nil), status: 422, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "GET mutation", method: "GET", query: `mutation { disconnectIntegration(input: {id: "` + id + `", confirm: true}) { id } }`, status: 405, code: "INVALID_INPUT"},
		{name: "PUT", method: "PUT", body: gql(`{ integrations { id } }`, nil), status: 405, code: "INVALID_INPUT"},
		{name: "DELETE", method: "DELETE", status: 405, code: "INVALID_INPUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "POST"
			}
			u := m.URL + "/graphql"
			if tt.query != "" {
				u += "?query=" + url.QueryEscape(tt.query)
			}
			req, _ := http.NewRequest(method, u, strings.NewReader(tt.body))
			switch tt.ctype {
			case "":
				req.Header.Set("Content-Type", j)
			case "-":
			default:
				req.Header.Set("Content-Type", tt.ctype)
			}
			req.Header.Set("Authorization", "Bearer "+m.DemoToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var out struct{ Errors []gqlError }
			_ = json.Unmarshal(raw, &out)
			if resp.StatusCode != tt.status || len(out.Errors) == 0 || out.Errors[0].Code() != tt.code {
				t.Errorf("got %d %s; want %d with code %s", resp.StatusCode, trim(raw), tt.status, tt.code)
			}
			if len(out.Errors) > 0 && out.Errors[0].Message == "" {
				t.Error("an error without a message")
			}
		})
	}

	// Websocket frames that are not messages of the protocol.
	frames := []struct {
		name   string
		init   bool
		typ    int
		data   string
		code   int
		reason string
	}{
		{"binary frame", false, websocket.BinaryMessage, "\x00\x01\xff", 4400, "binary"},
		{"garbage", false, websocket.TextMessage, "{{{not json", 4400, "not a JSON object"},
		{"JSON that is not an object", true, websocket.TextMessage, `"subscribe"`, 4400, "not a JSON object"},
		{"unknown message type", true, websocket.TextMessage, `{"type":"launch","id":"1"}`, 4400, "unknown type"},
		{"subscribe without an id", true, websocket.TextMessage, `{"type":"subscribe","payload":{"query":"subscription { integrationEvents { revision } }"}}`, 4400, "needs an id"},
		{"init payload that is not an object", false, websocket.TextMessage, `{"type":"connection_init","payload":42}`, 4400, "payload must be an object"},
		{"oversized connection_init", false, websocket.TextMessage, `{"type":"connection_init","payload":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`, 1009, ""},
	}
	for _, f := range frames {
		t.Run("websocket "+f.name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
			conn, _, err := d.Dial("ws"+strings.TrimPrefix(m.URL, "http")+"/graphql", http.Header{"Origin": {m.URL}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if f.init {
				_ = conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + m.DemoToken}})
			}
			_ = conn.WriteMessage(f.typ, []byte(f.data))
			for {
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, msg, err := conn.ReadMessage()
				if err == nil {
					if !bytes.Contains(msg, []byte("connection_ack")) {
						t.Fatalf("got %s; want the socket closed", msg)
					}
					continue
				}
				ce, ok := err.(*websocket.CloseError)
				if !ok || ce.Code != f.code || !strings.Contains(ce.Text, f.reason) {
					t.Errorf("got %v; want close %d mentioning %q", err, f.code, f.reason)
				}
				return
			}
		})
	}

	// OAuth callbacks with parameters missing, repeated or forged.
	for _, q := range []string{"", "code=x", "state=", "state=forged&code=x", "state=a&state=b&code=x", "error=access_denied", "state=" + strings.Repeat("s", 5000)} {
		resp, err := http.Get(m.URL + "/oauth/callback?" + q)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !bytes.Contains(body, []byte("Nothing changed")) && !bytes.Contains(body, []byte("Start again")) {
			t.Errorf("callback %q: got %d %s; want 400 saying nothing changed", q, resp.StatusCode, trim(body))
		}
	}

	// Nothing was written, and the store is sound.
	after, _ := m.store.Revision(ctx)
	if after != before {
		t.Errorf("revision moved from %d to %d", before, after)
	}
	if rep, err := m.store.Verify(); err != nil || !rep.OK() {
		t.Errorf("store after hostile requests: %v %v", rep, err)
	}
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
