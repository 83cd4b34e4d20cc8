//go:build linux

package gorillaws

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// corkServer accepts websockets and hands over the *conn.
func corkServer(t *testing.T) (impl *Implementation, url string, conns chan *conn) {
	t.Helper()
	impl = New(Options{})
	conns = make(chan *conn, 4)
	hs := httptest.NewServer(impl.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := impl.Accept(w, r, transport.WebsocketAcceptOptions{Subprotocols: []string{"graphql-transport-ws"}})
		if err == nil {
			conns <- c.(*conn)
		}
	})))
	t.Cleanup(func() {
		impl.Shutdown("test over")
		hs.Close()
	})
	return impl, "ws" + strings.TrimPrefix(hs.URL, "http"), conns
}

func corkDial(t *testing.T, url string, d websocket.Dialer) *websocket.Conn {
	t.Helper()
	d.Subprotocols = []string{"graphql-transport-ws"}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func message(i, size int) []byte {
	head := fmt.Sprintf("%06d:", i)
	return []byte(head + strings.Repeat(string(rune('a'+i%26)), size-len(head)))
}

func readMessages(t *testing.T, client *websocket.Conn, n, size int) {
	t.Helper()
	_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := range n {
		typ, b, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := message(i, size); typ != websocket.TextMessage || !bytes.Equal(b, want) {
			t.Fatalf("message %d: type %d, %q…; want %q…", i, typ, b[:min(len(b), 12)], want[:12])
		}
	}
}

// Messages written while corked arrive whole and in order, pongs answered
// meanwhile (gorilla's WriteControl) arrive too, a close frame written while
// corked goes out behind the messages before it, and nothing stays
// buffered.
func TestCorkedWritesArriveInOrder(t *testing.T) {
	impl, url, conns := corkServer(t)
	client := corkDial(t, url, websocket.Dialer{})
	c := <-conns

	var pongs, pinged atomic.Int32
	client.SetPongHandler(func(string) error { pongs.Add(1); return nil })
	// gorilla's own ping handler, counting: it answers with WriteControl.
	c.ws.SetPingHandler(func(data string) error {
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
		pinged.Add(1)
		return err
	})
	// The server reads, so gorilla answers pings with pongs from the
	// reading goroutine while a writer has the socket corked.
	go func() {
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}()

	const rounds, perRound, size = 20, 50, 700 // each round ~35 KiB; the rest go past 64 KiB
	i := 0
	for r := range rounds {
		c.Cork()
		n := perRound
		if r%5 == 4 {
			n = 3 * perRound // over 64 KiB: flushed while still corked
		}
		for k := range n {
			if k == n/2 {
				// A pong goes into the cork buffer between two messages.
				if err := client.WriteControl(websocket.PingMessage, []byte(fmt.Sprint(r)), time.Now().Add(5*time.Second)); err != nil {
					t.Fatal(err)
				}
				waitUntil(t, func() bool { return pinged.Load() == int32(r+1) })
			}
			if err := c.WriteText(message(i, size)[:7], message(i, size)[7:]); err != nil {
				t.Fatal(err)
			}
			i++
		}
		if err := c.Uncork(); err != nil {
			t.Fatal(err)
		}
		if b := c.frames.buffered(); b != 0 || c.frames.buf != nil {
			t.Fatalf("after Uncork %d bytes stay buffered", b)
		}
	}
	c.Cork()
	if err := c.WriteText(message(i, size)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteClose(4000, "done"); err != nil {
		t.Fatal(err)
	}
	// The close frame does not wait for Uncork.
	readMessages(t, client, i+1, size)
	_, _, err := client.ReadMessage()
	var ce *websocket.CloseError
	if !strings.Contains(fmt.Sprint(err), "4000") || !asClose(err, &ce) {
		t.Fatalf("after the messages: %v; want close 4000", err)
	}
	if p := pongs.Load(); p != rounds {
		t.Fatalf("%d pongs arrived; want %d", p, rounds)
	}
	_ = c.Uncork()
	if c.frames.buffered() != 0 {
		t.Fatal("bytes stay buffered after Uncork")
	}
	_ = c.Close()
	waitUntil(t, func() bool { return impl.Count() == 0 })
}

func asClose(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	*ce = e
	return ok
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition never held")
}

// An Uncork whose write has to wait for the peer calls the OnBlockingWrite
// functions around the wait, and the bytes still arrive.
func TestUncorkThatWaitsCallsHooks(t *testing.T) {
	_, url, conns := corkServer(t)
	// The receive buffer is set before connecting, so that the window the
	// client offers stays small.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		})
	}}
	client := corkDial(t, url, websocket.Dialer{NetDial: d.Dial})
	c := <-conns
	if err := c.frames.Conn.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}

	var before, after atomic.Int32
	waiting := make(chan struct{})
	c.OnBlockingWrite(func() {
		if before.Add(1) == 1 {
			close(waiting)
		}
	}, func() { after.Add(1) })

	// Under 64 KiB in all, so that only Uncork writes, and more than the
	// two small socket buffers hold while the client does not read.
	const n, size = 60, 1000
	c.Cork()
	for i := range n {
		if err := c.WriteText(message(i, size)); err != nil {
			t.Fatal(err)
		}
	}
	if before.Load() != 0 {
		t.Fatal("a corked write went to the socket before Uncork")
	}
	done := make(chan error, 1)
	go func() { done <- c.Uncork() }()
	select { // the client reads only once Uncork waits
	case <-waiting:
	case err := <-done:
		t.Fatalf("Uncork returned (%v) without waiting for the peer", err)
	}
	readMessages(t, client, n, size)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, a := before.Load(), after.Load(); b != 1 || a != 1 {
		t.Fatalf("hooks called before %d, after %d times; want 1, 1", b, a)
	}
	if c.frames.buffered() != 0 || c.frames.buf != nil {
		t.Fatal("bytes stay buffered after Uncork")
	}
}

// Closing a corked socket lets go of its buffer.
func TestCloseWhileCorkedDropsBuffer(t *testing.T) {
	impl, url, conns := corkServer(t)
	client := corkDial(t, url, websocket.Dialer{})
	c := <-conns
	c.Cork()
	if err := c.WriteText(message(0, 100)); err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // no close frame went out: closes at once
	if c.frames.buf != nil {
		t.Fatal("the cork buffer outlives the socket")
	}
	// What the socket took without waiting arrived.
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, b, err := client.ReadMessage(); err != nil || !bytes.Equal(b, message(0, 100)) {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := c.Uncork(); err != nil {
		t.Fatalf("Uncork after close: %v", err)
	}
	waitUntil(t, func() bool { return impl.Count() == 0 })
}
