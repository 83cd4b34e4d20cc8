package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// stockGuard is used only with Options.StockWebsocket (gqlgen's own
// websocket transport, kept for comparison benchmarks): the protocol rules
// gqlgen's transport leaves out, which gqlws applies itself. gqlgen v0.17.98
// closes an init timeout and a subscribe before connection_init with 1002
// (protocol error), lets a second subscribe with a live id replace the
// first, and has no cap on subscriptions per connection. The guard sits
// between gqlgen and the socket (a transport.WebsocketImplementation that
// wraps another) and applies graphql-transport-ws's codes:
//
//	4408  no connection_init within the init timeout
//	4401  subscribe before connection_ack
//	4429  a second connection_init
//	4409  subscribe with the id of a subscription still running
//
//	4400  a frame that is not a message of the protocol (binary, not a
//	      JSON object, unknown type, no id, payload not an object)
//
// and answers a subscribe beyond MaxSubscriptions with an error message
// for that id (code LIMIT_EXCEEDED), leaving the others running. Frames
// over the read limit are refused by the socket itself (gorilla closes
// with 1009). The legacy graphql-ws protocol gets the init timeout, the
// duplicate-id rule and the cap.
type wsGuard struct {
	inner            transport.WebsocketImplementation
	initTimeout      time.Duration
	maxSubscriptions int
}

const protoTransportWS = "graphql-transport-ws"

func (g *wsGuard) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := g.inner.Accept(w, r, opts)
	if err != nil {
		return nil, err
	}
	gc := &guardConn{WebsocketConn: c, g: g, active: map[string]bool{}, proto: c.Subprotocol()}
	gc.initTimer = time.AfterFunc(g.initTimeout, func() {
		gc.mu.Lock()
		inited := gc.inited
		gc.mu.Unlock()
		if !inited {
			gc.closeWith(4408, "Connection initialisation timeout")
		}
	})
	return gc, nil
}

type guardConn struct {
	transport.WebsocketConn
	g     *wsGuard
	proto string

	mu        sync.Mutex
	inited    bool // connection_init received
	acked     bool // connection_ack sent
	closed    bool
	active    map[string]bool
	initTimer *time.Timer
}

var (
	_ transport.WebsocketReadLimiter   = (*guardConn)(nil)
	_ transport.WebsocketReadDeadliner = (*guardConn)(nil)
)

type wsFrame struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Messages a client may send, per protocol.
var clientTypes = map[string]map[string]bool{
	protoTransportWS: {"connection_init": true, "ping": true, "pong": true, "subscribe": true, "complete": true},
	"graphql-ws":     {"connection_init": true, "start": true, "stop": true, "connection_terminate": true},
}

// invalid reports why a client frame is not a message of the protocol, or
// "" when it is one: binary frames, text that is not a JSON object, an
// unknown type, an operation message without an id, a payload of the
// wrong shape.
func (c *guardConn) invalid(typ int, data []byte, f *wsFrame) string {
	if typ != 1 { // websocket.TextMessage
		return "Invalid message received: binary frames are not part of the protocol"
	}
	if err := json.Unmarshal(data, f); err != nil || len(bytes.TrimSpace(data)) == 0 || bytes.TrimSpace(data)[0] != '{' {
		return "Invalid message received: not a JSON object"
	}
	known := clientTypes[c.proto]
	if known == nil {
		known = clientTypes["graphql-ws"]
	}
	if !known[f.Type] {
		return "Invalid message received: unknown type " + truncate(f.Type, 40)
	}
	switch f.Type {
	case "subscribe", "start", "complete", "stop":
		if f.ID == "" {
			return "Invalid message received: " + f.Type + " needs an id"
		}
	}
	switch f.Type {
	case "connection_init", "subscribe", "start":
		if p := bytes.TrimSpace(f.Payload); len(p) > 0 && p[0] != '{' && !bytes.Equal(p, []byte("null")) {
			return "Invalid message received: the payload must be an object"
		}
	}
	return ""
}

func (c *guardConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	_ = c.WebsocketConn.WriteClose(code, reason)
	_ = c.WebsocketConn.Close()
}

// NextReader reads a whole message (the socket's read limit bounds it),
// applies the rules, and hands gqlgen the messages that pass.
func (c *guardConn) NextReader() (int, io.Reader, error) {
	for {
		typ, r, err := c.WebsocketConn.NextReader()
		if err != nil {
			return typ, r, err
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return typ, nil, err
		}
		var f wsFrame
		if reason := c.invalid(typ, data, &f); reason != "" {
			// graphql-transport-ws: 4400 for a message that is not one.
			c.closeWith(4400, reason)
			return typ, nil, transport.ErrWebsocketClosed
		}
		code, reason, skip := c.check(f)
		if code != 0 {
			c.closeWith(code, reason)
			return typ, nil, transport.ErrWebsocketClosed
		}
		if skip {
			continue
		}
		return typ, bytes.NewReader(data), nil
	}
}

// check applies the rules to an incoming frame: a close code, or skip to
// drop the frame (after answering it).
func (c *guardConn) check(f wsFrame) (code int, reason string, skip bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Type {
	case "connection_init":
		if c.inited {
			return 4429, "Too many initialisation requests", false
		}
		c.inited = true
		c.initTimer.Stop()
	case "subscribe", "start":
		if f.Type == "subscribe" && c.proto == protoTransportWS && !c.acked {
			return 4401, "Unauthorized", false
		}
		if c.active[f.ID] {
			return 4409, "Subscriber for " + truncate(f.ID, 64) + " already exists", false
		}
		if len(c.active) >= c.g.maxSubscriptions {
			typ := "error"
			var payload any = []map[string]any{{"message": "Too many subscriptions on this connection; complete one first or open another connection.",
				"extensions": map[string]any{"code": "LIMIT_EXCEEDED", "limit": c.g.maxSubscriptions}}}
			if c.proto != protoTransportWS {
				payload = payload.([]map[string]any)[0]
			}
			go func() { _ = c.WebsocketConn.WriteJSON(map[string]any{"id": f.ID, "type": typ, "payload": payload}) }()
			return 0, "", true
		}
		c.active[f.ID] = true
	case "complete", "stop":
		delete(c.active, f.ID)
	}
	return 0, "", false
}

// WriteJSON notes the ack and the end of subscriptions on the way out.
func (c *guardConn) WriteJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var f wsFrame
	if json.Unmarshal(data, &f) == nil {
		c.mu.Lock()
		switch f.Type {
		case "connection_ack":
			c.acked = true
		case "complete", "error":
			if f.ID != "" {
				delete(c.active, f.ID)
			}
		}
		c.mu.Unlock()
	}
	return c.WebsocketConn.WriteJSON(json.RawMessage(data))
}

func (c *guardConn) Close() error {
	c.initTimer.Stop()
	return c.WebsocketConn.Close()
}

func (c *guardConn) SetReadLimit(limit int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(limit)
	}
}

func (c *guardConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// tokenConns tracks websockets by the API token they were opened with, so
// that revoking (or deleting) a token closes them at once with 4403, and a
// token's expiry closes them when it comes. It also caps the sockets of a
// token and of a workspace.
type tokenConns struct {
	close func(ctx context.Context, code int, reason string) bool
	// Caps; <= 0: none.
	maxPerToken, maxPerWorkspace int

	mu         sync.Mutex
	conns      map[string]map[*tokenConn]struct{}
	workspaces map[string]int
}

type tokenConn struct{ ctx context.Context }

// add tracks the websocket of ctx (the connection's context, alive while
// the connection is) until ctx ends or the token expires. It holds no
// goroutine: context.AfterFunc and a runtime timer do the waiting. When
// the token or the workspace already has its cap of sockets, it tracks
// nothing and returns the limit (LimitSocketsPerToken,
// LimitSocketsPerWorkspace); "" otherwise.
func (t *tokenConns) add(ctx context.Context, tokenID, workspaceID string, expiresAt *time.Time) (refused string) {
	tc := &tokenConn{ctx: ctx}
	t.mu.Lock()
	switch {
	case t.maxPerToken > 0 && len(t.conns[tokenID]) >= t.maxPerToken:
		refused = LimitSocketsPerToken
	case t.maxPerWorkspace > 0 && t.workspaces[workspaceID] >= t.maxPerWorkspace:
		refused = LimitSocketsPerWorkspace
	}
	if refused != "" {
		t.mu.Unlock()
		return refused
	}
	if t.conns == nil {
		t.conns = map[string]map[*tokenConn]struct{}{}
		t.workspaces = map[string]int{}
	}
	if t.conns[tokenID] == nil {
		t.conns[tokenID] = map[*tokenConn]struct{}{}
	}
	t.conns[tokenID][tc] = struct{}{}
	t.workspaces[workspaceID]++
	t.mu.Unlock()
	var timer *time.Timer
	if expiresAt != nil {
		timer = time.AfterFunc(time.Until(*expiresAt), func() {
			t.close(ctx, 4403, "Forbidden: the API token expired")
		})
	}
	context.AfterFunc(ctx, func() {
		if timer != nil {
			timer.Stop()
		}
		t.mu.Lock()
		delete(t.conns[tokenID], tc)
		if len(t.conns[tokenID]) == 0 {
			delete(t.conns, tokenID)
		}
		if t.workspaces[workspaceID]--; t.workspaces[workspaceID] <= 0 {
			delete(t.workspaces, workspaceID)
		}
		t.mu.Unlock()
	})
	return ""
}

// revoked closes every websocket opened with one of ids.
func (t *tokenConns) revoked(ids []string) {
	var ctxs []context.Context
	t.mu.Lock()
	for _, id := range ids {
		for tc := range t.conns[id] {
			ctxs = append(ctxs, tc.ctx)
		}
	}
	t.mu.Unlock()
	for _, ctx := range ctxs {
		t.close(ctx, 4403, "Forbidden: the API token was revoked")
	}
}
