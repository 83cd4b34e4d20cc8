package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Engine benchmarks: the gateway's websocket path (gqlws over gorillaws).
// Clients share the process and the cores with the server, so absolute
// figures are client-bound. The comparison with stock gqlgen is the load
// command's stock baseline (cmd/switchboard-load, stockgql).
//
//	go test -run '^$' -bench 'Fanout|IdleSocket' -benchtime 20x .
//
// Profiles:
//
//	go test -run '^$' -bench 'Fanout/engine' -benchtime 50x -cpuprofile cpu.out -memprofile mem.out .
//	go tool pprof -top cpu.out

const benchSubscription = `subscription { integrationEvents { revision at kind previousStatus integration { id status statusReason badge { label tone } actions } } }`

// benchSockets opens n websockets to m, each with one subscription, and
// returns them once every subscription is registered with the broker.
func benchSockets(b *testing.B, m *Main, n int) []*websocket.Conn {
	b.Helper()
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512,
		Subprotocols: []string{"graphql-transport-ws"}}
	u := "ws" + strings.TrimPrefix(m.URL, "http") + "/graphql"
	before := m.broker.Stats().Subscribers
	conns := make([]*websocket.Conn, n)
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + m.DemoToken}})
	sub, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": benchSubscription}})
	for i := range conns {
		c, _, err := dialer.Dial(u, http.Header{"Origin": {m.URL}})
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		b.Cleanup(func() { c.Close() })
		if err := c.WriteMessage(websocket.TextMessage, init); err != nil {
			b.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, msg, err := c.ReadMessage(); err != nil || !strings.Contains(string(msg), "connection_ack") {
			b.Fatalf("ack %d: %s %v", i, msg, err)
		}
		if err := c.WriteMessage(websocket.TextMessage, sub); err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	deadline := time.Now().Add(30 * time.Second)
	for m.broker.Stats().Subscribers < before+n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d subscriptions registered", m.broker.Stats().Subscribers-before, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return conns
}

func startBench(b *testing.B) (*Main, *client, string) {
	b.Helper()
	m := mustStart(b, "", func(m *Main) {
		// Every subscriber is the demo token's.
		m.Config.MaxSocketsPerToken, m.Config.MaxSocketsPerWorkspace = -1, -1
	})
	c := newClient(b, m, m.DemoToken)
	id := connect(b, c, "ada@sandbox.test")["id"].(string)
	return m, c, id
}

// BenchmarkFanout commits one configure per iteration and waits until every
// one of the subscribers has read the event: ns/op is the time until the
// last delivery, deliveries/s the sustained rate.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("engine/subscribers=%d", n), func(b *testing.B) {
			m, c, id := startBench(b)
			conns := benchSockets(b, m, n)
			var wg sync.WaitGroup
			round := make([]chan struct{}, len(conns))
			for i, conn := range conns {
				round[i] = make(chan struct{}, 1)
				go func() {
					for range round[i] {
						conn.SetReadDeadline(time.Now().Add(30 * time.Second))
						for {
							_, msg, err := conn.ReadMessage()
							if err != nil {
								b.Errorf("read: %v", err)
								wg.Done()
								return
							}
							if strings.Contains(string(msg), `"next"`) {
								break
							}
						}
						wg.Done()
					}
				}()
			}
			b.Cleanup(func() {
				for _, r := range round {
					close(r)
				}
			})
			runtime.GC()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				wg.Add(len(conns))
				for _, r := range round {
					r <- struct{}{}
				}
				if _, _, errs := configure(c, id, "sync_interval_minutes", strconv.Itoa(5+i%1000)); len(errs) > 0 {
					b.Fatal(errs)
				}
				wg.Wait()
			}
			b.StopTimer()
			elapsed := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*len(conns))/elapsed, "deliveries/s")
		})
	}
}

// BenchmarkIdleSocket holds sockets with one subscription each and reports
// what each costs the process at rest: goroutines (the client side holds
// none) and heap plus stack bytes (including the client's small gorilla
// buffers, about 1 KiB).
func BenchmarkIdleSocket(b *testing.B) {
	const n = 2000
	const variant = "engine"
	b.Run(variant, func(b *testing.B) {
		m, _, _ := startBench(b)
		for i := 0; i < b.N; i++ {
			g0, heap0, stack0 := restingUsage()
			conns := benchSockets(b, m, n)
			time.Sleep(100 * time.Millisecond) // let transient goroutines end
			g1, heap1, stack1 := restingUsage()
			b.ReportMetric(float64(g1-g0)/n, "goroutines/socket")
			b.ReportMetric(float64(heap1+stack1-heap0-stack0)/n, "bytes/socket")
			b.ReportMetric(float64(heap1-heap0)/n, "heap-bytes/socket")
			b.ReportMetric(float64(stack1-stack0)/n, "stack-bytes/socket")
			if path := os.Getenv("IDLE_HEAP_PROFILE"); path != "" {
				// The heap with the sockets open (go tool pprof -sample_index=inuse_space).
				f, err := os.Create(path + "." + variant)
				if err != nil {
					b.Fatal(err)
				}
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
			for _, c := range conns {
				c.Close()
			}
			deadline := time.Now().Add(30 * time.Second)
			for m.ws.Count() > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
}

func restingUsage() (goroutines int, heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), int64(ms.HeapInuse), int64(ms.StackInuse)
}
