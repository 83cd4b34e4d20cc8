package gqlws_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/bont/switchboard/gorillaws"
	"github.com/bont/switchboard/gqlws"
)

// hub is an event source for a schema of one subscription field, blob,
// that hands a poll function to the transport as the broker does.
type hub struct {
	mu   sync.Mutex
	subs []*hubSub
	n    int
}

type hubSub struct {
	mu     sync.Mutex
	queue  []string
	notify func()
}

func (s *hubSub) poll() (v string, ok, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return "", false, true
	}
	v, s.queue = s.queue[0], s.queue[1:]
	return v, true, true
}

// publish queues v on every subscription.
func (h *hub) publish(v string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		s.mu.Lock()
		s.queue = append(s.queue, v)
		s.mu.Unlock()
		s.notify()
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func hubServer(t *testing.T, h *hub, writeTimeout time.Duration, configure ...func(*gqlws.Transport)) string {
	t.Helper()
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { blob: String! }
		type Subscription { blob: String! }
	`})
	srv := handler.New(&graphql.ExecutableSchemaMock{
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			if graphql.GetOperationContext(ctx).Operation.Operation != ast.Subscription {
				return graphql.OneShot(graphql.ErrorResponse(ctx, "subscriptions only"))
			}
			notify, ok := gqlws.Notifier(ctx)
			if !ok {
				return graphql.OneShot(graphql.ErrorResponse(ctx, "not served by gqlws"))
			}
			src := &hubSub{notify: notify}
			h.mu.Lock()
			h.subs = append(h.subs, src)
			h.n++
			h.mu.Unlock()
			var key uint64
			items := gqlws.AttachPoll(ctx, src.poll, func(string) uint64 { key++; return key }, nil, nil)
			return func(ctx context.Context) *graphql.Response {
				v, ok := <-items
				if !ok {
					return nil
				}
				data, _ := json.Marshal(map[string]string{"blob": v})
				return &graphql.Response{Data: data}
			}
		},
		SchemaFunc: func() *ast.Schema { return schema },
	})
	impl := gorillaws.New(gorillaws.Options{ReadBufferSize: 256, WriteTimeout: writeTimeout})
	tr := &gqlws.Transport{
		Upgrader: impl,
		InitFunc: func(ctx context.Context, _ transport.InitPayload) (context.Context, error) { return ctx, nil },
	}
	for _, f := range configure {
		f(tr)
	}
	srv.AddTransport(tr)
	hs := httptest.NewServer(impl.Middleware(srv))
	t.Cleanup(func() {
		impl.Shutdown("test over")
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

func hubSubscribe(t *testing.T, url string, rcvbuf int) *websocket.Conn {
	t.Helper()
	nd := &net.Dialer{}
	if rcvbuf > 0 {
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	d := websocket.Dialer{Subprotocols: []string{gqlws.ProtoTransportWS}, HandshakeTimeout: 5 * time.Second, NetDialContext: nd.DialContext}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, m := range []string{`{"type":"connection_init"}`, `{"id":"1","type":"subscribe","payload":{"query":"subscription { blob }"}}`} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Sockets whose clients stopped reading hold up no other socket: their
// writers wait on them (here for up to a minute), and the writes to the
// others go on regardless, however many stalled sockets come first.
func TestStalledSocketsHoldUpNoOther(t *testing.T) {
	h := &hub{}
	url := hubServer(t, h, time.Minute)
	stalled := 2*runtime.GOMAXPROCS(0) + 1
	for range stalled {
		hubSubscribe(t, url, 4096) // never read
	}
	healthy := hubSubscribe(t, url, 0)
	_ = healthy.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, m, err := healthy.ReadMessage(); err != nil || !strings.Contains(string(m), "connection_ack") {
		t.Fatalf("ack: %s %v", m, err)
	}
	waitFor(t, "every subscription to start", func() bool { return h.count() == stalled+1 })

	// Far more than the stalled sockets' buffers take: their writes must
	// wait, while the healthy socket reads every item.
	blob := strings.Repeat("x", 64<<10)
	const items = 100
	go func() {
		for range items {
			h.publish(blob)
		}
	}()
	for i := range items {
		_ = healthy.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, m, err := healthy.ReadMessage()
		if err != nil {
			t.Fatalf("item %d of %d on the healthy socket: %v", i+1, items, err)
		}
		if !strings.Contains(string(m), `"type":"next"`) || len(m) < len(blob) {
			t.Fatalf("item %d: %.80s", i+1, m)
		}
	}
}
