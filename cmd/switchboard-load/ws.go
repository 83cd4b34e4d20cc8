package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// subscriber is one websocket with its subscriptions.
type subscriber struct {
	conn *websocket.Conn
	got  atomic.Int64 // next messages received
	mu   sync.Mutex
	lats []time.Duration // commit (the event's at) to delivery
}

// pool is the load client's sockets to one target.
type pool struct {
	subs      []*subscriber
	delivered atomic.Int64 // next messages received
	failed    atomic.Int64 // error or complete messages, bad frames
	lastRecv  atomic.Int64 // unix nanoseconds of the latest delivery
	record    atomic.Bool  // keep latencies
	readers   sync.WaitGroup
}

var atKey = []byte(`"at":"`)

// eventAt finds the event's "at" timestamp in a next message.
func eventAt(msg []byte) (time.Time, bool) {
	i := bytes.Index(msg, atKey)
	if i < 0 {
		return time.Time{}, false
	}
	rest := msg[i+len(atKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}

// dialPool opens n sockets with perSocket subscriptions each
// (graphql-transport-ws), concurrency at a time, and starts their readers.
func dialPool(ctx context.Context, t *target, n, perSocket, concurrency int) (*pool, error) {
	p := &pool{subs: make([]*subscriber, n)}
	d := &websocket.Dialer{HandshakeTimeout: 20 * time.Second, Subprotocols: []string{"graphql-transport-ws"}, ReadBufferSize: 2048, WriteBufferSize: 1024}
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + t.token}})
	subscribe := make([][]byte, perSocket)
	for i := range perSocket {
		subscribe[i], _ = json.Marshal(map[string]any{"id": strconv.Itoa(i + 1), "type": "subscribe", "payload": map[string]any{"query": t.subscription}})
	}
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				s, err := dialOne(ctx, d, t, init, subscribe)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("socket %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
				p.subs[i] = s
				p.readers.Go(func() { p.read(s) })
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		p.close()
		return nil, firstErr
	}
	return p, ctx.Err()
}

func dialOne(ctx context.Context, d *websocket.Dialer, t *target, init []byte, subscribe [][]byte) (*subscriber, error) {
	c, _, err := d.DialContext(ctx, t.wsURL(), http.Header{"Origin": {t.base}})
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, init); err != nil {
		c.Close()
		return nil, err
	}
	for {
		var m struct{ Type string }
		if err := c.ReadJSON(&m); err != nil {
			c.Close()
			return nil, fmt.Errorf("waiting for connection_ack: %w", err)
		}
		if m.Type == "connection_ack" {
			break
		}
		if m.Type == "ping" {
			_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	for _, s := range subscribe {
		if err := c.WriteMessage(websocket.TextMessage, s); err != nil {
			c.Close()
			return nil, err
		}
	}
	return &subscriber{conn: c}, nil
}

var (
	typeNext = []byte(`"type":"next"`)
	typePing = []byte(`"type":"ping"`)
	typeEnd  = [][]byte{[]byte(`"type":"error"`), []byte(`"type":"complete"`)}
)

func (p *pool) read(s *subscriber) {
	for {
		_, msg, err := s.conn.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now()
		switch {
		case bytes.Contains(msg, typeNext):
			if at, ok := eventAt(msg); ok && p.record.Load() {
				s.mu.Lock()
				s.lats = append(s.lats, now.Sub(at))
				s.mu.Unlock()
			}
			s.got.Add(1)
			p.lastRecv.Store(now.UnixNano())
			p.delivered.Add(1)
		case bytes.Contains(msg, typePing):
			_ = s.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
		case bytes.Contains(msg, typeEnd[0]) || bytes.Contains(msg, typeEnd[1]):
			p.failed.Add(1)
		}
	}
}

// waitDelivered waits until want deliveries in total, or the deadline.
func (p *pool) waitDelivered(ctx context.Context, want int64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for p.delivered.Load() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// short counts the subscriptions that have had no event yet (a socket
// with perSocket subscriptions needs perSocket events).
func (p *pool) short(perSocket int) int64 {
	var n int64
	for _, s := range p.subs {
		if s != nil {
			n += max(0, int64(perSocket)-s.got.Load())
		}
	}
	return n
}

// latencies returns and clears the recorded latencies, sorted.
func (p *pool) latencies() []time.Duration {
	var out []time.Duration
	for _, s := range p.subs {
		if s == nil {
			continue
		}
		s.mu.Lock()
		out = append(out, s.lats...)
		s.lats = s.lats[:0]
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (p *pool) close() {
	for _, s := range p.subs {
		if s != nil {
			_ = s.conn.Close()
		}
	}
	p.readers.Wait()
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
