package gqlws_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/gorillaws"
	"github.com/bont/switchboard/gqlws"
)

// Close, given the context a resolver sees, closes that resolver's socket
// with the code and the reason (cut to what a close frame carries, on a
// character boundary), once; the subscription's context ends with it.
func TestCloseFromResolverContext(t *testing.T) {
	impl := gorillaws.New(gorillaws.Options{})
	srv := testserver.New()
	srv.AddTransport(&gqlws.Transport{
		Upgrader: impl,
		InitFunc: func(ctx context.Context, _ transport.InitPayload) (context.Context, error) { return ctx, nil },
	})
	opCtx := make(chan context.Context, 1)
	srv.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		opCtx <- ctx
		return next(ctx)
	})
	hs := httptest.NewServer(impl.Middleware(srv))
	t.Cleanup(func() {
		impl.Shutdown("test over")
		hs.Close()
	})
	c := dialProto(t, "ws"+strings.TrimPrefix(hs.URL, "http"))
	for _, m := range []string{`{"type":"connection_init"}`, `{"id":"1","type":"subscribe","payload":{"query":"subscription { name }"}}`} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if m := readType(t, c); m["type"] != "connection_ack" {
		t.Fatalf("got %v; want connection_ack", m)
	}
	var ctx context.Context
	select {
	case ctx = <-opCtx:
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription did not start")
	}

	if gqlws.Close(context.Background(), 4000, "x") {
		t.Fatal("Close with a context of no websocket reported true")
	}
	reason := "subscriber fell too far behind; resume after revision 42 " + strings.Repeat("é", 60)
	if !gqlws.Close(ctx, 4000, reason) {
		t.Fatal("Close(ctx) = false; want true")
	}
	if gqlws.Close(ctx, 4000, reason) {
		t.Fatal("second Close(ctx) = true; want false")
	}
	_, _, err := c.ReadMessage()
	ce, ok := err.(*websocket.CloseError)
	if !ok {
		t.Fatalf("read: %v; want a close frame", err)
	}
	if ce.Code != 4000 {
		t.Fatalf("close code %d; want 4000", ce.Code)
	}
	if len(ce.Text) > 123 || !strings.HasPrefix(reason, ce.Text) || !strings.HasPrefix(ce.Text, "subscriber fell too far behind") {
		t.Fatalf("close reason %q (%d bytes); want a prefix of the reason of at most 123 bytes", ce.Text, len(ce.Text))
	}
	deadline := time.Now().Add(5 * time.Second)
	for impl.Count() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the socket did not close")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription's context did not end")
	}
}
