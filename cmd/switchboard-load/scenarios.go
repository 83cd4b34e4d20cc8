package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// fanoutResult is one run of the fan-out scenario against one target.
type fanoutResult struct {
	sockets, subs      int
	missing            int64   // warm-up deliveries that never came
	rssPerSocket       float64 // bytes
	goroutinesPerSock  float64
	p50, p99, max      time.Duration
	ack                time.Duration // median time from sending the publish to its answer
	deliveriesPerSec   float64
	failed             int64
	latencyDeliveries  int
	throughputComplete bool
}

// runFanout opens sockets×perSocket subscriptions, checks they all
// receive a warm-up event, measures the server's RSS and goroutines per
// idle socket, then publishes latencyEvents one at a time (each waits
// until the last subscriber has it) and throughputEvents back to back
// from 4 publishers.
func runFanout(ctx context.Context, o *options, t *target, sockets, perSocket, latencyEvents, throughputEvents int) (*fanoutResult, error) {
	hc := newHTTPClient(8)
	r := &fanoutResult{sockets: sockets, subs: sockets * perSocket}
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	rss0, err := t.rss()
	if err != nil {
		o.logf("%s: RSS: %v", t.name, err)
	}
	gor0, _, err := t.gauges(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s /metrics: %w", t.name, err)
	}
	o.logf("%s: opening %d sockets with %d subscriptions each", t.name, sockets, perSocket)
	start := time.Now()
	p, err := dialPool(ctx, t, sockets, perSocket, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	defer p.close()
	o.logf("%s: %d sockets open in %s", t.name, sockets, time.Since(start).Round(time.Millisecond))
	want := int64(r.subs)

	// Warm-up: a subscription is live once it has had an event; a
	// subscribe may still be in flight, so publish until every one has
	// had one (at most 10 times).
	for i := 0; i < 10 && p.short(perSocket) > 0; i++ {
		if err := t.publish(ctx, hc); err != nil {
			return nil, fmt.Errorf("%s publish: %w", t.name, err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for p.short(perSocket) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	r.missing = p.short(perSocket)
	if r.missing > 0 {
		o.logf("%s: %d of %d subscriptions got no warm-up event", t.name, r.missing, want)
	}
	time.Sleep(time.Second)
	if rss1, err := t.rss(); err == nil && rss0 > 0 {
		r.rssPerSocket = float64(rss1-rss0) / float64(sockets)
	}
	if t.noGoroutines {
		r.goroutinesPerSock = math.NaN()
	} else if gor1, _, err := t.gauges(ctx); err == nil {
		r.goroutinesPerSock = (gor1 - gor0) / float64(sockets)
	}
	live := want - r.missing
	t.snapshot(ctx, o, o.profilePrefix)
	if latencyEvents+throughputEvents > 0 {
		defer t.cpuProfile(ctx, o, o.profilePrefix)()
	}

	// One event at a time: latency until the last subscriber has it.
	p.record.Store(true)
	var acks []time.Duration
	for range latencyEvents {
		base := p.delivered.Load()
		t0 := time.Now()
		if err := t.publish(ctx, hc); err != nil {
			return nil, fmt.Errorf("%s publish: %w", t.name, err)
		}
		acks = append(acks, time.Since(t0))
		if !p.waitDelivered(ctx, base+live, 60*time.Second) {
			o.logf("%s: an event reached %d of %d subscriptions within 60s", t.name, p.delivered.Load()-base, live)
		}
		time.Sleep(300 * time.Millisecond)
	}
	p.record.Store(false)
	lats := p.latencies()
	r.latencyDeliveries = len(lats)
	sortDurations(acks)
	r.ack = percentile(acks, 0.5)
	r.p50, r.p99, r.max = percentile(lats, 0.50), percentile(lats, 0.99), percentile(lats, 1)

	if throughputEvents == 0 {
		r.failed = p.failed.Load()
		o.logf("%s: %d subscriptions: %.1f KiB and %s goroutines per idle socket", t.name, r.subs, r.rssPerSocket/1024, perSock(r.goroutinesPerSock))
		return r, nil
	}
	// Sustained: throughputEvents back to back.
	time.Sleep(300 * time.Millisecond)
	base := p.delivered.Load()
	var next atomic.Int64
	var perr error
	var once sync.Once
	t0 := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for next.Add(1) <= int64(throughputEvents) {
				if err := t.publish(ctx, hc); err != nil {
					once.Do(func() { perr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if perr != nil {
		return nil, fmt.Errorf("%s publish: %w", t.name, perr)
	}
	r.throughputComplete = p.waitDelivered(ctx, base+live*int64(throughputEvents), 120*time.Second)
	got := p.delivered.Load() - base
	elapsed := time.Unix(0, p.lastRecv.Load()).Sub(t0)
	r.deliveriesPerSec = float64(got) / elapsed.Seconds()
	r.failed = p.failed.Load()
	o.logf("%s: %d subscriptions: publish answered in %s (median); p50 %s p99 %s max %s; %.0f deliveries/s; %.1f KiB and %s goroutines per idle socket",
		t.name, r.subs, r.ack, r.p50, r.p99, r.max, r.deliveriesPerSec, r.rssPerSocket/1024, perSock(r.goroutinesPerSock))
	return r, nil
}

// perSock formats goroutines per socket; NaN (the Node peer) has none.
func perSock(g float64) string {
	if math.IsNaN(g) {
		return "no"
	}
	return fmt.Sprintf("%.2f", g)
}

// rateResult is a closed-loop HTTP run: concurrency clients, each sending
// its next request when the last one is answered.
type rateResult struct {
	n, errors int64
	perSec    float64
	p50, p99  time.Duration
}

func runClosedLoop(ctx context.Context, concurrency int, limit int64, d time.Duration, do func(ctx context.Context, i int) error) *rateResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n, errs atomic.Int64
	lats := make([][]time.Duration, concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && n.Add(1) <= limit {
				t := time.Now()
				if err := do(ctx, c); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				lats[c] = append(lats[c], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sortDurations(all)
	return &rateResult{n: int64(len(all)), errors: errs.Load(), perSec: float64(len(all)) / elapsed.Seconds(), p50: percentile(all, 0.5), p99: percentile(all, 0.99)}
}

// integrationsQuery is what a settings page asks for.
const integrationsQuery = `{ integrations { id category status statusReason statusMessage badge { label tone } actions account { id name email } grantedScopes missingScopes connectedAt settings { key value } disconnectWarning revision provider { id name category settingsLocation available } } }`

// runQuery measures the integrations query over HTTP against the gateway
// and a plain net/http handler serving the gateway's own response bytes.
func runQuery(ctx context.Context, o *options, g *gateway) (gw, base *rateResult, err error) {
	hc := newHTTPClient(o.queryClients)
	data, err := gql(ctx, hc, g.base, g.token, integrationsQuery, nil)
	if err != nil {
		return nil, nil, err
	}
	body, _ := json.Marshal(map[string]json.RawMessage{"data": data})
	file := filepath.Join(o.tmp, "integrations.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return nil, nil, err
	}
	o.logf("query: %d integrations, %d bytes", len(g.ids), len(body))
	wait := g.cpuProfile(ctx, o, o.profilePrefix)
	gw = runClosedLoop(ctx, o.queryClients, o.requests, o.duration, func(ctx context.Context, _ int) error {
		_, err := gql(ctx, hc, g.base, g.token, integrationsQuery, nil)
		return err
	})
	wait()
	o.logf("query: switchboard %.0f/s p50 %s p99 %s (%d errors)", gw.perSec, gw.p50, gw.p99, gw.errors)
	b, err := startBaseline(ctx, o, "list", "-body", file)
	if err != nil {
		return nil, nil, err
	}
	defer b.stop()
	bc := newHTTPClient(o.queryClients)
	base = runClosedLoop(ctx, o.queryClients, o.requests, o.duration, func(ctx context.Context, _ int) error {
		_, err := gql(ctx, bc, b.base, "", integrationsQuery, nil)
		return err
	})
	o.logf("query: %s %.0f/s p50 %s p99 %s (%d errors)", b.name, base.perSec, base.p50, base.p99, base.errors)
	return gw, base, nil
}

// runMutations measures durable configureIntegration from
// o.mutationClients concurrent clients against the gateway, then the same
// DB.Batch write through a plain net/http handler: records of the sizes
// the gateway's commits wrote (read from its file once it has stopped),
// and the small write (two values of about 60 bytes) next to it.
func runMutations(ctx context.Context, o *options, g *gateway) (gw, same, small *rateResult, sizes writeSizes, err error) {
	hc := newHTTPClient(o.mutationClients)
	wait := g.cpuProfile(ctx, o, o.profilePrefix)
	gw = runClosedLoop(ctx, o.mutationClients, o.requests, o.duration, func(ctx context.Context, c int) error {
		_, err := g.configure(ctx, hc, g.ids[c%len(g.ids)])
		return err
	})
	wait()
	o.logf("mutations: switchboard %.0f/s p50 %s p99 %s (%d errors)", gw.perSec, gw.p50, gw.p99, gw.errors)
	sizes = defaultWriteSizes
	if g.dataDir != "" {
		g.stop()
		if sizes, err = gatewayWriteSizes(filepath.Join(g.dataDir, "switchboard.db")); err != nil {
			return nil, nil, nil, sizes, err
		}
	}
	o.logf("mutations: the gateway wrote records of %d B, events of %d B, audit entries of %d B, keeping %d", sizes.Record, sizes.Event, sizes.Audit, sizes.Retain)
	if same, err = runBatchBaseline(ctx, o, g, sizes); err != nil {
		return nil, nil, nil, sizes, err
	}
	if small, err = runBatchBaseline(ctx, o, g, writeSizes{}); err != nil {
		return nil, nil, nil, sizes, err
	}
	return gw, same, small, sizes, nil
}

// defaultWriteSizes is what the gateway's configure wrote when measured
// last (record, event, audit entry, retention), for -target runs, whose
// file this command cannot read.
var defaultWriteSizes = writeSizes{Record: 747, Event: 879, Audit: 278, Retain: 10000}

// gatewayWriteSizes reads the mean value sizes of the demo workspace's
// integrations, changelog and audit buckets from a stopped gateway's
// file, and the changelog's retention (the gateway's default).
func gatewayWriteSizes(path string) (writeSizes, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return writeSizes{}, fmt.Errorf("read the gateway's write sizes: %w", err)
	}
	defer db.Close()
	sizes := writeSizes{Retain: defaultWriteSizes.Retain}
	err = db.View(func(tx *bbolt.Tx) error {
		ws := tx.Bucket([]byte("workspaces"))
		if ws != nil {
			ws = ws.Bucket([]byte("ws_demo"))
		}
		if ws == nil {
			return fmt.Errorf("no workspace ws_demo in %s", path)
		}
		mean := func(name string) int {
			b := ws.Bucket([]byte(name))
			if b == nil {
				return 0
			}
			n, total := 0, 0
			_ = b.ForEach(func(_, v []byte) error {
				n++
				total += len(v)
				return nil
			})
			if n == 0 {
				return 0
			}
			return total / n
		}
		sizes.Record, sizes.Event, sizes.Audit = mean("integrations"), mean("changelog"), mean("audit")
		return nil
	})
	return sizes, err
}

func runBatchBaseline(ctx context.Context, o *options, g *gateway, sizes writeSizes) (*rateResult, error) {
	dir, err := os.MkdirTemp(o.tmp, "batch-")
	if err != nil {
		return nil, err
	}
	b, err := startBaseline(ctx, o, "batch", "-dir", dir,
		"-record-bytes", strconv.Itoa(sizes.Record), "-event-bytes", strconv.Itoa(sizes.Event),
		"-audit-bytes", strconv.Itoa(sizes.Audit), "-retain", strconv.Itoa(sizes.Retain))
	if err != nil {
		return nil, err
	}
	defer b.stop()
	bc := newHTTPClient(o.mutationClients)
	base := runClosedLoop(ctx, o.mutationClients, o.requests, o.duration, func(ctx context.Context, c int) error {
		body, _ := json.Marshal(map[string]string{"id": g.ids[c%len(g.ids)], "key": "sync_interval_minutes", "value": fmt.Sprint(5 + seq.Add(1)%1436)})
		req, _ := http.NewRequestWithContext(ctx, "POST", b.base+"/configure", bytesReader(body))
		resp, err := bc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out struct{ Revision string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
	what := "same write"
	if sizes.Record == 0 {
		what = "small write"
	}
	o.logf("mutations: %s (%s) %.0f/s p50 %s p99 %s (%d errors)", b.name, what, base.perSec, base.p50, base.p99, base.errors)
	return base, nil
}

// churnResult: the server's goroutines and heap before and after cycles
// of connect, subscribe, disconnect.
type churnResult struct {
	cycles                int
	gorBefore, gorAfter   float64
	heapBefore, heapAfter float64
	rssBefore, rssAfter   int64
}

func runChurn(ctx context.Context, o *options, t *target, cycles int) (*churnResult, error) {
	one := func() error {
		p, err := dialPool(ctx, t, 1, 1, 1)
		if err != nil {
			return err
		}
		p.close()
		return nil
	}
	for range 100 { // warm-up: pools, buffers
		if err := one(); err != nil {
			return nil, err
		}
	}
	settle := func() (float64, float64, int64) {
		time.Sleep(2 * time.Second)
		g, h, _ := t.gauges(ctx)
		rss, _ := t.rss()
		return g, h, rss
	}
	r := &churnResult{cycles: cycles}
	r.gorBefore, r.heapBefore, r.rssBefore = settle()
	var next atomic.Int64
	var errs atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= int64(cycles) && ctx.Err() == nil {
				if one() != nil {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if errs.Load() > 0 {
		o.logf("churn: %d of %d cycles failed", errs.Load(), cycles)
	}
	// Wait (bounded) for the server to let go of the sockets.
	for i := 0; i < 10; i++ {
		r.gorAfter, r.heapAfter, r.rssAfter = settle()
		if r.gorAfter <= r.gorBefore {
			break
		}
	}
	o.logf("churn %s: goroutines %.0f → %.0f, heap %.1f → %.1f MiB, RSS %.1f → %.1f MiB", t.name,
		r.gorBefore, r.gorAfter, r.heapBefore/(1<<20), r.heapAfter/(1<<20), float64(r.rssBefore)/(1<<20), float64(r.rssAfter)/(1<<20))
	return r, nil
}
