package gorillaws

import (
	"bufio"
	"encoding/binary"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
)

// Reading whole frames, and waiting for the next one at a shallow depth.
//
// gorilla reads through a bufio.Reader of its own, which may hold the start
// of the next frame after it returns a message; readability of the socket
// then says nothing. frameConn sits under that reader and never returns a
// byte past the end of the frame being read, so once gorilla has returned
// a whole message (its final frame read to the end) its buffer is empty and
// the next message's first byte is still in the kernel. A reader can then
// wait for readability with a non-blocking MSG_PEEK on the socket from a
// goroutine that never runs gorilla's (deep) read path, which keeps that
// goroutine's stack at its smallest size for the socket's life.

// frameCursor follows the frame boundaries of a stream of client frames
// (RFC 6455 section 5.2): 2 bytes, 0, 2 or 8 bytes of extended length,
// 4 bytes of mask key when the mask bit is set, then the payload. It does
// not validate anything gorilla checks (opcodes, reserved bits, control
// frame sizes, masking); it only needs the lengths.
type frameCursor struct {
	hdr  [14]byte
	have int    // header bytes seen of the current frame
	want int    // header length; 2 until the second byte is seen
	left uint64 // payload bytes left once the header is complete
	body bool   // in the payload
}

// extLen is the length of the extended payload length field for the
// second header byte b.
func extLen(b byte) int {
	switch b & 0x7f {
	case 126:
		return 2
	case 127:
		return 8
	}
	return 0
}

// limit returns how many bytes may be read next without passing the end
// of the current frame: what is left of the header, plus the payload
// length once it is known. It is never zero.
func (f *frameCursor) limit() uint64 {
	if f.body {
		return f.left
	}
	if f.want == 0 {
		f.want = 2
	}
	n := uint64(f.want - f.have)
	if f.have >= 2 && f.have >= 2+extLen(f.hdr[1]) {
		// The length is known: the rest of the header (the mask key) and
		// the payload may come in one read.
		l := f.payloadLen()
		if l > math.MaxUint64-n {
			return math.MaxUint64
		}
		n += l
	}
	return n
}

// atBoundary reports whether the cursor stands between two frames.
func (f *frameCursor) atBoundary() bool { return !f.body && f.have == 0 }

func (f *frameCursor) payloadLen() uint64 {
	switch extLen(f.hdr[1]) {
	case 2:
		return uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
	case 8:
		return binary.BigEndian.Uint64(f.hdr[2:10])
	}
	return uint64(f.hdr[1] & 0x7f)
}

// advance moves the cursor over b, which may span any number of frames.
func (f *frameCursor) advance(b []byte) {
	for len(b) > 0 {
		if f.body {
			k := uint64(len(b))
			if k > f.left {
				k = f.left
			}
			f.left -= k
			b = b[k:]
			if f.left == 0 {
				*f = frameCursor{}
			}
			continue
		}
		if f.want == 0 {
			f.want = 2
		}
		k := copy(f.hdr[f.have:f.want], b)
		f.have += k
		b = b[k:]
		if f.have == 2 {
			f.want = 2 + extLen(f.hdr[1])
			if f.hdr[1]&0x80 != 0 {
				f.want += 4
			}
		}
		if f.have == f.want {
			if l := f.payloadLen(); l > 0 {
				f.left, f.body = l, true
			} else {
				*f = frameCursor{}
			}
		}
	}
}

// frameConn is the connection gorilla reads from: Read stops at the end of
// the current frame. Writes try the socket without waiting first, and call
// before and after (OnBlockingWrite) around a write that has to wait.
//
// While corked, writes are appended to a buffer instead (see cork); gorilla
// serializes its own writes (data frames and control frames alike), so the
// buffer holds whole frames in the order gorilla wrote them.
type frameConn struct {
	net.Conn
	cur frameCursor

	raw   syscall.RawConn // nil: every write may wait
	hooks atomic.Pointer[blockHooks]

	corkMu sync.Mutex // guards corked and buf; held across a flush
	corked bool
	buf    *[]byte // pending bytes while corked, from corkBufs
}

// blockHooks are OnBlockingWrite's functions; set while a Shutdown may
// already be writing a close frame, hence the atomic pointer.
type blockHooks struct{ before, after func() }

// corkFlushAt is the size past which a corked buffer is written at once.
const corkFlushAt = 64 << 10

// corkBufs holds the buffers of corked sockets; a socket has one only
// while corked.
var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func (c *frameConn) Write(p []byte) (int, error) {
	c.corkMu.Lock()
	if c.corked {
		defer c.corkMu.Unlock()
		if c.buf == nil {
			c.buf = corkBufs.Get().(*[]byte)
		}
		*c.buf = append(*c.buf, p...)
		if len(*c.buf) > corkFlushAt {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	c.corkMu.Unlock()
	return c.write(p)
}

// write writes p to the socket, trying without waiting first.
func (c *frameConn) write(p []byte) (int, error) {
	h := c.hooks.Load()
	if h == nil {
		return c.Conn.Write(p)
	}
	n := 0
	if c.raw != nil {
		n = tryWrite(c.raw, p)
		if n == len(p) {
			return n, nil
		}
	}
	h.before()
	m, err := c.Conn.Write(p[n:])
	h.after()
	return n + m, err
}

// cork makes writes collect in a buffer until uncork.
func (c *frameConn) cork() {
	c.corkMu.Lock()
	c.corked = true
	c.corkMu.Unlock()
}

// uncork writes what collected while corked, in one write, and hands the
// buffer back: nothing is buffered at rest.
func (c *frameConn) uncork() error {
	c.corkMu.Lock()
	defer c.corkMu.Unlock()
	c.corked = false
	return c.flushLocked()
}

// flush writes what collected so far and stays corked.
func (c *frameConn) flush() error {
	c.corkMu.Lock()
	defer c.corkMu.Unlock()
	return c.flushLocked()
}

// drop is for a socket about to close, and never waits: it writes what
// collected as far as the socket takes it without waiting (a close frame
// answering the peer's, say), discards the rest and uncorks. If a flush is
// under way it leaves the buffer to it: closing the socket ends that write,
// and the flush lets go of the buffer.
func (c *frameConn) drop() {
	if !c.corkMu.TryLock() {
		return
	}
	defer c.corkMu.Unlock()
	c.corked = false
	if c.buf != nil && len(*c.buf) > 0 && c.raw != nil {
		tryWrite(c.raw, *c.buf)
	}
	c.release()
}

func (c *frameConn) flushLocked() error {
	if c.buf == nil {
		return nil
	}
	var err error
	if len(*c.buf) > 0 {
		_, err = c.write(*c.buf)
	}
	c.release()
	return err
}

func (c *frameConn) release() {
	if c.buf == nil {
		return
	}
	if cap(*c.buf) <= 2*corkFlushAt {
		*c.buf = (*c.buf)[:0]
		corkBufs.Put(c.buf)
	}
	c.buf = nil
}

// buffered reports how many bytes wait in the cork buffer.
func (c *frameConn) buffered() int {
	c.corkMu.Lock()
	defer c.corkMu.Unlock()
	if c.buf == nil {
		return 0
	}
	return len(*c.buf)
}

func (c *frameConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if l := c.cur.limit(); uint64(len(p)) > l {
		p = p[:l]
	}
	n, err := c.Conn.Read(p)
	c.cur.advance(p[:n])
	return n, err
}

// hijacker hands gorilla's Upgrade the hijacked connection wrapped in a
// frameConn.
type hijacker struct {
	http.ResponseWriter
	conn *frameConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &frameConn{Conn: nc}
	return h.conn, brw, nil
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
