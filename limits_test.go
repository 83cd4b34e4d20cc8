package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/httpapi"
	"github.com/bont/switchboard/switchboard"
)

func TestWebsocketCloseCodes(t *testing.T) {
	m := mustStart(t, "", func(m *Main) { m.Config.WebsocketInitTimeout = 300 * time.Millisecond })
	init := wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"authorization": "Bearer " + m.DemoToken})}
	sub := func(id string) wsMessage {
		return wsMessage{ID: id, Type: "subscribe", Payload: mustJSON(map[string]any{"query": eventsSubscription})}
	}

	t.Run("4408 no connection_init", func(t *testing.T) {
		conn := rawWS(t, m, "graphql-transport-ws")
		expect(t, "close", closeCode(t, conn, 5*time.Second), 4408)
	})
	t.Run("4401 subscribe before ack", func(t *testing.T) {
		conn := rawWS(t, m, "graphql-transport-ws")
		conn.WriteJSON(sub("1"))
		expect(t, "close", closeCode(t, conn, 5*time.Second), 4401)
	})
	t.Run("4403 bad token, no ack", func(t *testing.T) {
		conn := rawWS(t, m, "graphql-transport-ws")
		conn.WriteJSON(wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"authorization": "Bearer sbt_nope"})})
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			var msg wsMessage
			err := conn.ReadJSON(&msg)
			if ce, ok := err.(*websocket.CloseError); ok {
				expect(t, "close", ce.Code, 4403)
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if msg.Type == "connection_ack" {
				t.Fatal("acknowledged a bad token")
			}
		}
	})
	t.Run("4429 second connection_init", func(t *testing.T) {
		conn := rawWS(t, m, "graphql-transport-ws")
		conn.WriteJSON(init)
		conn.WriteJSON(init)
		expect(t, "close", closeCode(t, conn, 5*time.Second), 4429)
	})
	t.Run("4409 duplicate subscription id", func(t *testing.T) {
		ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.send(sub("dup"))
		ws.send(sub("dup"))
		expect(t, "close", closeCode(t, ws.conn, 5*time.Second), 4409)
	})
	t.Run("an id may be reused after complete", func(t *testing.T) {
		ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.send(sub("a"))
		ws.send(wsMessage{ID: "a", Type: "complete"})
		ws.send(sub("a"))
		ws.send(wsMessage{Type: "ping"})
		msg, err := ws.read(5 * time.Second)
		if err != nil {
			t.Fatalf("after reusing a completed id: %v", err)
		}
		_ = msg
	})
	t.Run("subscription cap", func(t *testing.T) {
		ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < httpapi.MaxSubscriptions; i++ {
			ws.send(sub(strconv.Itoa(i)))
		}
		ws.send(sub("one-too-many"))
		msg, err := ws.read(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type != "error" || msg.ID != "one-too-many" || !strings.Contains(string(msg.Payload), "LIMIT_EXCEEDED") {
			t.Fatalf("got %s %s %s; want error LIMIT_EXCEEDED for one-too-many", msg.Type, msg.ID, msg.Payload)
		}
		// The connection and the others live on: completing one frees a slot.
		ws.send(wsMessage{ID: "0", Type: "complete"})
		ws.send(sub("fits"))
		ws.send(wsMessage{Type: "ping"})
		if msg, err := ws.read(5 * time.Second); err != nil || msg.Type == "error" {
			t.Fatalf("after freeing a slot: %s %s %v", msg.Type, msg.Payload, err)
		}
	})
	t.Run("frame over the read limit", func(t *testing.T) {
		ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte("x"), httpapi.MaxBodyBytes+1)
		ws.conn.WriteMessage(websocket.TextMessage, big)
		expect(t, "close", closeCode(t, ws.conn, 5*time.Second), websocket.CloseMessageTooBig)
	})
}

func post(t *testing.T, url, token string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestRequestLimits(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	rev := str(integration(t, c, id), "revision")
	unchanged := func() {
		t.Helper()
		expect(t, "revision unchanged", str(integration(t, c, id), "revision"), rev)
	}
	mutation := `configureIntegration(input: {id: "` + id + `", settings: [{key: "pipeline", value: "all"}]}) { revision }`

	t.Run("body over 1 MiB is 413", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"query": "mutation { " + mutation + " }", "variables": map[string]any{"pad": strings.Repeat("x", httpapi.MaxBodyBytes)}})
		resp, b := post(t, m.URL, m.DemoToken, body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), httpapi.CodeTooLarge) {
			t.Errorf("got %d %s; want 413", resp.StatusCode, b)
		}
		unchanged()
	})
	t.Run("depth limit, before any resolver", func(t *testing.T) {
		nest := func(n int) string {
			return `{ __type(name: "Query") { fields { type ` + strings.Repeat("{ ofType ", n) + "{ name }" + strings.Repeat(" }", n) + " } } }"
		}
		c.must(nest(httpapi.DepthLimit-4), nil) // at the limit
		raw, data, errs := c.do(nest(httpapi.DepthLimit-3), nil)
		if len(errs) == 0 || errs[0].Code() != httpapi.CodeDepthExceeded || data != nil {
			t.Errorf("over the depth limit: %s; want DEPTH_LIMIT_EXCEEDED and no data", raw)
		}
		unchanged()
	})
	t.Run("complexity limit, before any resolver", func(t *testing.T) {
		var sb strings.Builder
		sb.WriteString("mutation($in: ConfigureIntegrationInput!) { ")
		for i := 0; i < httpapi.ComplexityLimit; i++ {
			sb.WriteString("m" + strconv.Itoa(i) + ": configureIntegration(input: $in) { revision } ")
		}
		sb.WriteString("}")
		_, data, errs := c.do(sb.String(), map[string]any{"in": map[string]any{"id": id, "settings": []any{map[string]any{"key": "pipeline", "value": "all"}}}})
		if len(errs) == 0 || errs[0].Code() != "COMPLEXITY_LIMIT_EXCEEDED" || data != nil {
			t.Errorf("got %v %+v; want COMPLEXITY_LIMIT_EXCEEDED and no data", data, errs)
		}
		unchanged()
	})
	t.Run("parser token limit", func(t *testing.T) {
		q := "mutation { " + mutation + " }" + strings.Repeat(" query Q { __typename }", httpapi.ParserTokenLimit/4)
		_, _, errs := c.do(q, nil)
		if len(errs) == 0 || !strings.Contains(errs[0].Message, "token") {
			t.Errorf("got %+v; want a parser token limit error", errs)
		}
		unchanged()
	})
}

func TestRateLimits(t *testing.T) {
	m := mustStart(t, "", func(m *Main) {
		m.Config.TokenRate, m.Config.TokenBurst = 1, 3
		m.Config.CallbackRate, m.Config.CallbackBurst = 1, 2
	})
	other := addUser(t, m, DemoWorkspaceID, "usr_other", switchboard.RoleAdmin)
	body, _ := json.Marshal(map[string]any{"query": "{ viewer { role } }"})
	var last *http.Response
	for i := 0; i < 4; i++ {
		last, _ = post(t, m.URL, m.DemoToken, body)
	}
	if last.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th request in a burst of 3: %d; want 429", last.StatusCode)
	}
	if ra, err := strconv.Atoi(last.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", last.Header.Get("Retry-After"))
	}
	// Another token has its own budget.
	if resp, _ := post(t, m.URL, other, body); resp.StatusCode != http.StatusOK {
		t.Errorf("another token: %d; want 200", resp.StatusCode)
	}

	var code int
	for i := 0; i < 3; i++ {
		resp, err := http.Get(m.URL + "/oauth/callback?state=x&code=y")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		code = resp.StatusCode
		if i < 2 && code != http.StatusBadRequest {
			t.Fatalf("callback %d: %d; want 400", i, code)
		}
	}
	expect(t, "3rd callback in a burst of 2", code, http.StatusTooManyRequests)
}

func TestProductionModeHidesTheSchema(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SWITCHBOARD_SECRET_KEY", "k1:"+strings.Repeat("A", 43)+"=")
	var out, errb bytes.Buffer
	if code := runCLI([]string{"token", "create", "--workspace", "ws_p", "--plan", "pure", "--role", "admin", "--data", dir, "--dev=false"}, &out, &errb); code != 0 {
		t.Fatalf("cli: %s", errb.String())
	}
	m := mustStart(t, dir, func(m *Main) { m.Config.Dev = false })
	c := newClient(t, m, strings.TrimSpace(out.String()))
	_, _, errs := c.do(`{ __schema { types { name } } }`, nil)
	if len(errs) == 0 {
		t.Error("introspection answered with -dev=false")
	}
	_, _, errs = c.do(`{ integrationz { id } }`, nil)
	if len(errs) == 0 || strings.Contains(errs[0].Message, "Did you mean") {
		t.Errorf("field suggestion with -dev=false: %+v", errs)
	}
	resp, err := http.Get(m.URL + "/playground")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect(t, "playground", resp.StatusCode, http.StatusNotFound)

	// In dev mode, suggestions are on.
	md := mustStart(t, "")
	_, _, errs = newClient(t, md, md.DemoToken).do(`{ integrationz { id } }`, nil)
	if len(errs) == 0 || !strings.Contains(errs[0].Message, "Did you mean") {
		t.Errorf("dev mode: %+v; want a suggestion", errs)
	}
}
