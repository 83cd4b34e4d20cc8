package gorillaws_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/bont/switchboard/gorillaws"
)

const (
	transportWS = "graphql-transport-ws"
	legacyWS    = "graphql-ws"
)

type server struct {
	*testserver.TestServer
	impl *gorillaws.Implementation
	http *httptest.Server
	url  string
	// opCtx receives the context of every operation, as a resolver sees it.
	opCtx chan context.Context
}

func newServer(t *testing.T, opts gorillaws.Options, configure func(*transport.Websocket)) *server {
	t.Helper()
	s := &server{TestServer: testserver.New(), impl: gorillaws.New(opts), opCtx: make(chan context.Context, 16)}
	ws := transport.Websocket{Implementation: s.impl, InitFunc: acceptInit}
	if configure != nil {
		configure(&ws)
	}
	s.AddTransport(ws)
	s.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		s.opCtx <- ctx
		return next(ctx)
	})
	s.http = httptest.NewServer(s.impl.Middleware(s.TestServer))
	s.url = "ws" + strings.TrimPrefix(s.http.URL, "http")
	t.Cleanup(func() {
		s.impl.Shutdown("test over")
		s.http.Close()
	})
	return s
}

func acceptInit(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
	return ctx, nil, nil
}

type msg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func dial(t *testing.T, url, subprotocol string, header http.Header) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(url, header)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", url, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	if got := c.Subprotocol(); got != subprotocol {
		t.Fatalf("negotiated subprotocol %q; want %q", got, subprotocol)
	}
	return c
}

func send(t *testing.T, c *websocket.Conn, m msg) {
	t.Helper()
	if err := c.WriteJSON(m); err != nil {
		t.Fatalf("write %s: %v", m.Type, err)
	}
}

// read returns the next message that is not a keep-alive.
func read(t *testing.T, c *websocket.Conn) msg {
	t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var m msg
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("read: %v", err)
		}
		if m.Type != "ka" {
			return m
		}
	}
}

func expect(t *testing.T, c *websocket.Conn, typ string) msg {
	t.Helper()
	m := read(t, c)
	if m.Type != typ {
		t.Fatalf("got message %s %s; want %s", m.Type, m.Payload, typ)
	}
	return m
}

// readClose reads until the server's close frame and returns it.
func readClose(t *testing.T, c *websocket.Conn) *websocket.CloseError {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read: %v; want a close frame", err)
		}
		return ce
	}
}

func initTransportWS(t *testing.T, s *server) *websocket.Conn {
	t.Helper()
	c := dial(t, s.url, transportWS, nil)
	send(t, c, msg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	return c
}

func subscribe(t *testing.T, s *server, c *websocket.Conn, typ string) context.Context {
	t.Helper()
	send(t, c, msg{ID: "1", Type: typ, Payload: json.RawMessage(`{"query":"subscription { name }"}`)})
	select {
	case ctx := <-s.opCtx:
		return ctx
	case <-time.After(5 * time.Second):
		t.Fatal("subscription did not start")
		return nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGraphQLTransportWS(t *testing.T) {
	s := newServer(t, gorillaws.Options{}, nil)
	c := initTransportWS(t, s)
	subscribe(t, s, c, "subscribe")
	for range 2 {
		s.SendNextSubscriptionMessage()
		m := expect(t, c, "next")
		if m.ID != "1" || string(m.Payload) != `{"data":{"name":"test"}}` {
			t.Fatalf("got %+v; want id 1 with data name test", m)
		}
	}
	if got := s.impl.Count(); got != 1 {
		t.Fatalf("Count() = %d; want 1", got)
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	waitFor(t, "the socket to close", func() bool { return s.impl.Count() == 0 })
}

func TestLegacyGraphQLWS(t *testing.T) {
	s := newServer(t, gorillaws.Options{}, nil)
	c := dial(t, s.url, legacyWS, nil)
	send(t, c, msg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	subscribe(t, s, c, "start")
	s.SendNextSubscriptionMessage()
	m := expect(t, c, "data")
	if m.ID != "1" || string(m.Payload) != `{"data":{"name":"test"}}` {
		t.Fatalf("got %+v; want id 1 with data name test", m)
	}
	send(t, c, msg{ID: "1", Type: "stop"})
	expect(t, c, "complete")
	send(t, c, msg{Type: "connection_terminate"})
	if ce := readClose(t, c); ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d; want %d", ce.Code, websocket.CloseNormalClosure)
	}
	waitFor(t, "the socket to close", func() bool { return s.impl.Count() == 0 })
}

func TestMessageOverReadLimitClosesSocket(t *testing.T) {
	limit := int64(1024)
	s := newServer(t, gorillaws.Options{}, func(ws *transport.Websocket) { ws.PayloadReadLimit = &limit })
	c := initTransportWS(t, s)
	big := `{"query":"subscription { name }` + strings.Repeat(" ", 4096) + `"}`
	send(t, c, msg{ID: "1", Type: "subscribe", Payload: json.RawMessage(big)})
	if ce := readClose(t, c); ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d; want %d (message too big)", ce.Code, websocket.CloseMessageTooBig)
	}
	waitFor(t, "the socket to close", func() bool { return s.impl.Count() == 0 })
}

func TestOrigin(t *testing.T) {
	s := newServer(t, gorillaws.Options{AllowedOrigins: []string{"https://app.example.com"}}, nil)
	// Without Middleware, Accept refuses on its own.
	bare := httptest.NewServer(s.TestServer)
	t.Cleanup(bare.Close)

	for _, tc := range []struct {
		name, url, origin string
		want              int
	}{
		{"no origin", s.url, "", http.StatusSwitchingProtocols},
		{"same origin", s.url, s.http.URL, http.StatusSwitchingProtocols},
		{"allowed origin", s.url, "https://APP.example.com", http.StatusSwitchingProtocols},
		{"other scheme", s.url, "http://app.example.com", http.StatusForbidden},
		{"other origin", s.url, "https://evil.example", http.StatusForbidden},
		{"null origin", s.url, "null", http.StatusForbidden},
		{"other origin, no middleware", "ws" + strings.TrimPrefix(bare.URL, "http"), "https://evil.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			d := websocket.Dialer{Subprotocols: []string{transportWS}}
			c, resp, err := d.Dial(tc.url, h)
			if c != nil {
				c.Close()
			}
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d; want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusForbidden {
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), "origin \""+tc.origin+"\" are not allowed") {
					t.Fatalf("body %q; want it to name the refused origin", body)
				}
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	s := newServer(t, gorillaws.Options{}, nil)
	readers := []*websocket.Conn{initTransportWS(t, s), initTransportWS(t, s)}
	silent := initTransportWS(t, s) // never reads, so never answers the close
	_ = silent
	if got := s.impl.Count(); got != 3 {
		t.Fatalf("Count() = %d; want 3", got)
	}

	start := time.Now()
	s.impl.Shutdown("server is restarting")
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("Shutdown took %v; want about a second at most", d)
	}
	if got := s.impl.Count(); got != 0 {
		t.Fatalf("Count() after Shutdown = %d; want 0", got)
	}
	for _, c := range readers {
		ce := readClose(t, c)
		if ce.Code != websocket.CloseGoingAway || ce.Text != "server is restarting" {
			t.Fatalf("got close %d %q; want 1001 %q", ce.Code, ce.Text, "server is restarting")
		}
	}
	d := websocket.Dialer{Subprotocols: []string{transportWS}}
	c, resp, err := d.Dial(s.url, nil)
	if c != nil {
		c.Close()
	}
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Shutdown: %v, %v; want 503", resp, err)
	}
}

// A client that stops reading must not hold up another client: its own
// writes fail after WriteTimeout and its socket is closed.
func TestStalledClientDoesNotBlockOthers(t *testing.T) {
	payload := `{"tick":"` + strings.Repeat("x", 64<<10) + `"}`
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { name: String! }
		type Subscription { tick: String! }
	`})
	srv := handler.New(&graphql.ExecutableSchemaMock{
		SchemaFunc: func() *ast.Schema { return schema },
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			tick := time.NewTicker(2 * time.Millisecond)
			return func(context.Context) *graphql.Response {
				select {
				case <-ctx.Done():
					tick.Stop()
					return nil
				case <-tick.C:
					return &graphql.Response{Data: json.RawMessage(payload)}
				}
			}
		},
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) { return 0, true },
	})

	type nameKey struct{}
	var mu sync.Mutex
	writeErrs := map[string]error{}
	impl := gorillaws.New(gorillaws.Options{WriteTimeout: 200 * time.Millisecond})
	srv.AddTransport(transport.Websocket{
		Implementation: impl,
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			return context.WithValue(ctx, nameKey{}, p.GetString("name")), nil, nil
		},
		ErrorFunc: func(ctx context.Context, err error) {
			var we transport.WebsocketError
			if errors.As(err, &we) && !we.IsReadError {
				mu.Lock()
				name, _ := ctx.Value(nameKey{}).(string)
				if writeErrs[name] == nil {
					writeErrs[name] = err
				}
				mu.Unlock()
			}
		},
	})
	hs := httptest.NewServer(impl.Middleware(srv))
	t.Cleanup(func() {
		impl.Shutdown("test over")
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	connect := func(name string, d websocket.Dialer) *websocket.Conn {
		d.Subprotocols = []string{transportWS}
		c, _, err := d.Dial(url, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		send(t, c, msg{Type: "connection_init", Payload: json.RawMessage(`{"name":"` + name + `"}`)})
		expect(t, c, "connection_ack")
		send(t, c, msg{ID: "1", Type: "subscribe", Payload: json.RawMessage(`{"query":"subscription { tick }"}`)})
		return c
	}
	// The stalled client's tiny receive buffer fills quickly.
	connect("stalled", websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}})
	healthy := connect("healthy", websocket.Dialer{})

	received := 0
	stalledFailedAt := -1
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		expect(t, healthy, "next")
		received++
		mu.Lock()
		err := writeErrs["stalled"]
		mu.Unlock()
		if err != nil && stalledFailedAt < 0 {
			stalledFailedAt = received
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("stalled client's write failed with %v; want a timeout", err)
			}
		}
		if stalledFailedAt >= 0 && received >= stalledFailedAt+50 {
			break
		}
	}
	if stalledFailedAt < 0 {
		t.Fatalf("the stalled client's writes never failed (healthy client got %d messages)", received)
	}
	if received < stalledFailedAt+50 {
		t.Fatalf("healthy client got %d messages, only %d after the stalled write failed", received, received-stalledFailedAt)
	}
	mu.Lock()
	healthyErr := writeErrs["healthy"]
	mu.Unlock()
	if healthyErr != nil {
		t.Fatalf("healthy client's write failed: %v", healthyErr)
	}
	waitFor(t, "the stalled socket to close", func() bool { return impl.Count() == 1 })
}

// acceptServer accepts websockets with Accept alone and hands them over.
func acceptServer(t *testing.T) (impl *gorillaws.Implementation, url string, conns chan transport.WebsocketConn) {
	t.Helper()
	impl = gorillaws.New(gorillaws.Options{ReadBufferSize: 256})
	conns = make(chan transport.WebsocketConn, 4)
	hs := httptest.NewServer(impl.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := impl.Accept(w, r, transport.WebsocketAcceptOptions{Subprotocols: []string{transportWS}})
		if err == nil {
			conns <- c
		}
	})))
	t.Cleanup(func() {
		impl.Shutdown("test over")
		hs.Close()
	})
	return impl, "ws" + strings.TrimPrefix(hs.URL, "http"), conns
}

type readWaiter interface{ WaitReadable() bool }

func TestWaitReadable(t *testing.T) {
	impl, url, conns := acceptServer(t)
	next := func() (transport.WebsocketConn, readWaiter, *websocket.Conn) {
		client := dial(t, url, transportWS, nil)
		c := <-conns
		w, ok := c.(readWaiter)
		if !ok {
			t.Fatal("the connection does not implement WaitReadable")
		}
		return c, w, client
	}

	t.Run("input", func(t *testing.T) {
		c, w, client := next()
		done := make(chan bool)
		go func() { done <- w.WaitReadable() }()
		send(t, client, msg{Type: "ping"})
		if !<-done {
			t.Fatal("WaitReadable could not wait on a TCP socket")
		}
		_, r, err := c.NextReader()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		if string(b) != `{"type":"ping"}`+"\n" {
			t.Fatalf("read %q", b)
		}
		_ = c.Close()
	})
	t.Run("read deadline", func(t *testing.T) {
		c, w, _ := next()
		_ = c.(transport.WebsocketReadDeadliner).SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if !w.WaitReadable() {
			t.Fatal("WaitReadable could not wait")
		}
		_, _, err := c.NextReader()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("NextReader after the deadline: %v; want a timeout", err)
		}
		_ = c.Close()
	})
	t.Run("close while waiting, peer silent", func(t *testing.T) {
		c, w, _ := next()
		done := make(chan bool)
		go func() { done <- w.WaitReadable() }()
		waitFor(t, "the wait to start", func() bool { return strings.Contains(allStacks(), "WaitReadable") })
		_ = c.WriteClose(4000, "bye")
		_ = c.Close() // the waiting reader owns reading: no lingering reader starts
		// The peer never answers; the close grace drops the socket, which
		// ends the wait.
		<-done
		if _, _, err := c.NextReader(); !errors.Is(err, transport.ErrWebsocketClosed) && !errors.Is(err, net.ErrClosed) {
			t.Fatalf("NextReader after close: %v", err)
		}
		if w.WaitReadable() {
			t.Fatal("WaitReadable waited on a closed socket")
		}
	})
	t.Run("close while waiting, peer answers", func(t *testing.T) {
		c, w, client := next()
		done := make(chan bool)
		go func() { done <- w.WaitReadable() }()
		_ = c.WriteClose(4000, "bye")
		_ = c.Close()
		if ce := readClose(t, client); ce.Code != 4000 {
			t.Fatalf("close code %d", ce.Code)
		}
		<-done
		if _, _, err := c.NextReader(); !errors.Is(err, transport.ErrWebsocketClosed) {
			t.Fatalf("NextReader after the peer's close: %v; want ErrWebsocketClosed", err)
		}
	})
	waitFor(t, "every socket to close", func() bool { return impl.Count() == 0 })
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
