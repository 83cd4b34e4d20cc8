// Package gorillaws puts github.com/gorilla/websocket under the gqlws
// transport: Implementation is a gqlws.Upgrader and its sockets are
// gqlws.Conns. It imports gqlws for those two interfaces, as a store
// implements the domain's: the transport owns the contract it needs, and
// the socket library's adapter depends on it, never the other way round.
// Implementation also satisfies gqlgen's transport.WebsocketImplementation
// (Accept), which no longer ships gorilla support.
//
// Beyond the contract it adds what a server needs around it: origin
// checks, a write deadline on every message so that a client that stops
// reading fails its own writes instead of holding a goroutine forever,
// and closing every socket on shutdown.
//
// Use:
//
//	ws := gorillaws.New(gorillaws.Options{AllowedOrigins: origins})
//	srv.AddTransport(&gqlws.Transport{Upgrader: ws, InitFunc: ...})
//	mux.Handle("/graphql", ws.Middleware(srv))
//	...
//	ws.Shutdown("server is restarting")
package gorillaws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/gqlws"
	"github.com/bont/switchboard/internal/textcut"
)

// DefaultWriteTimeout is the write deadline of each message when
// Options.WriteTimeout is zero.
const DefaultWriteTimeout = 10 * time.Second

// closeGrace bounds the wait for the peer's reply to our close frame, and
// the time spent sending the close frame itself.
const closeGrace = time.Second

// maxCloseReason is the longest close reason a close frame can carry
// (125 bytes of control payload minus the 2-byte code).
const maxCloseReason = 123

// Options configure an Implementation.
type Options struct {
	// AllowedOrigins lists the browser origins, exactly as
	// scheme://host[:port], that may open a websocket besides the
	// server's own origin (same host as the request). Requests without an
	// Origin header (non-browser clients) are always allowed.
	AllowedOrigins []string
	// WriteTimeout bounds each message written (default 10s). A client
	// that stops reading makes the write fail after it, and the socket is
	// closed.
	WriteTimeout time.Duration
	// ReadBufferSize and WriteBufferSize are gorilla's I/O buffer sizes
	// (0: gorilla's defaults).
	ReadBufferSize  int
	WriteBufferSize int
	// EnableCompression negotiates permessage-deflate when the client
	// offers it.
	EnableCompression bool
	// WriteBufferPool, when set, lends write buffers for the duration of
	// a write, so that an idle socket holds none (gorilla's
	// Upgrader.WriteBufferPool).
	WriteBufferPool websocket.BufferPool
}

// Implementation accepts gqlgen websocket connections over gorilla and
// tracks them until they close. It is safe for concurrent use; use one per
// server, through New.
type Implementation struct {
	writeTimeout time.Duration
	allowed      map[string]bool
	upgrader     websocket.Upgrader

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
}

var (
	_ gqlws.Upgrader                    = (*Implementation)(nil)
	_ transport.WebsocketImplementation = (*Implementation)(nil)
)

// New returns an Implementation configured by opts.
func New(opts Options) *Implementation {
	i := &Implementation{
		writeTimeout: opts.WriteTimeout,
		allowed:      make(map[string]bool, len(opts.AllowedOrigins)),
		conns:        make(map[*conn]struct{}),
	}
	if i.writeTimeout <= 0 {
		i.writeTimeout = DefaultWriteTimeout
	}
	for _, o := range opts.AllowedOrigins {
		i.allowed[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	i.upgrader = websocket.Upgrader{
		ReadBufferSize:    opts.ReadBufferSize,
		WriteBufferSize:   opts.WriteBufferSize,
		EnableCompression: opts.EnableCompression,
		WriteBufferPool:   opts.WriteBufferPool,
		CheckOrigin:       func(r *http.Request) bool { return i.originAllowed(r) },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			w.Header().Set("Sec-Websocket-Version", "13")
			http.Error(w, reason.Error(), status)
		},
	}
	return i
}

// ErrShuttingDown is returned by Accept after Shutdown.
var ErrShuttingDown = errors.New("gorillaws: server is shutting down")

// Upgrade upgrades r to a websocket speaking one of subprotocols (in
// order of preference). A disallowed origin is refused with 403 and a
// request after Shutdown with 503, before upgrading. On error the HTTP
// response has been written.
func (i *Implementation) Upgrade(w http.ResponseWriter, r *http.Request, subprotocols []string) (gqlws.Conn, error) {
	c, err := i.upgrade(w, r, subprotocols, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Accept is Upgrade for gqlgen's own websocket transport.
//
// gqlgen writes its own error response after a failed Accept; wrap the
// handler with Middleware so that refused origins are answered before
// gqlgen sees the request.
func (i *Implementation) Accept(w http.ResponseWriter, r *http.Request, options transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := i.upgrade(w, r, options.Subprotocols, options.ResponseHeader)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (i *Implementation) upgrade(w http.ResponseWriter, r *http.Request, subprotocols []string, header http.Header) (*conn, error) {
	if err := i.refuse(w, r); err != nil {
		return nil, err
	}
	up := i.upgrader
	// gorilla only reads it.
	up.Subprotocols = subprotocols
	hj := &hijacker{ResponseWriter: w}
	ws, err := up.Upgrade(hj, r, header)
	if err != nil {
		return nil, err
	}
	c := &conn{ws: ws, impl: i, writeTimeout: i.writeTimeout, done: make(chan struct{})}
	if hj.conn != nil && ws.NetConn() == net.Conn(hj.conn) {
		c.frames = hj.conn
		c.raw = rawConn(hj.conn.Conn)
		hj.conn.raw = c.raw
	}

	i.mu.Lock()
	down := i.shutdown
	if !down {
		i.conns[c] = struct{}{}
	}
	i.mu.Unlock()
	if down {
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server is shutting down"),
			time.Now().Add(closeGrace))
		_ = ws.Close()
		return nil, ErrShuttingDown
	}
	return c, nil
}

// refuse answers a request that may not open a websocket, and says why.
func (i *Implementation) refuse(w http.ResponseWriter, r *http.Request) error {
	if !i.originAllowed(r) {
		origin := r.Header.Get("Origin")
		http.Error(w, fmt.Sprintf("websocket connections from origin %q are not allowed", origin), http.StatusForbidden)
		return fmt.Errorf("gorillaws: origin %q not allowed", origin)
	}
	i.mu.Lock()
	down := i.shutdown
	i.mu.Unlock()
	if down {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return ErrShuttingDown
	}
	return nil
}

// originAllowed allows requests without an Origin (not from a browser),
// from the request's own host, and from Options.AllowedOrigins.
func (i *Implementation) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return i.allowed[strings.ToLower(u.Scheme+"://"+u.Host)]
}

// Middleware refuses websocket upgrade requests from disallowed origins
// (403) and after Shutdown (503) with a plain text answer, before the
// handler sees them. Other requests pass through untouched.
func (i *Implementation) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			if err := i.refuse(w, r); err != nil {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Shutdown closes every open websocket with 1001 (going away) and reason,
// and refuses new ones. It waits about a second for clients to answer
// the close before dropping the connections.
func (i *Implementation) Shutdown(reason string) {
	i.mu.Lock()
	i.shutdown = true
	conns := make([]*conn, 0, len(i.conns))
	for c := range i.conns {
		conns = append(conns, c)
	}
	i.mu.Unlock()

	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.closeWith(websocket.CloseGoingAway, reason) })
	}
	wg.Wait()
	deadline := time.NewTimer(2 * closeGrace)
	defer deadline.Stop()
	for _, c := range conns {
		select {
		case <-c.done:
		case <-deadline.C:
			for _, c := range conns {
				_ = c.closeNow()
			}
			return
		}
	}
}

// Count returns the number of open websockets.
func (i *Implementation) Count() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.conns)
}

// conn is one websocket. Its user reads from one goroutine and writes from
// several (subscriptions, keep-alives); Close and WriteClose may also come
// from Shutdown.
//
// Closing follows RFC 6455: after our close frame goes out the socket
// stays open until the peer answers with its own, or closeGrace passes.
// Dropping it at once would lose the close frame (and its reason) to a TCP
// reset whenever unread input is pending.
type conn struct {
	ws           *websocket.Conn
	impl         *Implementation
	writeTimeout time.Duration

	writeMu sync.Mutex // serializes data messages

	// frames is what gorilla reads from, raw the socket under it; raw is
	// nil when readability cannot be waited for (see WaitReadable).
	frames *frameConn
	raw    syscall.RawConn

	mu         sync.Mutex
	closing    bool        // a close frame went out (or was tried)
	reading    bool        // gqlgen is inside NextReader
	peerClosed bool        // the peer's close frame arrived
	readFailed bool        // reading failed otherwise (read limit, broken socket)
	lingering  bool        // linger owns reading now
	closed     bool        // the socket is closed
	timer      *time.Timer // drops the socket when closeGrace ends
	done       chan struct{}
}

var (
	_ gqlws.Conn                       = (*conn)(nil)
	_ transport.WebsocketConn          = (*conn)(nil)
	_ transport.WebsocketReadLimiter   = (*conn)(nil)
	_ transport.WebsocketReadDeadliner = (*conn)(nil)
)

// NextReader returns the next message, read whole (the read limit bounds
// it). A normal close by the peer (1000,
// 1001, 1005), and anything once we are closing, is
// transport.ErrWebsocketClosed.
func (c *conn) NextReader() (int, io.Reader, error) {
	c.mu.Lock()
	if c.lingering {
		c.mu.Unlock()
		return 0, nil, transport.ErrWebsocketClosed
	}
	c.reading = true
	c.mu.Unlock()

	// The whole message is read while reading is set, so that Close
	// never starts a lingering reader on the socket while the message is
	// still being consumed.
	typ, r, err := c.ws.NextReader()
	var data []byte
	if err == nil {
		data, err = io.ReadAll(r)
	}

	c.mu.Lock()
	c.reading = false
	if err == nil {
		c.mu.Unlock()
		return typ, bytes.NewReader(data), nil
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		c.peerClosed = true
	} else {
		c.readFailed = true
	}
	closing, peerClosed := c.closing, c.peerClosed
	c.mu.Unlock()

	if closing {
		if peerClosed {
			_ = c.closeNow()
		}
		return typ, nil, transport.ErrWebsocketClosed
	}
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
		return typ, nil, transport.ErrWebsocketClosed
	}
	return typ, nil, err
}

// WaitReadable blocks until the socket has input, reaches its end, fails,
// is closed or passes its read deadline, and reports true; the next
// NextReader then returns at once or with the error. It reports false,
// at once, when it cannot wait: the socket is not a kernel socket (TLS,
// other systems than Linux), the socket is closing, or gorilla is in the
// middle of a frame (NextReader has not returned a whole message). Then
// the caller just calls NextReader.
//
// It waits with a non-blocking MSG_PEEK through syscall.RawConn, which
// uses a few hundred bytes of stack, so that the goroutine waiting on an
// idle socket can stay at the runtime's smallest stack while the reading
// itself (gorilla's frame parsing and whatever handles the message) runs
// on a short-lived goroutine. Reads go through frameConn, which never
// hands gorilla bytes past the end of the frame being read, so nothing of
// the next message sits in gorilla's buffer unseen by the wait.
func (c *conn) WaitReadable() bool {
	if c.raw == nil {
		return false
	}
	c.mu.Lock()
	if c.lingering || c.closed || !c.frames.cur.atBoundary() {
		c.mu.Unlock()
		return false
	}
	c.reading = true
	c.mu.Unlock()
	_ = c.raw.Read(peekReadable)
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	return true
}

// OnBlockingWrite sets functions called around a write that has to wait
// for the peer to take bytes (the kernel's send buffer is full): before
// just before waiting, after once the write returns. Writes that go out at
// once call neither. On sockets where that cannot be told apart (TLS,
// other systems than Linux) every write counts as waiting. Set it before
// the first write; it lets a pool of writer goroutines hand a waiting
// writer's other work to a fresh goroutine instead of holding it up.
func (c *conn) OnBlockingWrite(before, after func()) {
	if c.frames != nil {
		c.frames.hooks.Store(&blockHooks{before: before, after: after})
	}
}

// WriteJSON writes v as one text message within the write timeout. A
// failed write leaves a gorilla connection unusable, so it closes the
// socket; gqlgen's reader then ends and tears the connection down.
func (c *conn) WriteJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return err
	}
	err = c.ws.WriteMessage(websocket.TextMessage, data)
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		_ = c.closeNow()
	}
	return err
}

// WriteText writes the concatenation of parts as one text message within
// the write timeout, without copying them into one slice first: callers
// that send the same payload to many sockets frame it with a per-socket
// prefix and suffix. A failed write closes the socket, as in WriteJSON.
func (c *conn) WriteText(parts ...[]byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return err
	}
	w, err := c.ws.NextWriter(websocket.TextMessage)
	if err == nil {
		for _, p := range parts {
			if _, err = w.Write(p); err != nil {
				break
			}
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		_ = c.closeNow()
	}
	return err
}

// Cork makes the socket collect what is written (data, and control frames
// such as pongs written meanwhile) until Uncork, which writes it all with
// one system call; past 64 KiB what has collected goes out at once. A
// writer that sends several messages in a row corks around them.
func (c *conn) Cork() {
	if c.frames != nil {
		c.frames.cork()
	}
}

// Uncork writes what collected since Cork within the write timeout (trying
// without waiting first, and calling the OnBlockingWrite functions around
// a write that has to wait) and lets go of the buffer. A failed write
// closes the socket, as in WriteJSON.
func (c *conn) Uncork() error {
	if c.frames == nil {
		return nil
	}
	if c.frames.buffered() > 0 {
		_ = c.frames.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	err := c.frames.uncork()
	if err != nil {
		_ = c.closeNow()
	}
	return err
}

// WriteClose sends a close frame (the reason cut to 123 bytes) and arms a
// timer that drops the socket if the peer has not answered within about a
// second. It does nothing if the socket is already closing.
func (c *conn) WriteClose(code int, message string) error {
	_, err := c.startClose(code, message)
	return err
}

// startClose is WriteClose, reporting whether this call sent the frame.
func (c *conn) startClose(code int, message string) (bool, error) {
	c.mu.Lock()
	if c.closing || c.closed {
		c.mu.Unlock()
		return false, nil
	}
	c.closing = true
	c.timer = time.AfterFunc(closeGrace, func() { _ = c.closeNow() })
	c.mu.Unlock()

	err := c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(code, textcut.Bytes(message, maxCloseReason)),
		time.Now().Add(closeGrace))
	if errors.Is(err, websocket.ErrCloseSent) {
		// gorilla already sent one: answering the peer's close, or
		// refusing a message over the read limit.
		err = nil
	}
	if c.frames != nil && err == nil {
		// A writer may have the socket corked: the close frame, and what
		// precedes it, goes out now rather than at its Uncork.
		err = c.frames.flush()
	}
	c.mu.Lock()
	peerClosed := c.peerClosed
	c.mu.Unlock()
	if err != nil || peerClosed {
		// No answer will come.
		_ = c.closeNow()
	}
	return true, err
}

// Close closes the socket; it is idempotent and never blocks. After a
// close frame it keeps the socket until the peer answers (read by
// gqlgen's reader if it is still reading, or else by a short-lived
// goroutine) or closeGrace ends.
func (c *conn) Close() error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil
	case !c.closing || c.peerClosed:
		c.mu.Unlock()
		return c.closeNow()
	case c.reading || c.lingering:
		c.mu.Unlock()
		return nil
	}
	c.lingering = true
	readFailed := c.readFailed
	c.mu.Unlock()
	go c.linger(readFailed)
	return nil
}

// linger reads until the peer's close frame (or the end of the stream)
// and then closes; the closeGrace timer ends it otherwise.
func (c *conn) linger(readFailed bool) {
	defer func() { _ = c.closeNow() }()
	if readFailed {
		// gorilla cannot read any more: discard raw input so that closing
		// sends FIN rather than a reset.
		_, _ = io.Copy(io.Discard, c.ws.NetConn())
		return
	}
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			return
		}
	}
}

func (c *conn) closeWith(code int, reason string) bool {
	started, _ := c.startClose(code, reason)
	_ = c.Close()
	return started
}

func (c *conn) closeNow() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()

	if c.frames != nil {
		// Closing drops what a corked writer has not written yet.
		c.frames.drop()
	}
	err := c.ws.Close()
	c.impl.mu.Lock()
	delete(c.impl.conns, c)
	c.impl.mu.Unlock()
	close(c.done)
	return err
}

func (c *conn) Subprotocol() string { return c.ws.Subprotocol() }

func (c *conn) SetReadLimit(limit int64) { c.ws.SetReadLimit(limit) }

func (c *conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }
