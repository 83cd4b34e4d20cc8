package gqlws_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/bont/switchboard/gorillaws"
	"github.com/bont/switchboard/gqlws"
)

// limitServer serves a gqlws transport with the given hooks.
func limitServer(t *testing.T, tr *gqlws.Transport) string {
	t.Helper()
	impl := gorillaws.New(gorillaws.Options{})
	tr.Upgrader = impl
	tr.InitFunc = func(ctx context.Context, _ transport.InitPayload) (context.Context, error) { return ctx, nil }
	tr.InitTimeout = time.Minute
	srv := testserver.New()
	srv.AddTransport(tr)
	hs := httptest.NewServer(impl.Middleware(srv))
	t.Cleanup(func() {
		impl.Shutdown("test over")
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

func dialProto(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{gqlws.ProtoTransportWS}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	return ws
}

func readType(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPendingIsReleasedOnceAtAckOrClose: Pending's done runs exactly once
// per socket, before the ack reaches the client, or when a socket that was
// never acknowledged closes; a Pending error closes with its code.
func TestPendingIsReleasedOnceAtAckOrClose(t *testing.T) {
	var opened, done atomic.Int64
	refuse := atomic.Bool{}
	url := limitServer(t, &gqlws.Transport{
		Pending: func(*http.Request) (func(), error) {
			if refuse.Load() {
				return nil, &gqlws.CloseError{Code: 4429, Reason: "too many"}
			}
			opened.Add(1)
			return func() { done.Add(1) }, nil
		},
	})
	acked := dialProto(t, url)
	dialProto(t, url) // stays pending to the end
	quits := dialProto(t, url)
	if got := opened.Load(); got != 3 {
		t.Fatalf("opened %d; want 3", got)
	}
	acked.WriteJSON(map[string]any{"type": "connection_init"})
	if m := readType(t, acked); m["type"] != "connection_ack" {
		t.Fatalf("got %v; want connection_ack", m)
	}
	if got := done.Load(); got != 1 {
		t.Errorf("released %d after one ack; want 1", got)
	}
	quits.Close()
	for deadline := time.Now().Add(5 * time.Second); done.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("released %d after a pending socket closed; want 2", done.Load())
		}
	}
	// The acknowledged socket closing releases nothing more.
	acked.Close()
	refuse.Store(true)
	ws := dialProto(t, url)
	var ce *websocket.CloseError
	if _, _, err := ws.ReadMessage(); !errors.As(err, &ce) || ce.Code != 4429 {
		t.Fatalf("refused socket: %v; want close 4429", err)
	}
	if got := done.Load(); got != 2 {
		t.Errorf("released %d with one socket still pending; want 2", got)
	}
}

// TestAdmitRefusesOneOperation: an Admit error answers that operation's
// id with the error, and the socket lives on.
func TestAdmitRefusesOneOperation(t *testing.T) {
	var asked atomic.Int64
	url := limitServer(t, &gqlws.Transport{
		Admit: func(context.Context) error {
			asked.Add(1)
			return &gqlerror.Error{Message: "slow down", Extensions: map[string]any{"code": "RATE_LIMITED", "retryAfter": 3}}
		},
	})
	ws := dialProto(t, url)
	ws.WriteJSON(map[string]any{"type": "connection_init"})
	readType(t, ws)
	ws.WriteJSON(map[string]any{"id": "q1", "type": "subscribe", "payload": map[string]any{"query": "{ name }"}})
	m := readType(t, ws)
	errs, _ := m["payload"].([]any)
	if m["type"] != "error" || m["id"] != "q1" || len(errs) != 1 ||
		errs[0].(map[string]any)["extensions"].(map[string]any)["code"] != "RATE_LIMITED" {
		t.Fatalf("got %v; want an error for q1 with RATE_LIMITED", m)
	}
	ws.WriteJSON(map[string]any{"type": "ping"})
	if m := readType(t, ws); m["type"] != "pong" {
		t.Fatalf("after the refusal: %v; want pong", m)
	}
	if got := asked.Load(); got != 1 {
		t.Errorf("Admit asked %d times; want 1", got)
	}
}
