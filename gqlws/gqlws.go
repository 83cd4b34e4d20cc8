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
//     transport with AttachPoll, and has its
//     event source call the function Notifier returns after each item it
//     sends (the fan-out broker does this from its publish path). The
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
package gqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Subprotocols, in order of preference.
const (
	ProtoTransportWS = "graphql-transport-ws"
	ProtoGraphQLWS   = "graphql-ws"
)

// CloseError, returned by an InitFunc, closes the socket with Code and
// Reason instead of acknowledging it. The error's message goes to legacy
// clients in connection_error.
type CloseError struct {
	Code    int
	Reason  string
	Message string
}

func (e *CloseError) Error() string { return e.Message }

// Transport serves GraphQL over websockets. Set its fields before use; it is
// safe for concurrent use afterwards.
type Transport struct {
	// Upgrader accepts the websocket (gorillaws). Its connections must
	// implement WriteText(parts ...[]byte) error (gorillaws.TextWriter).
	Upgrader transport.WebsocketImplementation
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
	ws, err := t.Upgrader.Accept(w, r, transport.WebsocketAcceptOptions{
		ResponseHeader: http.Header{},
		Subprotocols:   []string{ProtoTransportWS, ProtoGraphQLWS},
	})
	if err != nil {
		pendingDone()
		return // Accept answered the request
	}
	if refused != nil {
		// Accepted only to say why, in a close code a browser can read.
		code, reason := 4429, "Too many connections"
		var ce *CloseError
		if errors.As(refused, &ce) {
			code, reason = ce.Code, ce.Reason
		}
		_ = ws.WriteClose(code, reason)
		_ = ws.Close()
		return
	}
	tw, ok := ws.(textWriter)
	if !ok {
		_ = ws.WriteClose(1011, "websocket implementation cannot write text parts")
		_ = ws.Close()
		pendingDone()
		return
	}
	proto := ws.Subprotocol()
	switch proto {
	case ProtoTransportWS:
	case ProtoGraphQLWS, "":
		proto = ProtoGraphQLWS
	default:
		_ = ws.WriteClose(1002, "unsupported subprotocol "+proto)
		_ = ws.Close()
		pendingDone()
		return
	}
	ck, _ := ws.(corker)
	pooled := false
	if bn, ok := ws.(blockNotifier); ok {
		t.hooksOnce.Do(func() { t.blocking, t.unblocked = t.writers.blocking, t.writers.unblocked })
		bn.OnBlockingWrite(t.blocking, t.unblocked)
		pooled = true
	}
	if t.ReadLimit > 0 {
		if l, ok := ws.(transport.WebsocketReadLimiter); ok {
			l.SetReadLimit(t.ReadLimit)
		}
	}
	// The reader runs in a goroutine of its own and the handler returns:
	// net/http then lets go of the request's buffers and the handler's
	// deep stack, which a socket at rest would otherwise pin. The
	// request's context ends when the handler returns, so the
	// connection's keeps its values but not its cancellation.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	c := &conn{
		t:      t,
		ws:     ws,
		tw:     tw,
		ck:     ck,
		legacy: proto == ProtoGraphQLWS,
		pooled: pooled,
		exec:   exec,
		ctx:    ctx,
		cancel: cancel,

		pending: pendingDone,
	}
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

type textWriter interface {
	WriteText(parts ...[]byte) error
}

// corker is implemented by sockets that can collect several writes into
// one system call (gorillaws): a writer's visit corks around its writes.
type corker interface {
	Cork()
	Uncork() error
}

// blockNotifier is implemented by sockets that say when a write has to
// wait for the peer (gorillaws); their drains run on the transport's
// writers. Others get a goroutine per drain, which may wait as long as it
// must.
type blockNotifier interface {
	OnBlockingWrite(before, after func())
}

// conn is one websocket. The reader goroutine owns inited/acked changes and
// starts subscriptions; writes come from it, from timers and from the
// drain (a writer).
type conn struct {
	t      *Transport
	ws     transport.WebsocketConn
	tw     textWriter
	ck     corker // nil: every write goes out by itself
	legacy bool
	pooled bool // drains run on t.writers
	exec   graphql.GraphExecutor
	cancel context.CancelFunc

	ctx     context.Context // the connection's; after init, the InitFunc's
	viewer  string          // ViewerKey of ctx, after init
	grouped bool

	mu     sync.Mutex
	inited bool
	acked  bool
	closed bool
	subs   []*sub // running; a handful (MaxSubscriptions), so a slice, not a map

	ready     []*sub // subscriptions with items to take
	draining  bool   // queued on or drained by a writer
	initTimer *time.Timer
	kaTimer   *time.Timer
	pending   func() // Transport.Pending's done; nil once called
}

// textMessage is RFC 6455's text frame opcode, as the socket reports it.
const textMessage = 1

type inMessage struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

type outMessage struct {
	ID      string `json:"id,omitempty"`
	Type    string `json:"type"`
	Payload any    `json:"payload,omitempty"`
}

// readWaiter is implemented by sockets whose reader can wait for input
// without reading it (gorillaws).
type readWaiter interface {
	// WaitReadable blocks until the next message can be read, or reading
	// would fail; false means it cannot wait and the caller reads at once.
	WaitReadable() bool
}

// read is the socket's one goroutine at rest. Where the socket can wait
// for input at a shallow depth, the reader only waits, and each message is
// read and handled on a short-lived goroutine it waits for: gorilla's
// frame parsing and gqlgen's executor then never run on the reader, whose
// stack stays at the runtime's smallest size (a stack that has grown is
// not given back while the goroutine waits at any depth). Otherwise the
// reader reads each message itself and hands it to a short-lived goroutine.
func (c *conn) read() {
	defer c.shutdown()
	w, _ := c.ws.(readWaiter)
	for {
		var ok bool
		if w != nil && w.WaitReadable() {
			ok = c.aside(c.readAndHandle)
		} else {
			var m inMessage
			if m, ok = c.next(); ok {
				ok = c.aside(func() bool { return c.handle(m) })
			}
		}
		if !ok {
			return
		}
	}
}

func (c *conn) readAndHandle() bool {
	m, ok := c.next()
	return ok && c.handle(m)
}

// next reads one message and checks its shape; false ends the connection.
func (c *conn) next() (inMessage, bool) {
	var m inMessage
	typ, r, err := c.ws.NextReader()
	if err != nil {
		if !errors.Is(err, transport.ErrWebsocketClosed) && !errors.Is(err, net.ErrClosed) {
			c.report(err)
		}
		return m, false
	}
	data, err := io.ReadAll(r)
	if err != nil {
		c.report(err)
		return m, false
	}
	if typ != textMessage {
		c.invalid("binary frames are not part of the protocol")
		return m, false
	}
	if err := json.Unmarshal(data, &m); err != nil {
		c.invalid("not a JSON object")
		return m, false
	}
	switch m.Type {
	case "subscribe", "start", "complete", "stop":
		if m.ID == "" {
			c.invalid(m.Type + " needs an id")
			return m, false
		}
	}
	switch m.Type {
	case "connection_init", "subscribe", "start":
		if p := bytes.TrimSpace(m.Payload); len(p) > 0 && p[0] != '{' && string(p) != "null" {
			c.invalid("the payload must be an object")
			return m, false
		}
	}
	return m, true
}

// aside runs f on a goroutine of its own and waits for it. Reading and
// handling a message go deep (gorilla, gqlgen's executor); the reader,
// which spends a socket's life waiting, thus keeps the small stack it
// needs for that.
func (c *conn) aside(f func() bool) bool {
	done := make(chan bool, 1)
	go func() { done <- f() }()
	return <-done
}

// handle applies one message; false ends the connection.
func (c *conn) handle(m inMessage) bool {
	c.mu.Lock()
	inited, acked := c.inited, c.acked
	c.mu.Unlock()

	switch m.Type {
	case "connection_init":
		if inited {
			c.close(4429, "Too many initialisation requests")
			return false
		}
		return c.init(m.Payload)
	case "subscribe", "start":
		if (m.Type == "subscribe") == c.legacy {
			break
		}
		if !acked {
			if !c.legacy {
				c.close(4401, "Unauthorized")
			} else {
				c.connectionError("unexpected message " + m.Type)
				c.close(1002, "unexpected message")
			}
			return false
		}
		return c.subscribe(m.ID, m.Payload)
	case "complete", "stop":
		if (m.Type == "complete") == c.legacy {
			break
		}
		c.stop(m.ID)
		return true
	case "ping":
		if c.legacy {
			break
		}
		c.write(outMessage{Type: "pong", Payload: rawOrNil(m.Payload)})
		return true
	case "pong":
		if c.legacy {
			break
		}
		return true
	case "connection_terminate":
		if !c.legacy {
			break
		}
		c.close(1000, "terminated")
		return false
	}
	c.invalid("unknown type " + truncate(m.Type, 40))
	return false
}

// invalid ends the connection for a frame that is not a message of the
// protocol: 4400 and the reason (graphql-transport-ws; the legacy
// protocol has no code of its own, so it gets the same).
func (c *conn) invalid(why string) {
	c.connectionError("invalid message: " + why)
	c.close(4400, "Invalid message received: "+why)
}

func rawOrNil(p json.RawMessage) any {
	if len(p) == 0 {
		return nil
	}
	return p
}

func (c *conn) init(payload json.RawMessage) bool {
	c.mu.Lock()
	c.inited = true
	if c.initTimer != nil {
		c.initTimer.Stop()
		c.initTimer = nil
	}
	c.mu.Unlock()

	var p transport.InitPayload
	if len(payload) > 0 && string(payload) != "null" {
		if err := json.Unmarshal(payload, &p); err != nil {
			c.connectionError("invalid connection_init payload")
			c.close(4400, "Invalid connection_init payload")
			return false
		}
	}
	if c.t.InitFunc != nil {
		ctx, err := c.t.InitFunc(c.ctx, p)
		if err != nil {
			c.connectionError(err.Error())
			code, reason := 4403, "Forbidden"
			var ce *CloseError
			if errors.As(err, &ce) {
				code, reason = ce.Code, ce.Reason
			}
			c.close(code, reason)
			return false
		}
		c.ctx = ctx
	}
	if c.t.ViewerKey != nil {
		c.viewer, c.grouped = c.t.ViewerKey(c.ctx)
	}
	// No longer pending once authenticated: before the ack, so a client
	// that has it may open its next socket.
	c.endPending()
	c.write(outMessage{Type: "connection_ack"})
	c.mu.Lock()
	c.acked = true
	c.mu.Unlock()
	if c.legacy {
		c.write(outMessage{Type: "ka"})
		if c.t.KeepAlive > 0 {
			c.mu.Lock()
			c.kaTimer = time.AfterFunc(c.t.KeepAlive, c.keepAlive)
			c.mu.Unlock()
		}
	}
	return true
}

func (c *conn) keepAlive() {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed || c.ctx.Err() != nil {
		return
	}
	c.write(outMessage{Type: "ka"})
	c.mu.Lock()
	if !c.closed {
		c.kaTimer.Reset(c.t.KeepAlive)
	}
	c.mu.Unlock()
}

// connectionError tells a legacy client why it is being closed;
// graphql-transport-ws has no such message (the close reason says it).
func (c *conn) connectionError(msg string) {
	if c.legacy {
		c.write(outMessage{Type: "connection_error", Payload: map[string]string{"message": msg}})
	}
}

func (c *conn) report(err error) {
	if c.t.ErrorFunc != nil && err != nil {
		c.t.ErrorFunc(c.ctx, err)
	}
}

// write sends one control message. Errors close the socket (the
// implementation does that); the reader then ends.
func (c *conn) write(m outMessage) {
	if err := c.ws.WriteJSON(m); err != nil {
		c.report(err)
	}
}

// close sends a close frame and ends the connection; the reader sees the
// socket close and cleans up.
func (c *conn) close(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	_ = c.ws.WriteClose(code, reason)
	_ = c.ws.Close()
	c.cancel()
}

// shutdown runs when the reader ends: every subscription's context ends
// (sources end by their release), timers stop, the socket closes.
func (c *conn) shutdown() {
	c.mu.Lock()
	c.closed = true
	if c.initTimer != nil {
		c.initTimer.Stop()
	}
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	var release []func()
	for _, s := range c.subs {
		if s.release != nil {
			release = append(release, s.release)
		}
	}
	c.mu.Unlock()
	c.cancel()
	for _, r := range release {
		r()
	}
	_ = c.ws.Close()
	c.endPending()
}

// endPending tells Transport.Pending the socket is no longer pending.
func (c *conn) endPending() {
	c.mu.Lock()
	done := c.pending
	c.pending = nil
	c.mu.Unlock()
	if done != nil {
		done()
	}
}

// end cancels the subscription's context and ends its source.
func (s *sub) end() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.release != nil {
		s.release()
	}
}

// ---- subscriptions ----

const (
	itemNone = iota
	itemGot
	itemClosed
)

// source is a subscription's event source as the transport sees it.
type source interface {
	// take receives without blocking: itemGot (with the item's cache
	// key), itemNone, or itemClosed.
	take() (key uint64, state int)
	// current is the item take received, for a Renderer; drop lets go
	// of it once rendered.
	current() any
	drop()
	// feed hands the item take received to gqlgen's executor, which
	// receives it on the channel the resolver returned (or, after share,
	// on the group executor's).
	feed()
	// share makes feed send to the channel other's executor reads, and
	// reports whether it could (both sources of one item type).
	share(other source) bool
	// ended runs the resolver's end hook; ctx is the connection's.
	ended(ctx context.Context)
}

type sub struct {
	c      *conn
	id     string
	ctx    context.Context
	cancel context.CancelFunc
	prefix []byte // {"id":"…","type":"next","payload":

	// Set before started; then read-only.
	responses graphql.ResponseHandler
	fast      Renderer // nil: every item through responses
	src       source
	group     *group
	release   func() // ends the source; nil when its context does

	// mu of the conn:
	started bool // responses is set; notifications may queue it
	early   bool // notified before started
	queued  bool // in c.ready
	stopped bool // the client completed it: stop sent the complete
}

type pumpKey struct{}

// Notifier returns the function an event source must call after each item
// it queues for the poll function later handed to AttachPoll, and after it
// ends. ok is false when ctx is not a subscription served by this
// transport.
func Notifier(ctx context.Context) (notify func(), ok bool) {
	s, ok := ctx.Value(pumpKey{}).(*sub)
	if !ok {
		return nil, false
	}
	return s.notify, true
}

// AttachPoll hands a subscription's source to the transport and returns
// the channel the resolver returns to gqlgen: the transport polls the
// source and feeds the channel itself, so no goroutine waits on either.
// poll returns the next item (ok true), or nothing yet (ok false, more
// true), or the end (ok false, more false: the source has ended and every
// item was taken). The event source calls the function Notifier returns
// after each item it queues and after it ends. Items with equal key
// render to equal results for equal operations and viewers (an event's
// revision). release, when set, is
// called when the subscription stops (complete, the socket's end, a
// panic): the source then ends without watching the subscription's
// context.
//
// ended runs once the source has ended and every item was written, unless
// the client completed the subscription or the socket is closing. It gets
// the connection's context, which carries what the request's did (the
// socket, for gorillaws.Close) and the InitFunc's values, so that it need
// not keep the subscription's: the transport lets go of that context, and
// of gqlgen's state for the operation, when another subscription of the
// same group renders for it.
func AttachPoll[T any](ctx context.Context, poll func() (v T, ok, more bool), key func(T) uint64, ended func(ctx context.Context), release func()) <-chan T {
	s, ok := ctx.Value(pumpKey{}).(*sub)
	if !ok {
		return nil
	}
	s.release = release
	ps := &pollSource[T]{poll: poll, slot: make(chan T, 1), key: key, end: ended}
	s.src = ps
	return ps.slot
}

type pollSource[T any] struct {
	poll func() (T, bool, bool)
	slot chan T
	key  func(T) uint64
	end  func(context.Context)
	cur  T
}

func (ps *pollSource[T]) take() (uint64, int) {
	v, ok, more := ps.poll()
	switch {
	case ok:
		ps.cur = v
		return ps.key(v), itemGot
	case more:
		return 0, itemNone
	default:
		return 0, itemClosed
	}
}

func (ps *pollSource[T]) current() any { return ps.cur }

func (ps *pollSource[T]) drop() {
	var zero T
	ps.cur = zero
}

func (ps *pollSource[T]) feed() {
	var zero T
	ps.slot <- ps.cur
	ps.cur = zero
}

func (ps *pollSource[T]) share(other source) bool {
	o, ok := other.(*pollSource[T])
	if ok {
		ps.slot = o.slot
	}
	return ok
}

func (ps *pollSource[T]) ended(ctx context.Context) {
	if ps.end != nil {
		ps.end(ctx)
	}
}

// notify queues s on its socket and makes sure a writer will drain it. It
// is called from the broker's publish path: it never blocks.
func (s *sub) notify() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.started {
		s.early = true
		return
	}
	c.queueLocked(s)
}

func (c *conn) queueLocked(s *sub) {
	if s.queued {
		return
	}
	s.queued = true
	c.ready = append(c.ready, s)
	if !c.draining {
		c.draining = true
		if c.pooled {
			c.t.writers.start(c)
		} else {
			go c.drain()
		}
	}
}

// drain takes and writes every ready item, then exits.
func (c *conn) drain() {
	for c.step(0) {
	}
}

// step writes the items of the next ready subscription, at most limit of
// them (0: all; -1: its visitLimit), and reports whether the socket has
// more to write; when it has not, the socket is no longer draining. A subscription stopped by the
// limit goes back to the end of the ready list.
func (c *conn) step(limit int) bool {
	c.mu.Lock()
	if len(c.ready) == 0 {
		c.draining = false
		c.ready = nil
		c.mu.Unlock()
		return false
	}
	s := c.ready[0]
	c.ready[0] = nil
	c.ready = c.ready[1:]
	s.queued = false
	c.mu.Unlock()
	if limit < 0 {
		limit = s.visitLimit()
	}
	more := c.pump(s, limit)
	c.mu.Lock()
	defer c.mu.Unlock()
	if more && !s.queued {
		s.queued = true
		c.ready = append(c.ready, s)
	}
	if len(c.ready) == 0 {
		c.draining = false
		c.ready = nil
		return false
	}
	return true
}

// round is a writer's visit: a few items of each subscription that was
// ready when the visit began (see visitLimit), and whether the socket has
// more to write. A socket with several subscriptions thus gets an event to
// all of them in one visit, while a fan-out of several events still goes
// out event by event across the sockets, which keeps each group's few
// cached payloads useful, and no socket with a backlog holds a writer.
// The socket is corked for the visit, so its frames leave in one write.
func (c *conn) round() bool {
	if c.ck != nil {
		c.ck.Cork()
		defer func() {
			if err := c.ck.Uncork(); err != nil {
				c.report(err)
			}
		}()
	}
	c.mu.Lock()
	n := len(c.ready)
	c.mu.Unlock()
	more := false
	for range max(n, 1) {
		if more = c.step(-1); !more {
			break
		}
	}
	return more
}

// soloVisit is how many items a subscription alone in its group (or in
// none) writes per visit: a replaying subscriber's backlog then goes out
// that many frames per write. Members of a larger group write one, so
// that the group's sockets move through events together and its cache of
// groupCacheSize payloads keeps serving them.
const soloVisit = 16

// visitLimit is how many of s's items one visit writes.
func (s *sub) visitLimit() int {
	if s.group == nil || s.group.members.Load() <= 1 {
		return soloVisit
	}
	return 1
}

// pump writes s's items until none is left, or limit were written (0: no
// limit); it reports whether it stopped at the limit.
func (c *conn) pump(s *sub, limit int) (atLimit bool) {
	defer func() {
		if r := recover(); r != nil {
			ctx := s.ctx
			if s.group != nil {
				ctx = s.group.exec.ctx
			}
			err := graphql.GetOperationContext(ctx).Recover(ctx, r)
			c.sendError(s.id, toGQLError(err))
			s.end()
			atLimit = false
		}
	}()
	for n := 0; limit == 0 || n < limit; {
		key, state := s.src.take()
		switch state {
		case itemNone:
			return false
		case itemClosed:
			c.finish(s)
			return false
		}
		n++
		payload := c.render(s, key)
		if payload == nil {
			continue
		}
		if err := c.tw.WriteText(s.prefix, payload, suffix); err != nil {
			c.report(err)
		}
	}
	return true
}

var suffix = []byte("}")

// render runs gqlgen's executor on the item s.src holds, once per group,
// with the group's executor.
func (c *conn) render(s *sub, key uint64) []byte {
	g := s.group
	if g == nil {
		return c.execute(s, s.fast, s.responses, s.ctx)
	}
	if b := g.lookup(key); b != nil {
		return b
	}
	g.renderMu.Lock()
	defer g.renderMu.Unlock()
	if b := g.lookup(key); b != nil {
		return b
	}
	b := c.execute(s, g.exec.fast, g.exec.responses, g.exec.ctx)
	if b != nil {
		g.store(key, b)
	}
	return b
}

// execute renders the item s.src holds: with fast when it can, else with
// gqlgen's executor.
func (c *conn) execute(s *sub, fast Renderer, responses graphql.ResponseHandler, ctx context.Context) []byte {
	if fast != nil {
		if b, ok := fast(nil, s.src.current()); ok {
			s.src.drop()
			if n := c.t.Renders; n != nil {
				n.Compiled.Add(1)
			}
			return b
		}
	}
	if n := c.t.Renders; n != nil {
		n.Executor.Add(1)
	}
	s.src.feed()
	resp := responses(ctx)
	if resp == nil {
		return nil
	}
	b, err := json.Marshal(resp)
	if err != nil {
		c.report(err)
		return nil
	}
	return b
}

// finish ends a subscription whose source ended.
func (c *conn) finish(s *sub) {
	c.mu.Lock()
	skip := s.stopped || c.closed
	c.mu.Unlock()
	if !skip && c.ctx.Err() == nil {
		s.src.ended(c.ctx)
	}
	c.mu.Lock()
	c.removeLocked(s)
	skip = s.stopped || c.closed
	c.mu.Unlock()
	s.end()
	if s.group != nil {
		c.t.groups.leave(s.group)
	}
	if !skip && c.ctx.Err() == nil {
		c.write(outMessage{ID: s.id, Type: "complete"})
	}
}

func (c *conn) stop(id string) {
	c.mu.Lock()
	s := c.findLocked(id)
	if s != nil {
		c.removeLocked(s)
		s.stopped = true
	}
	c.mu.Unlock()
	if s != nil {
		s.end()
		// As gqlgen does, confirm with complete; sent here, in the
		// reader, so it precedes anything of a later subscription that
		// reuses the id.
		c.write(outMessage{ID: id, Type: "complete"})
	}
}

func (c *conn) sendError(id string, errs ...*gqlerror.Error) {
	var payload any = errs
	if c.legacy && len(errs) > 0 {
		// graphql-ws sends one error object.
		payload = errs[0]
	}
	c.write(outMessage{ID: id, Type: "error", Payload: payload})
}

func toGQLError(err error) *gqlerror.Error {
	var g *gqlerror.Error
	if errors.As(err, &g) {
		return g
	}
	g = &gqlerror.Error{}
	if err != nil {
		g.Message = err.Error()
	}
	return g
}

func (c *conn) sendResponse(id string, resp *graphql.Response) {
	typ := "next"
	if c.legacy {
		typ = "data"
	}
	c.write(outMessage{ID: id, Type: typ, Payload: resp})
}

func (c *conn) nextPrefix(id string) []byte {
	typ := "next"
	if c.legacy {
		typ = "data"
	}
	b := make([]byte, 0, len(id)+40)
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, id)
	b = append(b, `,"type":"`...)
	b = append(b, typ...)
	b = append(b, `","payload":`...)
	return b
}

// subscribe starts operation id. The resolver runs here, while the reader
// waits:
// for the broker that is registering and reading the first replay page.
func (c *conn) subscribe(id string, payload json.RawMessage) bool {
	c.mu.Lock()
	dup := c.findLocked(id) != nil
	full := c.t.MaxSubscriptions > 0 && len(c.subs) >= c.t.MaxSubscriptions
	c.mu.Unlock()
	if dup {
		c.close(4409, "Subscriber for "+truncate(id, 64)+" already exists")
		return false
	}
	if full {
		c.sendError(id, &gqlerror.Error{
			Message:    "Too many subscriptions on this connection; complete one first or open another connection.",
			Extensions: map[string]any{"code": "LIMIT_EXCEEDED", "limit": c.t.MaxSubscriptions},
		})
		return true
	}
	if c.t.Admit != nil {
		if err := c.t.Admit(c.ctx); err != nil {
			c.sendError(id, toGQLError(err))
			return true
		}
	}

	start := graphql.Now()
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil {
		c.sendError(id, &gqlerror.Error{Message: "invalid json"})
		c.write(outMessage{ID: id, Type: "complete"})
		return true
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	// params.Headers stays nil: no resolver reads OperationContext.Headers
	// (authentication is connection_init's), and keeping the upgrade
	// request's headers would pin them for the socket's life.

	ctx := graphql.StartOperationTrace(c.ctx)
	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.sendError(id, resp.Errors...)
		} else {
			c.sendResponse(id, &graphql.Response{Errors: errs})
		}
		c.write(outMessage{ID: id, Type: "complete"})
		return true
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	ctx, cancel := context.WithCancel(ctx)
	s := &sub{c: c, id: id, cancel: cancel, prefix: c.nextPrefix(id)}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()

	if rc.Operation.Operation != ast.Subscription {
		// Queries and mutations over the socket: one result, written by a
		// goroutine that ends with it.
		go c.runOnce(s, ctx, rc)
		return true
	}

	responses, ctx := c.exec.DispatchOperation(context.WithValue(ctx, pumpKey{}, s), rc)
	// The timings and extension stats (the complexity limit's) served
	// validation and are not read again per event; a subscription keeps
	// its operation context for its whole life, so let them go. Written
	// before started is set under c.mu, so the drain sees it.
	rc.Stats = graphql.Stats{}
	s.ctx = ctx
	s.responses = responses
	if s.src == nil {
		// The resolver failed (a one-shot error response) or does not
		// hand its source over: gqlgen's loop, in a goroutine.
		go c.runOnce(s, ctx, nil)
		return true
	}
	if c.grouped {
		// The group renders with the executor of the member that made
		// it. Any other member only polls its own source: gqlgen's state
		// for its operation (operation and field contexts, arguments,
		// collected fields, the context layers) is let go, which is most
		// of what a subscription costs at rest.
		g, exec := c.t.groups.join(c.viewer+"\x00"+operationKey(rc), s.src, responses, ctx, c.t.compile(rc))
		if exec || s.src.share(g.exec.src) {
			s.group = g
			s.ctx, s.responses = nil, nil
			if s.release != nil {
				// Nothing runs under this subscription's context any
				// more (the group's executor has a copy without its
				// cancellation) and its source ends by release:
				// cancelling it now detaches it from the connection's.
				s.cancel()
				s.cancel = nil
			}
		} else {
			c.t.groups.leave(g)
		}
	}
	if s.group == nil && c.t.Compile != nil {
		s.fast = c.t.Compile(ctx, rc)
	}
	c.mu.Lock()
	s.started = true
	if s.early {
		c.queueLocked(s)
	}
	c.mu.Unlock()
	return true
}

// runOnce serves an operation the gqlgen way: call the response handler
// until it ends. rc is set when the operation is yet to be dispatched.
func (c *conn) runOnce(s *sub, ctx context.Context, rc *graphql.OperationContext) {
	defer func() {
		if r := recover(); r != nil {
			err := graphql.GetOperationContext(ctx).Recover(ctx, r)
			c.sendError(s.id, toGQLError(err))
		}
		c.mu.Lock()
		c.removeLocked(s)
		skip := s.stopped || c.closed
		c.mu.Unlock()
		if !skip && c.ctx.Err() == nil {
			c.write(outMessage{ID: s.id, Type: "complete"})
		}
		s.cancel()
	}()
	responses := s.responses
	if rc != nil {
		responses, ctx = c.exec.DispatchOperation(ctx, rc)
	}
	for {
		resp := responses(ctx)
		if resp == nil {
			return
		}
		c.sendResponse(s.id, resp)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// findLocked returns the running subscription id, or nil.
func (c *conn) findLocked(id string) *sub {
	for _, s := range c.subs {
		if s.id == id {
			return s
		}
	}
	return nil
}

// removeLocked takes s out of the running subscriptions, if it is there.
func (c *conn) removeLocked(s *sub) {
	for i, x := range c.subs {
		if x == s {
			last := len(c.subs) - 1
			c.subs[i] = c.subs[last]
			c.subs[last] = nil
			c.subs = c.subs[:last]
			if last == 0 {
				c.subs = nil
			}
			return
		}
	}
}

// String is for debugging.
func (s *sub) String() string { return fmt.Sprintf("subscription %q", s.id) }
