package gqlws

import (
	"context"
	"errors"
	"io"
	"net/http"
)

// Upgrader accepts websockets for the Transport (gorillaws.Implementation
// is one).
type Upgrader interface {
	// Upgrade answers r's websocket handshake, choosing one of
	// subprotocols (in order of preference) when the client offers it.
	// On error the HTTP response has been written and no Conn exists.
	Upgrade(w http.ResponseWriter, r *http.Request, subprotocols []string) (Conn, error)
}

// Conn is one accepted websocket as the Transport uses it.
//
// One goroutine reads (WaitReadable, NextReader). Writes (WriteJSON,
// WriteText, Cork, Uncork, WriteClose) may come from several goroutines
// at once and from a timer; each message goes out whole. A failed write
// closes the socket, so that the reader ends. Close may be called at any
// time, more than once, and never blocks.
type Conn interface {
	// Subprotocol is the subprotocol chosen at the handshake; "" when
	// none was.
	Subprotocol() string
	// SetReadLimit makes a message longer than limit bytes fail the read
	// and close the socket with 1009.
	SetReadLimit(limit int64)

	// WaitReadable blocks until the next message can be read, or reading
	// would fail, and reports true. It reports false, at once, when it
	// cannot wait: the reader then calls NextReader, which waits. It lets
	// the goroutine that waits on an idle socket stay at a small stack
	// while the reading runs on another.
	WaitReadable() bool
	// NextReader returns the next message whole: its type (1 text, 2
	// binary) and its bytes. A normal close by the peer, or any read once
	// the socket is closing, is transport.ErrWebsocketClosed (gqlgen's);
	// a read on a closed socket may also be net.ErrClosed.
	NextReader() (messageType int, r io.Reader, err error)

	// WriteJSON writes v as one text message.
	WriteJSON(v any) error
	// WriteText writes the concatenation of parts as one text message,
	// without joining them first.
	WriteText(parts ...[]byte) error
	// Cork collects what is written (data and control frames) until
	// Uncork, which writes it all at once; a writer that sends several
	// messages in a row corks around them.
	Cork()
	Uncork() error
	// OnBlockingWrite sets functions called around a write that has to
	// wait for the peer to take bytes: before just before waiting, after
	// once the write returns. The Transport sets it once, before the
	// first write, so that its few writer goroutines hand their other
	// sockets to a new writer instead of waiting with them.
	OnBlockingWrite(before, after func())

	// WriteClose sends a close frame with code and reason (cut to the
	// 123 bytes a frame carries, on a UTF-8 boundary); it does nothing
	// if the socket is already closing.
	WriteClose(code int, reason string) error
	// Close closes the socket (after a close frame, once the peer
	// answers or a short grace ends).
	Close() error
}

// CloseError closes the socket with Code and Reason: returned by an
// InitFunc instead of acknowledging the socket (the error's message goes
// to legacy clients in connection_error), by Pending to refuse a socket,
// or by a source's end hook (AttachPoll) to say why a subscription ended.
type CloseError struct {
	Code    int
	Reason  string
	Message string
}

func (e *CloseError) Error() string { return e.Message }

// closeCode is the close code and reason for err: a *CloseError's, or
// code and reason.
func closeCode(err error, code int, reason string) (int, string) {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason
	}
	return code, reason
}

type connKey struct{}

// Close closes the websocket ctx belongs to, with code and reason: ctx is
// the connection's context (as InitFunc, Admit and ViewerKey get it) or
// one derived from it, as a resolver's is. It reports false when ctx
// belongs to no socket of a Transport, or the socket is already closing.
//
// Use a code in 4000-4999 for application reasons; the client sees it on
// its close event.
func Close(ctx context.Context, code int, reason string) bool {
	c, ok := ctx.Value(connKey{}).(*conn)
	if !ok {
		return false
	}
	return c.close(code, reason)
}
