package gqlws_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/gorillaws"
	"github.com/bont/switchboard/gqlws"
)

// These tests write client frames by hand, split across TCP writes and
// coalesced into one, to check the reader that waits for input before
// gorilla reads it: every message must be seen, however the bytes arrive.

const readLimit = 4096

type rawServer struct {
	impl *gorillaws.Implementation
	url  string
}

func newRawServer(t *testing.T, readBuffer int) *rawServer {
	t.Helper()
	impl := gorillaws.New(gorillaws.Options{ReadBufferSize: readBuffer})
	srv := testserver.New()
	srv.AddTransport(&gqlws.Transport{
		Upgrader:    impl,
		InitFunc:    func(ctx context.Context, _ transport.InitPayload) (context.Context, error) { return ctx, nil },
		InitTimeout: 10 * time.Second,
		ReadLimit:   readLimit,
	})
	hs := httptest.NewServer(impl.Middleware(srv))
	t.Cleanup(func() {
		impl.Shutdown("test over")
		hs.Close()
	})
	return &rawServer{impl: impl, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// rawClient reads with gorilla and writes raw bytes to the socket.
type rawClient struct {
	t     *testing.T
	ws    *websocket.Conn
	nc    net.Conn
	pongs chan string // payloads of pong control frames
}

func (s *rawServer) dial(t *testing.T) *rawClient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{gqlws.ProtoTransportWS}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &rawClient{t: t, ws: ws, nc: ws.NetConn(), pongs: make(chan string, 16)}
	ws.SetPongHandler(func(data string) error { c.pongs <- data; return nil })
	return c
}

// frame encodes a masked client frame.
func frame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	key := [4]byte{0x0f, 0xa5, 0x3c, 0x71}
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

func text(m string) []byte { return frame(1, true, []byte(m)) }

const (
	initMsg  = `{"type":"connection_init"}`
	queryMsg = `{"id":"q","type":"subscribe","payload":{"query":"{ name }"}}`
)

func pingMsg(n int) string { return `{"type":"ping","payload":{"n":` + string(rune('0'+n)) + `}}` }

// write sends each part in its own TCP write, pausing between them so that
// the server sees them apart (the pause paces; nothing is timed).
func (c *rawClient) write(parts ...[]byte) {
	c.t.Helper()
	for i, p := range parts {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if _, err := c.nc.Write(p); err != nil {
			c.t.Fatal(err)
		}
	}
}

type message struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

func (c *rawClient) expect(typ, payload string) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", typ, err)
	}
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("%s: %v", data, err)
	}
	if m.Type != typ || (payload != "" && string(m.Payload) != payload) {
		c.t.Fatalf("got %s; want type %s payload %s", data, typ, payload)
	}
}

func (c *rawClient) expectClose(code int) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := c.ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != code {
				c.t.Fatalf("close %d %q; want %d", ce.Code, ce.Text, code)
			}
			return
		}
		if err != nil {
			c.t.Fatalf("waiting for close %d: %v", code, err)
		}
		_ = data
	}
}

func (c *rawClient) expectPong(payload string) {
	c.t.Helper()
	// Pong control frames reach the handler while a read is in progress:
	// read until the next message (a protocol pong the test asks for).
	c.write(text(`{"type":"ping"}`))
	c.expect("pong", "")
	select {
	case got := <-c.pongs:
		if got != payload {
			c.t.Fatalf("pong control frame %q; want %q", got, payload)
		}
	default:
		c.t.Fatalf("no pong control frame for ping %q", payload)
	}
}

func forEachReadBuffer(t *testing.T, f func(t *testing.T, s *rawServer)) {
	for _, size := range []int{0, 256} {
		t.Run("read buffer "+map[int]string{0: "default", 256: "256"}[size], func(t *testing.T) {
			f(t, newRawServer(t, size))
		})
	}
}

func TestCoalescedMessages(t *testing.T) {
	forEachReadBuffer(t, func(t *testing.T, s *rawServer) {
		c := s.dial(t)
		var all []byte
		for _, m := range []string{initMsg, pingMsg(1), pingMsg(2), queryMsg, pingMsg(3)} {
			all = append(all, text(m)...)
		}
		c.write(all)
		c.expect("connection_ack", "")
		c.expect("pong", `{"n":1}`)
		c.expect("pong", `{"n":2}`)
		// The query's result comes from a goroutine of its own, so it may
		// pass the last pong; take the three in any order.
		seen := map[string]int{}
		for range 3 {
			_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, data, err := c.ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			var m message
			_ = json.Unmarshal(data, &m)
			seen[m.Type+" "+string(m.Payload)]++
		}
		want := map[string]int{`next {"data":{"name":"test"}}`: 1, "complete ": 1, `pong {"n":3}`: 1}
		for k, n := range want {
			if seen[k] != n {
				t.Fatalf("got %v; want %v", seen, want)
			}
		}
		assertResting(t, s, 1)
	})
}

func TestSplitMessages(t *testing.T) {
	forEachReadBuffer(t, func(t *testing.T, s *rawServer) {
		c := s.dial(t)
		c.write(text(initMsg))
		c.expect("connection_ack", "")
		// Two messages, cut at every byte: inside the first header, its
		// mask key, its payload, right at the boundary, and inside the
		// second.
		two := append(text(pingMsg(1)), text(pingMsg(2))...)
		for k := 1; k < len(two); k++ {
			c.write(two[:k], two[k:])
			c.expect("pong", `{"n":1}`)
			c.expect("pong", `{"n":2}`)
		}
		// One byte per write.
		var parts [][]byte
		for _, b := range text(pingMsg(3)) {
			parts = append(parts, []byte{b})
		}
		c.write(parts...)
		c.expect("pong", `{"n":3}`)
		assertResting(t, s, 1)
	})
}

func TestLongMessagesAndFragments(t *testing.T) {
	forEachReadBuffer(t, func(t *testing.T, s *rawServer) {
		c := s.dial(t)
		c.write(text(initMsg))
		c.expect("connection_ack", "")

		// A message with a 16-bit length, longer than gorilla's buffer.
		pad := strings.Repeat(" ", 1000)
		long := `{"type":"ping","payload":{"pad":"` + pad + `"}}`
		c.write(append(text(long), text(pingMsg(1))...))
		c.expect("pong", `{"pad":"`+pad+`"}`)
		c.expect("pong", `{"n":1}`)

		// A message in three fragments with a ping control frame between
		// them, then another message, coalesced and then split.
		msg := []byte(pingMsg(4))
		stream := frame(1, false, msg[:5])
		stream = append(stream, frame(9, true, []byte("hb"))...)
		stream = append(stream, frame(0, false, msg[5:9])...)
		stream = append(stream, frame(0, true, msg[9:])...)
		stream = append(stream, text(pingMsg(5))...)
		c.write(stream)
		c.expect("pong", `{"n":4}`)
		c.expect("pong", `{"n":5}`)
		c.expectPong("hb")
		for _, cut := range []int{1, 3, len(frame(1, false, msg[:5])) + 1, len(stream) - 2} {
			c.write(stream[:cut], stream[cut:])
			c.expect("pong", `{"n":4}`)
			c.expect("pong", `{"n":5}`)
			c.expectPong("hb")
		}
		assertResting(t, s, 1)
	})
}

func TestPingControlFrameAlone(t *testing.T) {
	forEachReadBuffer(t, func(t *testing.T, s *rawServer) {
		c := s.dial(t)
		c.write(text(initMsg))
		c.expect("connection_ack", "")
		// A ping control frame on its own, then a message later.
		c.write(frame(9, true, []byte("alone")))
		c.expectPong("alone")
		c.write(text(pingMsg(1)))
		c.expect("pong", `{"n":1}`)
		assertResting(t, s, 1)
	})
}

func TestCoalescedCloseAndReadLimit(t *testing.T) {
	forEachReadBuffer(t, func(t *testing.T, s *rawServer) {
		t.Run("a message then the client's close", func(t *testing.T) {
			c := s.dial(t)
			closeFrame := frame(8, true, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
			c.write(append(append(text(initMsg), text(pingMsg(1))...), closeFrame...))
			c.expect("connection_ack", "")
			c.expect("pong", `{"n":1}`)
			c.expectClose(websocket.CloseNormalClosure)
			waitFor(t, "the socket to close", func() bool { return s.impl.Count() == 0 })
		})
		t.Run("a message over the read limit after one that fits", func(t *testing.T) {
			c := s.dial(t)
			big := `{"type":"ping","payload":"` + strings.Repeat("x", readLimit) + `"}`
			c.write(append(append(text(initMsg), text(pingMsg(1))...), text(big)...))
			c.expect("connection_ack", "")
			c.expect("pong", `{"n":1}`)
			c.expectClose(websocket.CloseMessageTooBig)
			waitFor(t, "the socket to close", func() bool { return s.impl.Count() == 0 })
		})
		t.Run("a frame split inside its header, then the client goes away", func(t *testing.T) {
			c := s.dial(t)
			c.write(text(initMsg))
			c.expect("connection_ack", "")
			c.write(text(pingMsg(1))[:3])
			_ = c.nc.Close()
			waitFor(t, "the socket to close", func() bool { return s.impl.Count() == 0 })
		})
	})
}

// assertResting waits until the transport is at rest and checks that it
// holds exactly n goroutines, each of them a reader waiting for input.
func assertResting(t *testing.T, s *rawServer, n int) {
	t.Helper()
	waitFor(t, "the transport to come to rest", func() bool { return countTransport() == n })
	if got := countReaders(); got != n {
		t.Fatalf("%d of %d transport goroutines wait in WaitReadable; want all", got, n)
	}
}

func stacks() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Split(string(buf), "\n\n")
}

// countTransport counts goroutines running code of gqlws.
func countTransport() int {
	n := 0
	for _, g := range stacks() {
		if strings.Contains(g, "gqlws.(*conn)") {
			n++
		}
	}
	return n
}

// countReaders counts readers waiting for input, not inside gorilla.
func countReaders() int {
	n := 0
	for _, g := range stacks() {
		if strings.Contains(g, "gorillaws.(*conn).WaitReadable") && !bytes.Contains([]byte(g), []byte("websocket.(*Conn)")) {
			n++
		}
	}
	return n
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
