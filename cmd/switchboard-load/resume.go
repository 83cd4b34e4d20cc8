package main

// The resume scenario: a subscriber that comes back resumeEvents events
// behind, over a real websocket. The server gets the events first
// (configureIntegration mutations on the gateway, each a durable commit;
// the publish mutation or endpoint on the stock gqlgen and bare-write
// baselines, which keep their last 10,000 events in memory), then each resume opens a socket, sends
// subscribe with afterRevision, and is timed from that send until the
// last event has arrived; order, gaps and duplicates are checked by
// revision.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// resumeExtra events are committed beyond resumeEvents, so that an event
// the gateway commits by itself meanwhile (a token refresh) cannot push
// the first one to replay out of the retained changelog.
const resumeExtra = 20

type resumeResult struct {
	events     int           // replayed per resume (the gateway may add its own)
	commitRate float64       // events/s while setting up
	total      time.Duration // median of the resumes: subscribe sent → last event arrived
	first      time.Duration // median: subscribe sent → first event arrived
	min, max   time.Duration
	resumes    int
}

// resumeTarget is a server with a way to commit one event and learn its
// revision, and a subscription that resumes from $after.
type resumeTarget struct {
	*target
	commit       func(ctx context.Context, hc *http.Client) (uint64, error)
	subscription string
}

func runResume(ctx context.Context, o *options, name string) (*resumeResult, error) {
	if o.resumeEvents < 1 || o.resumeRuns < 1 || o.resumeClients < 1 {
		return nil, fmt.Errorf("-resume-events, -resume-runs and -resume-clients must be at least 1")
	}
	const fields = "{ revision at kind integration { id status badge { label tone } } }"
	rt := &resumeTarget{}
	switch name {
	case "switchboard":
		g, err := startGateway(ctx, o)
		if err != nil {
			return nil, err
		}
		defer g.stop()
		rt.target = g.target
		rt.subscription = "subscription($after: Revision) { integrationEvents(afterRevision: $after) " + fields + " }"
		var next atomic.Int64
		rt.commit = func(ctx context.Context, hc *http.Client) (uint64, error) {
			data, err := g.configure(ctx, hc, g.ids[int(next.Add(1))%len(g.ids)])
			if err != nil {
				return 0, err
			}
			var out struct{ ConfigureIntegration struct{ Revision string } }
			if err := json.Unmarshal(data, &out); err != nil {
				return 0, err
			}
			return strconv.ParseUint(out.ConfigureIntegration.Revision, 10, 64)
		}
	case "bare", "gqlgen":
		t, err := startBaseline(ctx, o, name)
		if err != nil {
			return nil, err
		}
		defer t.stop()
		rt.target = t
		rt.subscription = "subscription($after: String) { integrationEvents(afterRevision: $after) " + fields + " }"
		rt.commit = func(ctx context.Context, hc *http.Client) (uint64, error) {
			if name == "gqlgen" {
				data, err := gql(ctx, hc, t.base, "", `mutation { publish(kind: "CONFIGURED") { revision } }`, nil)
				if err != nil {
					return 0, err
				}
				var out struct{ Publish struct{ Revision string } }
				if err := json.Unmarshal(data, &out); err != nil {
					return 0, err
				}
				return strconv.ParseUint(out.Publish.Revision, 10, 64)
			}
			req, _ := http.NewRequestWithContext(ctx, "POST", t.base+"/publish", nil)
			resp, err := hc.Do(req)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			var out struct{ Revision string }
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
				return 0, fmt.Errorf("publish: HTTP %d", resp.StatusCode)
			}
			return strconv.ParseUint(out.Revision, 10, 64)
		}
	default:
		return nil, fmt.Errorf("resume: no server %q", name)
	}

	// Set up: commit the events from resumeClients clients.
	n := o.resumeEvents + resumeExtra
	o.logf("resume %s: committing %d events from %d clients", rt.name, n, o.resumeClients)
	hc := newHTTPClient(o.resumeClients)
	revs := make([]uint64, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	t0 := time.Now()
	var wg sync.WaitGroup
	for range o.resumeClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				rev, err := rt.commit(ctx, hc)
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
				revs[i] = rev
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("resume %s: commit: %w", rt.name, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &resumeResult{commitRate: float64(n) / time.Since(t0).Seconds(), resumes: o.resumeRuns}
	slices.Sort(revs)
	ours := revs[resumeExtra:] // the resumeEvents newest of ours
	after := ours[0] - 1
	o.logf("resume %s: %d events committed at %.0f/s; resuming after revision %d (newest %d)", rt.name, n, r.commitRate, after, ours[len(ours)-1])

	var totals, firsts []time.Duration
	wait := rt.cpuProfile(ctx, o, o.profilePrefix) // the gateway's, when -profile is set
	defer wait()
	for i := range o.resumeRuns {
		got, total, first, err := resumeOnce(ctx, rt, after, ours[len(ours)-1])
		if err != nil {
			return nil, fmt.Errorf("resume %s, resume %d: %w", rt.name, i+1, err)
		}
		if err := checkReplay(got, after, ours); err != nil {
			return nil, fmt.Errorf("resume %s, resume %d: %w", rt.name, i+1, err)
		}
		r.events = len(got)
		totals, firsts = append(totals, total), append(firsts, first)
		o.logf("resume %s: %d events replayed in %s (first after %s)", rt.name, len(got), total.Round(10*time.Microsecond), first.Round(10*time.Microsecond))
	}
	sortDurations(totals)
	sortDurations(firsts)
	r.total, r.first = percentile(totals, 0.5), percentile(firsts, 0.5)
	r.min, r.max = totals[0], totals[len(totals)-1]
	return r, nil
}

var revisionKey = []byte(`"revision":"`)

// resumeOnce opens a socket (not timed), subscribes after the given
// revision and reads until the event of revision last. It returns the
// revisions in arrival order, the time from sending subscribe to the last
// event and to the first.
func resumeOnce(ctx context.Context, rt *resumeTarget, after, last uint64) (revs []uint64, total, first time.Duration, err error) {
	d := &websocket.Dialer{HandshakeTimeout: 20 * time.Second, Subprotocols: []string{"graphql-transport-ws"}}
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + rt.token}})
	s, err := dialOne(ctx, d, rt.target, init, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	c := s.conn
	defer c.Close()
	sub, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query": rt.subscription, "variables": map[string]any{"after": strconv.FormatUint(after, 10)}}})
	revs = make([]uint64, 0, last-after)
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	t0 := time.Now()
	if err := c.WriteMessage(websocket.TextMessage, sub); err != nil {
		return nil, 0, 0, err
	}
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return nil, 0, 0, fmt.Errorf("after %d events: %w", len(revs), err)
		}
		switch {
		case bytes.Contains(msg, typeNext):
			i := bytes.Index(msg, revisionKey)
			if i < 0 {
				return nil, 0, 0, fmt.Errorf("an event without a revision: %.200s", msg)
			}
			rest := msg[i+len(revisionKey):]
			j := bytes.IndexByte(rest, '"')
			rev, err := strconv.ParseUint(string(rest[:max(j, 0)]), 10, 64)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("bad revision in %.200s", msg)
			}
			if len(revs) == 0 {
				first = time.Since(t0)
			}
			revs = append(revs, rev)
			if rev >= last {
				total = time.Since(t0)
				_ = c.WriteMessage(websocket.TextMessage, []byte(`{"id":"1","type":"complete"}`))
				return revs, total, first, nil
			}
		case bytes.Contains(msg, typePing):
			_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
		case bytes.Contains(msg, typeEnd[0]) || bytes.Contains(msg, typeEnd[1]):
			return nil, 0, 0, fmt.Errorf("after %d events: %.300s", len(revs), msg)
		}
	}
}

// checkReplay: strictly increasing revisions (no duplicate, in order),
// all after `after`, and every one of ours among them (no gap).
func checkReplay(got []uint64, after uint64, ours []uint64) error {
	prev := after
	for i, r := range got {
		if r <= prev {
			return fmt.Errorf("event %d: revision %d after %d (out of order or duplicate)", i, r, prev)
		}
		prev = r
	}
	j := 0
	for _, r := range got {
		if j < len(ours) && r == ours[j] {
			j++
		}
	}
	if j != len(ours) {
		return fmt.Errorf("revision %d missing from the replay (%d of %d of ours arrived)", ours[j], j, len(ours))
	}
	return nil
}
