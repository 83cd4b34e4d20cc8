// Package gqlws is a gqlgen transport for GraphQL over websockets, speaking
// graphql-transport-ws and the legacy graphql-ws, that keeps gqlgen's
// executor but not its goroutine-per-subscription design.
//
// gqlgen's own transport.Websocket runs, per socket, a reader, a goroutine
// that waits for the request to end, a keep-alive ticker goroutine (legacy
// protocol), and one goroutine per subscription parked on the resolver's
// channel; resolvers that adapt a broker add one more. Here a socket at
// rest has one goroutine, its reader, which only waits for input at a
// shallow depth (each message is read and handled on a short-lived
// goroutine), and a subscription has none:
//
//   - A subscription resolver hands its source (a poll function) to the
//     transport with AttachPoll, and has its event source call the
//     function Notifier returns after each item it queues (the fan-out
//     broker does this from its publish path). The
//     notification queues the subscription on its socket and the socket on
//     the transport's writers: one goroutine per CPU, living only while
//     sockets have items to write, takes the items off the source, runs
//     gqlgen's executor on each, and writes the result under the socket's
//     write deadline. A writer about to wait for a client that stopped
//     reading hands the other sockets to a new writer first, so a slow
//     client stalls only its own socket.
//   - Keep-alives and the connection_init timeout are runtime timers
//     (time.AfterFunc), which hold no goroutine while they wait.
//   - Each event is executed once per group of identical subscriptions:
//     same operation text and operation name, same values of the
//     variables the selection set reads, and the same viewer key (what
//     about the viewer changes the result, from Transport.ViewerKey). The
//     marshaled payload is cached by the item's key and written to every
//     member with only a per-subscription prefix ({"id":...,"type":...}).
//     The group executes with the gqlgen state of the member that made
//     it; the other members keep none.
//
// Besides the protocols, the transport applies the rules gqlgen leaves
// out: 4408 when connection_init does not come within InitTimeout, 4401 for
// subscribe before connection_ack, 4429 for a second connection_init, 4409
// for a subscribe that reuses the id of a running subscription, and an
// error message (code LIMIT_EXCEEDED) for a subscribe beyond
// MaxSubscriptions. Frames over ReadLimit are refused by the socket (1009).
// Two hooks let the caller apply limits it shares with other transports:
// Pending bounds sockets that have not been acknowledged, and Admit
// refuses single operations (a rate limit) without closing the socket.
//
// What the transport needs from the socket is the Conn interface, and
// from its acceptor Upgrader (contract.go); gorillaws implements both.
// The transport owns each socket it accepts and is the one that closes
// it: on its own rules, for a *CloseError from a hook or a source's end,
// or when asked with Close.
//
// Files: gqlws.go (Transport, the handshake), contract.go (what the
// transport needs and offers), protocol.go (the two protocols' message
// tables and the socket's state machine), subscribe.go (starting and
// stopping operations), drain.go (taking items off sources and writing
// them), writers.go (the writer goroutines), source.go (the polled
// source), group.go (shared executions).
package gqlws

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// Subprotocols, in order of preference.
const (
	ProtoTransportWS = "graphql-transport-ws"
	ProtoGraphQLWS   = "graphql-ws"
)

// Transport serves GraphQL over websockets. Set its fields before use; it is
// safe for concurrent use afterwards.
type Transport struct {
	// Upgrader accepts the websocket (gorillaws.Implementation).
	Upgrader Upgrader
	// InitFunc authenticates connection_init; the context it returns is
	// the connection's from then on. A *CloseError closes with its code.
	InitFunc func(ctx context.Context, payload transport.InitPayload) (context.Context, error)
	// InitTimeout: no connection_init within it closes with 4408.
	InitTimeout time.Duration
	// KeepAlive is the interval of "ka" messages on legacy graphql-ws
	// connections (0: none).
	KeepAlive time.Duration
	// MaxSubscriptions caps running subscriptions per connection (0: no cap).
	MaxSubscriptions int
	// ReadLimit bounds incoming frames (0: no limit).
	ReadLimit int64
	// Pending, when set, is called for each socket as it is accepted,
	// before connection_init. An error closes the socket at once, with
	// the code and reason of a *CloseError (4429 otherwise). Without an
	// error, done is called exactly once: when connection_init has been
	// accepted (before the ack is written) or when the socket closes,
	// whichever comes first.
	Pending func(r *http.Request) (done func(), err error)
	// Admit, when set, is asked before each operation a client starts
	// (subscribe; start on graphql-ws), queries and mutations as well as
	// subscriptions, with the connection's context (the InitFunc's). An
	// error refuses that operation alone: the client gets an error
	// message for its id carrying the error (a *gqlerror.Error as it is),
	// and the socket and its other operations live on.
	Admit func(ctx context.Context) error
	// ViewerKey says what about the connection's viewer can change an
	// operation's result. Subscriptions share executions only when their
	// keys are equal; ok false shares nothing. Nil shares nothing.
	ViewerKey func(ctx context.Context) (key string, ok bool)
	// ErrorFunc, when set, hears read and write errors.
	ErrorFunc func(ctx context.Context, err error)
	// Compile, when set, is asked once per subscription, or once per
	// group of identical ones, for a Renderer of its operation; nil (or a
	// nil Renderer) leaves every item to gqlgen's executor. ctx is the
	// subscription's, carrying the connection's values (the viewer).
	Compile func(ctx context.Context, rc *graphql.OperationContext) Renderer
	// Renders, when set, counts the items rendered by a Renderer and by
	// gqlgen's executor (once per group and item, not per delivery).
	Renders *RenderCounts

	groups  groups
	writers writers
	// The writers' hooks as func values, made once rather than per socket.
	hooksOnce           sync.Once
	blocking, unblocked func()
}

var _ graphql.Transport = (*Transport)(nil)

// Supports reports whether r asks for a websocket.
func (t *Transport) Supports(r *http.Request) bool {
	return r.Header.Get("Upgrade") != ""
}

// Do accepts one websocket and starts its reader, the one goroutine the
// socket keeps while it is open.
func (t *Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	// Counted as pending before the handshake is answered, so that a
	// client that has its answer finds the socket counted.
	pendingDone := func() {}
	var refused error
	if t.Pending != nil {
		var done func()
		if done, refused = t.Pending(r); done != nil {
			pendingDone = done
		}
	}
	ws, err := t.Upgrader.Upgrade(w, r, subprotocols)
	if err != nil {
		pendingDone()
		return // Upgrade answered the request
	}
	if refused != nil {
		// Accepted only to say why, in a close code a browser can read.
		_ = ws.WriteClose(closeCode(refused, 4429, "Too many connections"))
		_ = ws.Close()
		return
	}
	proto := protocolOf(ws.Subprotocol())
	if proto == nil {
		_ = ws.WriteClose(1002, "unsupported subprotocol "+ws.Subprotocol())
		_ = ws.Close()
		pendingDone()
		return
	}
	t.hooksOnce.Do(func() { t.blocking, t.unblocked = t.writers.blocking, t.writers.unblocked })
	ws.OnBlockingWrite(t.blocking, t.unblocked)
	if t.ReadLimit > 0 {
		ws.SetReadLimit(t.ReadLimit)
	}
	// The reader runs in a goroutine of its own and the handler returns:
	// net/http then lets go of the request's buffers and the handler's
	// deep stack, which a socket at rest would otherwise pin. The
	// request's context ends when the handler returns, so the
	// connection's keeps its values but not its cancellation. It also
	// carries the conn, for Close.
	c := &conn{
		t:     t,
		ws:    ws,
		proto: proto,
		exec:  exec,

		pending: pendingDone,
	}
	c.ctx, c.cancel = context.WithCancel(context.WithValue(context.WithoutCancel(r.Context()), connKey{}, c))
	if t.InitTimeout > 0 {
		c.initTimer = time.AfterFunc(t.InitTimeout, func() {
			c.mu.Lock()
			inited := c.inited
			c.mu.Unlock()
			if !inited {
				c.close(4408, "Connection initialisation timeout")
			}
		})
	}
	go c.read()
}

// RenderCounts counts how subscription items were rendered; read it at any
// time.
type RenderCounts struct {
	Compiled, Executor atomic.Uint64
}

// Renderer writes one item's result without gqlgen's executor: it appends
// to dst exactly the bytes json.Marshal gives for the *graphql.Response
// the executor would return for item, and reports ok. ok false (an item
// it does not know how to render the same) hands the item to the
// executor. It is called by one goroutine at a time per subscription or
// group, and must not keep dst.
type Renderer func(dst []byte, item any) (b []byte, ok bool)
