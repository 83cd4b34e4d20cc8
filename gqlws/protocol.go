package gqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/bont/switchboard/internal/textcut"
)

// kind is what a client's message is, in either protocol.
type kind uint8

const (
	kindUnknown   kind = iota
	kindInit           // connection_init
	kindStart          // subscribe; start (graphql-ws)
	kindStop           // complete; stop (graphql-ws)
	kindPing           // ping (graphql-transport-ws)
	kindPong           // pong (graphql-transport-ws)
	kindTerminate      // connection_terminate (graphql-ws)
)

// protocol is one subprotocol's message names, the way gqlgen's transport
// keeps each protocol's in a table of its own; the state machine (handle)
// works on kinds and writes the names found here.
type protocol struct {
	// legacy is graphql-ws: one error object rather than a list,
	// keep-alives, connection_error before a close.
	legacy bool
	// in is what the client's message types are; others are unknown.
	in map[string]kind
	// The server's messages; "" where the protocol has none.
	ack, next, error, complete, pong, keepAlive, connectionError string
}

// graphql-transport-ws
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md).
var transportWS = &protocol{
	in: map[string]kind{
		"connection_init": kindInit,
		"subscribe":       kindStart,
		"complete":        kindStop,
		"ping":            kindPing,
		"pong":            kindPong,
	},
	ack:      "connection_ack",
	next:     "next",
	error:    "error",
	complete: "complete",
	pong:     "pong",
}

// The legacy graphql-ws of subscriptions-transport-ws
// (https://github.com/apollographql/subscriptions-transport-ws/blob/master/PROTOCOL.md).
var graphqlWS = &protocol{
	legacy: true,
	in: map[string]kind{
		"connection_init":      kindInit,
		"start":                kindStart,
		"stop":                 kindStop,
		"connection_terminate": kindTerminate,
	},
	ack:             "connection_ack",
	next:            "data",
	error:           "error",
	complete:        "complete",
	keepAlive:       "ka",
	connectionError: "connection_error",
}

// subprotocols is what Do offers, in order of preference.
var subprotocols = []string{ProtoTransportWS, ProtoGraphQLWS}

// protocolOf is the protocol of a negotiated subprotocol; nil for one this
// transport does not speak. A client that named none speaks graphql-ws.
func protocolOf(name string) *protocol {
	switch name {
	case ProtoTransportWS:
		return transportWS
	case ProtoGraphQLWS, "":
		return graphqlWS
	}
	return nil
}

// anyKind is what a message type is in either protocol: the shape of a
// message (an id, an object payload) is checked before whether this
// socket's protocol has it.
func anyKind(typ string) kind {
	if k := transportWS.in[typ]; k != kindUnknown {
		return k
	}
	return graphqlWS.in[typ]
}

// conn is one websocket. The reader goroutine owns inited/acked changes and
// starts subscriptions; writes come from it, from timers and from the
// drain (a writer).
type conn struct {
	t      *Transport
	ws     Conn
	proto  *protocol
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

// read is the socket's one goroutine at rest. Where the socket can wait
// for input at a shallow depth, the reader only waits, and each message is
// read and handled on a short-lived goroutine it waits for: gorilla's
// frame parsing and gqlgen's executor then never run on the reader, whose
// stack stays at the runtime's smallest size (a stack that has grown is
// not given back while the goroutine waits at any depth). Otherwise the
// reader reads each message itself and hands it to a short-lived goroutine.
func (c *conn) read() {
	defer c.shutdown()
	for {
		var ok bool
		if c.ws.WaitReadable() {
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
	k := anyKind(m.Type)
	if (k == kindStart || k == kindStop) && m.ID == "" {
		c.invalid(m.Type + " needs an id")
		return m, false
	}
	if k == kindInit || k == kindStart {
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

	switch c.proto.in[m.Type] {
	case kindInit:
		if inited {
			c.close(4429, "Too many initialisation requests")
			return false
		}
		return c.init(m.Payload)
	case kindStart:
		if !acked {
			if !c.proto.legacy {
				c.close(4401, "Unauthorized")
			} else {
				c.connectionError("unexpected message " + m.Type)
				c.close(1002, "unexpected message")
			}
			return false
		}
		return c.subscribe(m.ID, m.Payload)
	case kindStop:
		c.stop(m.ID)
		return true
	case kindPing:
		c.write(outMessage{Type: c.proto.pong, Payload: rawOrNil(m.Payload)})
		return true
	case kindPong:
		return true
	case kindTerminate:
		c.close(1000, "terminated")
		return false
	}
	c.invalid("unknown type " + textcut.Bytes(m.Type, 40))
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
			c.close(closeCode(err, 4403, "Forbidden"))
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
	c.write(outMessage{Type: c.proto.ack})
	c.mu.Lock()
	c.acked = true
	c.mu.Unlock()
	if c.proto.keepAlive != "" {
		c.write(outMessage{Type: c.proto.keepAlive})
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
	c.write(outMessage{Type: c.proto.keepAlive})
	c.mu.Lock()
	if !c.closed {
		c.kaTimer.Reset(c.t.KeepAlive)
	}
	c.mu.Unlock()
}

// connectionError tells a legacy client why it is being closed;
// graphql-transport-ws has no such message (the close reason says it).
func (c *conn) connectionError(msg string) {
	if c.proto.connectionError != "" {
		c.write(outMessage{Type: c.proto.connectionError, Payload: map[string]string{"message": msg}})
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
// socket close and cleans up. It reports false when the connection was
// closed already.
func (c *conn) close(code int, reason string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.mu.Unlock()
	_ = c.ws.WriteClose(code, reason)
	_ = c.ws.Close()
	c.cancel()
	return true
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
