package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// target is a server under load: the gateway or a baseline.
type target struct {
	name  string
	base  string // http://host:port
	token string
	proc  *child // nil when targeting a running gateway
	pid   int    // for RSS; 0: unknown
	// adminSock is the gateway's admin socket (pprof), when the load
	// command started it.
	adminSock string
	// subscription is the subscribe payload's query; every server streams
	// an event with an "at" timestamp stamped when it was committed or
	// published.
	subscription string
	// noGoroutines: its /metrics has no go_goroutines (the Node peer).
	noGoroutines bool
	// publish makes the server emit one event to every subscriber.
	publish func(ctx context.Context, hc *http.Client) error
}

func (t *target) wsURL() string { return "ws" + strings.TrimPrefix(t.base, "http") + "/graphql" }

func (t *target) rss() (int64, error) { return rssBytes(t.pid) }

// gauges returns go_goroutines and go_memstats_heap_alloc_bytes.
func (t *target) gauges(ctx context.Context) (goroutines, heap float64, err error) {
	g, err := promGauges(ctx, t.base+"/metrics", "go_goroutines", "go_memstats_heap_alloc_bytes")
	if err != nil {
		return 0, 0, err
	}
	return g["go_goroutines"], g["go_memstats_heap_alloc_bytes"], nil
}

func (t *target) stop() { t.proc.stop() }

// gql posts a GraphQL request and fails on transport or GraphQL errors.
func gql(ctx context.Context, hc *http.Client, base, token, query string, vars map[string]any) (json.RawMessage, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out struct {
		Data   json.RawMessage
		Errors []struct{ Message string }
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("graphql: %s", out.Errors[0].Message)
	}
	return out.Data, nil
}

func newHTTPClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns
	tr.MaxIdleConnsPerHost = conns
	tr.MaxConnsPerHost = conns
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// ---- the baselines as targets ----

func startBaseline(ctx context.Context, o *options, kind string, extra ...string) (*target, error) {
	c, err := startChild("baseline "+kind, o.log, listenLine, o.self, append([]string{"baseline", kind}, extra...)...)
	if err != nil {
		return nil, err
	}
	t := &target{name: kind, base: "http://" + c.addr, proc: c, pid: c.pid(), subscription: "subscription { integrationEvents { revision at kind integration { id status badge { label tone } } } }"}
	switch kind {
	case "bare":
		t.name = "bare-write baseline"
		t.publish = func(ctx context.Context, hc *http.Client) error {
			req, _ := http.NewRequestWithContext(ctx, "POST", t.base+"/publish", nil)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("publish: HTTP %d", resp.StatusCode)
			}
			return nil
		}
	case "gqlgen":
		t.name = "stock gqlgen"
		t.publish = func(ctx context.Context, hc *http.Client) error {
			_, err := gql(ctx, hc, t.base, "", `mutation { publish(kind: "CONFIGURED") { revision } }`, nil)
			return err
		}
	case "list":
		t.name = "plain net/http (memory)"
	case "batch":
		t.name = "plain net/http + DB.Batch"
	}
	return t, nil
}

var seq atomic.Int64
