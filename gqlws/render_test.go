package gqlws_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/gqlws"
)

// A Renderer writes the items it renders, and hands the others to gqlgen's
// executor, in order; it is compiled once per subscription, or once per
// group when subscriptions are grouped.
func TestRendererAndFallback(t *testing.T) {
	for _, grouped := range []bool{false, true} {
		t.Run(map[bool]string{false: "alone", true: "grouped"}[grouped], func(t *testing.T) {
			h := &hub{}
			var compiled atomic.Int32
			url := hubServer(t, h, time.Minute, func(tr *gqlws.Transport) {
				if grouped {
					tr.ViewerKey = func(context.Context) (string, bool) { return "viewer", true }
				}
				tr.Compile = func(ctx context.Context, rc *graphql.OperationContext) gqlws.Renderer {
					compiled.Add(1)
					if rc.RawQuery != "subscription { blob }" {
						t.Errorf("compiled %q", rc.RawQuery)
					}
					return func(dst []byte, item any) ([]byte, bool) {
						v, _ := item.(string)
						rest, ok := strings.CutPrefix(v, "fast:")
						if !ok {
							return dst, false
						}
						return append(dst, `{"data":{"blob":"rendered `+rest+`"}}`...), true
					}
				}
			})
			conns := []*websocket.Conn{hubSubscribe(t, url, 0), hubSubscribe(t, url, 0)}
			for _, c := range conns {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, m, err := c.ReadMessage(); err != nil || !strings.Contains(string(m), "connection_ack") {
					t.Fatalf("ack: %s %v", m, err)
				}
			}
			waitFor(t, "both subscriptions to start", func() bool { return h.count() == 2 })
			items := []string{"fast:1", "slow:2", "fast:3", "slow:4", "slow:5", "fast:6"}
			for _, v := range items {
				h.publish(v)
			}
			for i, c := range conns {
				for _, v := range items {
					want := `{"id":"1","type":"next","payload":{"data":{"blob":"` + v + `"}}}`
					if rest, ok := strings.CutPrefix(v, "fast:"); ok {
						want = `{"id":"1","type":"next","payload":{"data":{"blob":"rendered ` + rest + `"}}}`
					}
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, m, err := c.ReadMessage()
					if err != nil {
						t.Fatalf("socket %d, item %s: %v", i, v, err)
					}
					if string(m) != want {
						t.Fatalf("socket %d: got %s, want %s", i, m, want)
					}
				}
			}
			want := int32(2)
			if grouped {
				want = 1
			}
			if n := compiled.Load(); n != want {
				t.Errorf("compiled %d times, want %d", n, want)
			}
		})
	}
}
