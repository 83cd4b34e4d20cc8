package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bont/switchboard/fanout"
	"github.com/bont/switchboard/switchboard"
)

// memStore is an in-memory changelog that behaves like the store: a commit
// appends to the log (taking the next global revision) and only then
// publishes; EventsAfter honours a compaction point.
type memStore struct {
	mu        sync.Mutex
	log       []*switchboard.Event // log[i].Revision == i+1
	compacted uint64               // events up to this revision are gone
	broker    *fanout.Broker

	// beforeRead, when set, runs at the start of every EventsAfter.
	beforeRead func(call int)
	reads      atomic.Int64
}

func (m *memStore) EventsAfter(ctx context.Context, workspaceID string, after uint64, limit int) ([]*switchboard.Event, error) {
	if f := m.beforeRead; f != nil {
		f(int(m.reads.Add(1)))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	latest := uint64(len(m.log))
	if after > latest {
		return nil, switchboard.Errorf(switchboard.EINVALID, "revision %d is in the future", after)
	}
	if after < m.compacted {
		return nil, switchboard.Errorf(switchboard.ECOMPACTED, "revision %d is compacted", after)
	}
	var out []*switchboard.Event
	for _, ev := range m.log[after:] {
		if len(out) == limit {
			break
		}
		if ev.WorkspaceID == workspaceID {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (m *memStore) compact(upTo uint64) {
	m.mu.Lock()
	m.compacted = upTo
	m.mu.Unlock()
}

func (m *memStore) appendLocked(ws string, kind switchboard.EventKind, cat switchboard.Category) *switchboard.Event {
	ev := &switchboard.Event{
		Revision:    uint64(len(m.log)) + 1,
		At:          time.Now(),
		WorkspaceID: ws,
		Kind:        kind,
		Integration: &switchboard.Integration{ID: "i-" + ws, WorkspaceID: ws, Category: cat},
	}
	m.log = append(m.log, ev)
	return ev
}

// commit appends one event and publishes it.
func (m *memStore) commit(ws string, kind switchboard.EventKind) *switchboard.Event {
	ev := m.record(ws, kind, switchboard.CategoryCRM)
	m.broker.Publish(ev)
	return ev
}

// record appends one event without publishing it.
func (m *memStore) record(ws string, kind switchboard.EventKind, cat switchboard.Category) *switchboard.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appendLocked(ws, kind, cat)
}

// commitBatch commits one event per workspace in wss in one "transaction"
// and then publishes them concurrently, in any order, as concurrent commits
// of one bbolt batch return.
func (m *memStore) commitBatch(wss []string, kind switchboard.EventKind) {
	m.mu.Lock()
	evs := make([]*switchboard.Event, len(wss))
	for i, ws := range wss {
		evs[i] = m.appendLocked(ws, kind, switchboard.CategoryCRM)
	}
	m.mu.Unlock()
	rand.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	var wg sync.WaitGroup
	for _, ev := range evs {
		wg.Go(func() { m.broker.Publish(ev) })
	}
	wg.Wait()
}

// revisions lists the workspace's revisions in (after, upTo].
func (m *memStore) revisions(ws string, after, upTo uint64) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint64
	for _, ev := range m.log {
		if ev.WorkspaceID == ws && ev.Revision > after && ev.Revision <= upTo {
			out = append(out, ev.Revision)
		}
	}
	return out
}

func (m *memStore) latest() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return uint64(len(m.log))
}

func newBroker(t testing.TB, opts fanout.Options) (*fanout.Broker, *memStore) {
	t.Helper()
	m := &memStore{}
	m.broker = fanout.New(m, 0, opts)
	t.Cleanup(func() { m.broker.Close() })
	return m.broker, m
}

func mustSubscribe(t testing.TB, b *fanout.Broker, ctx context.Context, ws string, after *uint64) *switchboard.Subscription {
	t.Helper()
	sub, err := b.Subscribe(ctx, switchboard.SubscribeRequest{WorkspaceID: ws, AfterRevision: after})
	if err != nil {
		t.Fatalf("Subscribe(%s): %v", ws, err)
	}
	return sub
}

// subscribeWoken subscribes with a Notify that wakes the returned channel
// (of one slot: several notifications may wake it once).
func subscribeWoken(ctx context.Context, b *fanout.Broker, req switchboard.SubscribeRequest) (*switchboard.Subscription, <-chan struct{}, error) {
	wake := make(chan struct{}, 1)
	req.Notify = func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	sub, err := b.Subscribe(ctx, req)
	return sub, wake, err
}

func ptr(v uint64) *uint64 { return &v }

func event(ws string, rev uint64) *switchboard.Event {
	return &switchboard.Event{Revision: rev, WorkspaceID: ws, Kind: switchboard.EventConfigured,
		Integration: &switchboard.Integration{ID: "i-" + ws, WorkspaceID: ws, Category: switchboard.CategoryCRM}}
}

// pollEvery is how often the helpers below poll a subscription that has
// nothing queued; they stand for a consumer that a Notify would wake.
const pollEvery = 50 * time.Microsecond

// next takes sub's next event, polling until one is queued: ok is false
// once the subscription has ended and every event was taken. It fails the
// test when neither happens within timeout.
func next(t testing.TB, sub *switchboard.Subscription, timeout time.Duration) (ev *switchboard.Event, ok bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev, more := sub.Poll()
		switch {
		case ev != nil:
			return ev, true
		case !more:
			return nil, false
		case time.Now().After(deadline):
			t.Fatalf("no event and no end within %v", timeout)
		}
		time.Sleep(pollEvery)
	}
}

// events iterates over sub's events until it ends and every event was
// taken, polling while none is queued.
func events(sub *switchboard.Subscription) iter.Seq[*switchboard.Event] {
	return func(yield func(*switchboard.Event) bool) {
		for {
			ev, more := sub.Poll()
			switch {
			case ev != nil:
				if !yield(ev) {
					return
				}
				continue
			case !more:
				return
			}
			time.Sleep(pollEvery)
		}
	}
}

// receive reads n events from sub, failing after a timeout.
func receive(t testing.TB, sub *switchboard.Subscription, n int) []uint64 {
	t.Helper()
	var got []uint64
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		ev, ok := next(t, sub, time.Until(deadline))
		if !ok {
			t.Fatalf("subscription ended after %v (err %v); want %d events", got, sub.Err(), n)
		}
		got = append(got, ev.Revision)
	}
	return got
}

func expectNothing(t testing.TB, sub *switchboard.Subscription) {
	t.Helper()
	time.Sleep(20 * time.Millisecond)
	ev, more := sub.Poll()
	if ev != nil {
		t.Fatalf("got revision %d; want nothing yet", ev.Revision)
	}
	if !more {
		t.Fatalf("subscription ended (err %v); want it open", sub.Err())
	}
}

// drainClosed takes what is left in sub and waits for it to end.
func drainClosed(t testing.TB, sub *switchboard.Subscription) []uint64 {
	t.Helper()
	var got []uint64
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev, ok := next(t, sub, time.Until(deadline))
		if !ok {
			return got
		}
		got = append(got, ev.Revision)
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for r := from; r <= to; r++ {
		out = append(out, r)
	}
	return out
}

func TestPublishOutOfOrderIsDeliveredInOrder(t *testing.T) {
	b, _ := newBroker(t, fanout.Options{})
	sub := mustSubscribe(t, b, t.Context(), "a", nil)

	b.Publish(event("a", 3))
	b.Publish(event("a", 2))
	expectNothing(t, sub)
	if got := b.Stats().Pending; got != 2 {
		t.Fatalf("Pending = %d; want 2", got)
	}
	b.Publish(event("a", 1))
	if got := receive(t, sub, 3); !slices.Equal(got, seq(1, 3)) {
		t.Fatalf("got %v; want %v", got, seq(1, 3))
	}
	b.Publish(event("a", 5))
	b.Publish(event("a", 2)) // a duplicate is dropped
	b.Publish(event("a", 4))
	b.Publish(event("a", 5)) // so is one already delivered
	if got := receive(t, sub, 2); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("got %v; want [4 5]", got)
	}
	expectNothing(t, sub)
	if got := b.Stats(); got.Pending != 0 || got.Delivered != 5 {
		t.Fatalf("Stats = %+v; want Pending 0, Delivered 5", got)
	}
}

func TestPublishDeliversPerWorkspace(t *testing.T) {
	b, _ := newBroker(t, fanout.Options{QueueSize: 4})
	a := mustSubscribe(t, b, t.Context(), "a", nil)
	bb := mustSubscribe(t, b, t.Context(), "b", nil)
	// A stalled subscriber of c must not affect a or b.
	c := mustSubscribe(t, b, t.Context(), "c", nil)

	var wantA, wantB []uint64
	for rev := uint64(1); rev <= 29; rev++ {
		switch rev % 3 {
		case 0:
			b.Publish(event("a", rev))
			wantA = append(wantA, rev)
		case 1:
			b.Publish(event("b", rev))
			wantB = append(wantB, rev)
		default:
			b.Publish(event("c", rev))
		}
		if rev%3 == 2 {
			// Keep a and b within their queue of 4.
			if got := receive(t, a, len(wantA)); !slices.Equal(got, wantA) {
				t.Fatalf("a got %v; want %v", got, wantA)
			}
			if got := receive(t, bb, len(wantB)); !slices.Equal(got, wantB) {
				t.Fatalf("b got %v; want %v", got, wantB)
			}
			wantA, wantB = nil, nil
		}
	}
	if got := drainClosed(t, c); !slices.Equal(got, []uint64{2, 5, 8, 11}) {
		t.Fatalf("c got %v before its cutoff; want [2 5 8 11]", got)
	}
	var ce *switchboard.CutoffError
	if err := c.Err(); !errors.As(err, &ce) || ce.LastRevision != 11 {
		t.Fatalf("c.Err() = %v; want a cutoff at revision 11", err)
	}
	expectNothing(t, a)
	expectNothing(t, bb)
}

func TestMatchFiltersLiveAndReplay(t *testing.T) {
	b, m := newBroker(t, fanout.Options{ReplayPageSize: 2})
	crm := func(ev *switchboard.Event) bool { return ev.Integration.Category == switchboard.CategoryCRM }
	var want []uint64
	for i := range 10 {
		cat := switchboard.CategoryCRM
		if i%2 == 1 {
			cat = switchboard.CategoryMessaging
		}
		ev := m.record("a", switchboard.EventConfigured, cat)
		b.Publish(ev)
		if cat == switchboard.CategoryCRM {
			want = append(want, ev.Revision)
		}
	}
	sub, err := b.Subscribe(t.Context(), switchboard.SubscribeRequest{WorkspaceID: "a", AfterRevision: ptr(0), Match: crm})
	if err != nil {
		t.Fatal(err)
	}
	if got := receive(t, sub, len(want)); !slices.Equal(got, want) {
		t.Fatalf("replay got %v; want %v", got, want)
	}
	b.Publish(m.record("a", switchboard.EventConfigured, switchboard.CategoryMessaging))
	crmEv := m.record("a", switchboard.EventConfigured, switchboard.CategoryCRM)
	b.Publish(crmEv)
	if got := receive(t, sub, 1); got[0] != crmEv.Revision {
		t.Fatalf("live got %v; want [%d]", got, crmEv.Revision)
	}
	expectNothing(t, sub)
}

// A consumer that keeps resuming from CutoffError.LastRevision must see
// exactly the workspace's changelog after its starting revision, while
// other goroutines commit concurrently and publish out of order.
func TestReplayThenLiveHasNoGapAndNoDuplicate(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 16, ReplayPageSize: 7})
	wss := []string{"a", "b", "c"}
	for i := range 300 {
		m.commit(wss[i%len(wss)], switchboard.EventConfigured)
	}

	const end = switchboard.EventKind("END")
	var committers sync.WaitGroup
	for range 3 {
		committers.Go(func() {
			for range 200 {
				batch := make([]string, 1+rand.IntN(6))
				for i := range batch {
					batch[i] = wss[rand.IntN(len(wss))]
				}
				m.commitBatch(batch, switchboard.EventConfigured)
			}
		})
	}

	type result struct {
		ws      string
		after   uint64
		got     []uint64
		resumes int
	}
	results := make(chan result, 30)
	var consumers sync.WaitGroup
	for i := range 30 {
		consumers.Go(func() {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			ws := wss[i%len(wss)]
			start := uint64(rand.Int64N(int64(m.latest()) + 1))
			r := result{ws: ws, after: start}
			after := start
			slow := i%4 == 0
			for {
				ctx, cancel := context.WithCancel(t.Context())
				sub, err := b.Subscribe(ctx, switchboard.SubscribeRequest{WorkspaceID: ws, AfterRevision: &after})
				var early *switchboard.CutoffError
				if errors.As(err, &early) {
					// Cut off while the first page was being sent (a busy
					// machine): nothing was received, so resume from the
					// same revision.
					cancel()
					r.resumes++
					continue
				}
				if err != nil {
					cancel()
					t.Errorf("Subscribe(%s, %d): %v", ws, after, err)
					return
				}
				ended := false
				for ev := range events(sub) {
					r.got = append(r.got, ev.Revision)
					after = ev.Revision
					if ev.Kind == end {
						ended = true
						cancel()
						break
					}
					if slow && rand.IntN(8) == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				cancel()
				if ended {
					break
				}
				var ce *switchboard.CutoffError
				if err := sub.Err(); !errors.As(err, &ce) {
					t.Errorf("%s: ended with %v; want a CutoffError", ws, err)
					return
				}
				if ce.LastRevision != after {
					t.Errorf("%s: CutoffError.LastRevision = %d; want the last revision received, %d", ws, ce.LastRevision, after)
					return
				}
				r.resumes++
			}
			results <- r
		})
	}

	committers.Wait()
	for _, ws := range wss {
		m.commit(ws, end)
	}
	consumers.Wait()
	close(results)
	latest := m.latest()
	resumes := 0
	for r := range results {
		want := m.revisions(r.ws, r.after, latest)
		if d := diff(r.got, want); d != "" {
			t.Errorf("%s after %d: %s", r.ws, r.after, d)
		}
		resumes += r.resumes
	}
	t.Logf("%d revisions, %d resumes after cutoffs", latest, resumes)
}

// A replay reads events that are committed but not yet published; their
// later Publish must not deliver them twice.
func TestReplaySkipsEventsPublishedAfterIt(t *testing.T) {
	b, m := newBroker(t, fanout.Options{})
	b.Publish(m.record("a", switchboard.EventConfigured, switchboard.CategoryCRM))
	unpublished := []*switchboard.Event{
		m.record("a", switchboard.EventConfigured, switchboard.CategoryCRM),
		m.record("a", switchboard.EventConfigured, switchboard.CategoryCRM),
	}
	sub := mustSubscribe(t, b, t.Context(), "a", ptr(0))
	if got := receive(t, sub, 3); !slices.Equal(got, seq(1, 3)) {
		t.Fatalf("got %v; want [1 2 3]", got)
	}
	// Let the subscriber go live, then publish what it already has.
	waitFor(t, func() bool { return b.Stats().Replaying == 0 })
	b.Publish(unpublished[1])
	b.Publish(unpublished[0])
	expectNothing(t, sub)
	m.commit("a", switchboard.EventConfigured)
	if got := receive(t, sub, 1); got[0] != 4 {
		t.Fatalf("got %v; want [4]", got)
	}
}

func TestSubscribeReplayErrors(t *testing.T) {
	b, m := newBroker(t, fanout.Options{ReplayPageSize: 5})
	for range 100 {
		m.commit("a", switchboard.EventConfigured)
	}
	m.compact(50)

	for _, tc := range []struct {
		after uint64
		code  string
	}{
		{after: 10, code: switchboard.ECOMPACTED},
		{after: 101, code: switchboard.EINVALID},
	} {
		sub, err := b.Subscribe(t.Context(), switchboard.SubscribeRequest{WorkspaceID: "a", AfterRevision: ptr(tc.after)})
		if got := switchboard.ErrorCode(err); got != tc.code {
			t.Errorf("Subscribe(after %d) = %v, %v; want code %s", tc.after, sub, err, tc.code)
		}
	}
	if got := b.Stats().Subscribers; got != 0 {
		t.Fatalf("Subscribers = %d after failed subscribes; want 0", got)
	}

	// Compaction that overtakes a running replay ends it via Err.
	m.beforeRead = func(call int) {
		if call == 2 {
			m.compact(80)
		}
	}
	m.reads.Store(0)
	sub := mustSubscribe(t, b, t.Context(), "a", ptr(60))
	if got := drainClosed(t, sub); !slices.Equal(got, seq(61, 65)) {
		t.Fatalf("got %v before the error; want %v", got, seq(61, 65))
	}
	if got := switchboard.ErrorCode(sub.Err()); got != switchboard.ECOMPACTED {
		t.Fatalf("Err() = %v; want code %s", sub.Err(), switchboard.ECOMPACTED)
	}
	if got := b.Stats().Subscribers; got != 0 {
		t.Fatalf("Subscribers = %d; want 0", got)
	}
}

func TestStalledSubscriberIsCutOff(t *testing.T) {
	type cut struct {
		ws   string
		last uint64
	}
	cuts := make(chan cut, 4)
	b, m := newBroker(t, fanout.Options{
		QueueSize: 8,
		OnCutoff:  func(ws string, last uint64) { cuts <- cut{ws, last} },
	})
	stalled := mustSubscribe(t, b, t.Context(), "a", nil)
	reader := mustSubscribe(t, b, t.Context(), "a", nil)

	var got []uint64
	for range 10 {
		for range 4 {
			done := make(chan struct{})
			go func() { m.commit("a", switchboard.EventConfigured); close(done) }()
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Fatal("Publish blocked")
			}
		}
		got = append(got, receive(t, reader, 4)...)
	}
	if !slices.Equal(got, seq(1, 40)) {
		t.Fatalf("reader got %v; want 1..40", got)
	}
	if got := drainClosed(t, stalled); !slices.Equal(got, seq(1, 8)) {
		t.Fatalf("stalled subscriber got %v; want 1..8", got)
	}
	var ce *switchboard.CutoffError
	if err := stalled.Err(); !errors.As(err, &ce) || ce.LastRevision != 8 {
		t.Fatalf("Err() = %v; want a CutoffError at revision 8", err)
	}
	select {
	case c := <-cuts:
		if c != (cut{"a", 8}) {
			t.Fatalf("OnCutoff(%q, %d); want (\"a\", 8)", c.ws, c.last)
		}
	case <-time.After(time.Second):
		t.Fatal("OnCutoff not called")
	}
	if s := b.Stats(); s.Cutoffs != 1 || s.Subscribers != 1 {
		t.Fatalf("Stats = %+v; want 1 cutoff, 1 subscriber", s)
	}
}

// A subscriber whose replay is stalled holds live events up to QueueSize,
// then is cut off at the last revision it was sent.
func TestStalledReplayIsCutOff(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 8})
	for range 20 {
		m.commit("a", switchboard.EventConfigured)
	}
	sub := mustSubscribe(t, b, t.Context(), "a", ptr(0))
	// The replay has queued 8 and waits for room.
	waitFor(t, func() bool { return b.Stats().Delivered == 8 })
	for range 9 {
		m.commit("a", switchboard.EventConfigured)
	}
	if got := drainClosed(t, sub); !slices.Equal(got, seq(1, 8)) {
		t.Fatalf("got %v; want 1..8", got)
	}
	var ce *switchboard.CutoffError
	if err := sub.Err(); !errors.As(err, &ce) || ce.LastRevision != 8 {
		t.Fatalf("Err() = %v; want a CutoffError at revision 8", err)
	}
	// Resuming from there loses nothing.
	sub = mustSubscribe(t, b, t.Context(), "a", ptr(ce.LastRevision))
	if got := receive(t, sub, 21); !slices.Equal(got, seq(9, 29)) {
		t.Fatalf("resumed subscriber got %v; want 9..29", got)
	}
}

func TestContextEndClosesSubscription(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 4})
	for range 10 {
		m.commit("a", switchboard.EventConfigured)
	}

	ctx, cancel := context.WithCancel(t.Context())
	live := mustSubscribe(t, b, ctx, "a", nil)
	replaying := mustSubscribe(t, b, ctx, "a", ptr(0)) // blocked: nobody reads
	waitFor(t, func() bool { return b.Stats().Delivered == 4 })
	cancel()

	drainClosed(t, live)
	drainClosed(t, replaying)
	for name, sub := range map[string]*switchboard.Subscription{"live": live, "replaying": replaying} {
		if err := sub.Err(); err != nil {
			t.Errorf("%s: Err() = %v; want nil", name, err)
		}
	}
	waitFor(t, func() bool { return b.Stats().Subscribers == 0 })

	if _, err := b.Subscribe(ctx, switchboard.SubscribeRequest{WorkspaceID: "a"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with an ended ctx: %v; want context.Canceled", err)
	}
}

func TestCloseEndsSubscribers(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 4})
	for range 10 {
		m.commit("a", switchboard.EventConfigured)
	}
	live := mustSubscribe(t, b, t.Context(), "b", nil)
	replaying := mustSubscribe(t, b, t.Context(), "a", ptr(0))
	waitFor(t, func() bool { return b.Stats().Delivered == 4 })

	b.Close()
	drainClosed(t, live)
	drainClosed(t, replaying)
	for name, sub := range map[string]*switchboard.Subscription{"live": live, "replaying": replaying} {
		if got := switchboard.ErrorCode(sub.Err()); got != switchboard.EUNAVAILABLE {
			t.Errorf("%s: Err() = %v; want code %s", name, sub.Err(), switchboard.EUNAVAILABLE)
		}
	}
	if _, err := b.Subscribe(t.Context(), switchboard.SubscribeRequest{WorkspaceID: "a"}); switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("Subscribe after Close: %v; want code %s", err, switchboard.EUNAVAILABLE)
	}
	m.commit("a", switchboard.EventConfigured) // must not panic
	if got := b.Stats().Subscribers; got != 0 {
		t.Fatalf("Subscribers = %d; want 0", got)
	}
}

// Subscribers at rest in live mode cost no goroutine.
func TestLiveSubscribersHaveNoGoroutine(t *testing.T) {
	b, m := newBroker(t, fanout.Options{ReplayPageSize: 3})
	for range 10 {
		m.commit("a", switchboard.EventConfigured)
	}
	base := runtime.NumGoroutine()
	subs := make([]*switchboard.Subscription, 200)
	for i := range subs {
		var after *uint64
		if i%2 == 0 {
			after = ptr(0)
		}
		subs[i] = mustSubscribe(t, b, t.Context(), "a", after)
	}
	for i, sub := range subs {
		if i%2 == 0 {
			receive(t, sub, 10)
		}
	}
	waitFor(t, func() bool { return b.Stats().Replaying == 0 && runtime.NumGoroutine() <= base })
	m.commit("a", switchboard.EventConfigured)
	for _, sub := range subs {
		if got := receive(t, sub, 1); got[0] != 11 {
			t.Fatalf("got %v; want [11]", got)
		}
	}
}

// The gap valve: a revision that is never published stops delivery only
// until MaxPending events are waiting; then every subscriber is cut off so
// it resumes from the store.
func TestMissingRevisionIsSkippedPastMaxPending(t *testing.T) {
	cuts := make(chan uint64, 1)
	b, _ := newBroker(t, fanout.Options{MaxPending: 3, OnCutoff: func(_ string, last uint64) { cuts <- last }})
	sub := mustSubscribe(t, b, t.Context(), "a", nil)
	for rev := uint64(2); rev <= 4; rev++ {
		b.Publish(event("a", rev))
	}
	expectNothing(t, sub)
	b.Publish(event("a", 5))
	if got := drainClosed(t, sub); len(got) != 0 {
		t.Fatalf("got %v; want nothing before the cutoff", got)
	}
	var ce *switchboard.CutoffError
	if err := sub.Err(); !errors.As(err, &ce) || ce.LastRevision != 0 {
		t.Fatalf("Err() = %v; want a CutoffError at revision 0", err)
	}
	if got := <-cuts; got != 0 {
		t.Fatalf("OnCutoff got %d; want 0", got)
	}
	sub = mustSubscribe(t, b, t.Context(), "a", nil)
	b.Publish(event("a", 6))
	if got := receive(t, sub, 1); got[0] != 6 {
		t.Fatalf("got %v; want [6]", got)
	}
}

// Many subscribers come and go, replaying or live, while several
// goroutines commit. Every stream must be an exact slice of its
// workspace's changelog, and nothing may stay registered.
func TestHammer(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 32, ReplayPageSize: 10})
	wss := []string{"a", "b", "c", "d"}
	stop := make(chan struct{})
	var committers sync.WaitGroup
	for range 4 {
		committers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]string, 1+rand.IntN(4))
				for i := range batch {
					batch[i] = wss[rand.IntN(len(wss))]
				}
				m.commitBatch(batch, switchboard.EventConfigured)
			}
		})
	}

	type stream struct {
		ws    string
		after *uint64
		got   []uint64
	}
	streams := make(chan stream, 10000)
	var subscribers sync.WaitGroup
	for i := range 50 {
		subscribers.Go(func() {
			for range 20 {
				ws := wss[rand.IntN(len(wss))]
				var after *uint64
				if i%3 != 0 {
					after = ptr(uint64(rand.Int64N(int64(m.latest()) + 1)))
				}
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rand.IntN(5000))*time.Microsecond)
				sub, err := b.Subscribe(ctx, switchboard.SubscribeRequest{WorkspaceID: ws, AfterRevision: after})
				if err != nil {
					cancel()
					if ctx.Err() == nil {
						t.Errorf("Subscribe: %v", err)
					}
					continue
				}
				s := stream{ws: ws, after: after}
				for ev := range events(sub) {
					if ev.WorkspaceID != ws {
						t.Errorf("subscriber of %s got an event of %s", ws, ev.WorkspaceID)
					}
					s.got = append(s.got, ev.Revision)
					if rand.IntN(100) == 0 {
						cancel()
					}
				}
				cancel()
				var ce *switchboard.CutoffError
				if err := sub.Err(); err != nil && !errors.As(err, &ce) {
					t.Errorf("Err() = %v; want nil or a CutoffError", err)
				}
				streams <- s
			}
		})
	}
	subscribers.Wait()
	close(stop)
	committers.Wait()
	close(streams)

	n := 0
	for s := range streams {
		if len(s.got) == 0 {
			continue
		}
		n++
		from := s.got[0] - 1
		if s.after != nil {
			from = *s.after
		}
		if d := diff(s.got, m.revisions(s.ws, from, s.got[len(s.got)-1])); d != "" {
			t.Fatalf("%s after %d: %s", s.ws, from, d)
		}
	}
	waitFor(t, func() bool { return b.Stats().Subscribers == 0 })
	t.Logf("%d revisions, %d non-empty streams, stats %+v", m.latest(), n, b.Stats())
}

// diff describes the first difference between two revision streams.
func diff(got, want []uint64) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("event %d is revision %d; want %d (got %v... around it)", i, got[i], want[i], got[max(0, i-3):min(len(got), i+3)])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d events; want %d", len(got), len(want))
	}
	return ""
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkPublish10000Subscribers publishes to 10,000 subscribers of one
// workspace, consumed as the websocket transport consumes them: Notify
// queues a subscriber once on a ready list, and one reader per CPU polls
// the subscribers on it.
func BenchmarkPublish10000Subscribers(b *testing.B) {
	const n = 10000
	br, _ := newBroker(b, fanout.Options{QueueSize: 1024})
	type reader struct {
		sub    *switchboard.Subscription
		queued atomic.Bool
	}
	ready := make(chan *reader, n) // each reader is on it at most once
	for range n {
		r := &reader{}
		sub, err := br.Subscribe(b.Context(), switchboard.SubscribeRequest{WorkspaceID: "a", Notify: func() {
			if r.queued.CompareAndSwap(false, true) {
				ready <- r
			}
		}})
		if err != nil {
			b.Fatal(err)
		}
		r.sub = sub
	}
	var readers sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		readers.Go(func() {
			for r := range ready {
				r.queued.Store(false)
				for {
					if ev, _ := r.sub.Poll(); ev == nil {
						break
					}
				}
			}
		})
	}
	b.ResetTimer()
	for i := range b.N {
		br.Publish(event("a", uint64(i)+1))
	}
	b.StopTimer()
	s := br.Stats()
	b.ReportMetric(float64(s.Cutoffs), "cutoffs")
	br.Close() // the last Notify calls return before Close does
	close(ready)
	readers.Wait()
}

// Notify lets a consumer receive without a goroutine parked anywhere:
// after every notification, Poll finds what was queued, through replay,
// held events and live delivery, and reports the end after the last one.
func TestNotifyAccountsForEverySend(t *testing.T) {
	b, m := newBroker(t, fanout.Options{ReplayPageSize: 2})
	for range 5 {
		m.commit("a", switchboard.EventConfigured)
	}
	var mu sync.Mutex
	notified := 0
	ctx, cancel := context.WithCancel(t.Context())
	sub, err := b.Subscribe(ctx, switchboard.SubscribeRequest{WorkspaceID: "a", AfterRevision: ptr(0), Notify: func() {
		mu.Lock()
		notified++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	closed := false
	if sub.Poll == nil {
		t.Fatal("a notified subscription is polled: want Poll set")
	}
	take := func() {
		for {
			ev, more := sub.Poll()
			if ev == nil {
				closed = !more
				return
			}
			got = append(got, ev.Revision)
		}
	}
	waitFor(t, func() bool { take(); return len(got) == 5 })
	m.commit("a", switchboard.EventConfigured)
	waitFor(t, func() bool { take(); return len(got) == 6 })
	cancel()
	waitFor(t, func() bool { take(); return closed })
	mu.Lock()
	defer mu.Unlock()
	if want := 7; notified != want { // six events and the close
		t.Errorf("notified %d times; want %d", notified, want)
	}
	if fmt.Sprint(got) != fmt.Sprint([]uint64{1, 2, 3, 4, 5, 6}) {
		t.Errorf("revisions: got %v; want [1 2 3 4 5 6]", got)
	}
}

// pollAll takes what a polled subscription has queued; more is false once
// it has ended and everything was taken.
func pollAll(sub *switchboard.Subscription) (got []uint64, more bool) {
	for {
		ev, more := sub.Poll()
		if ev == nil {
			return got, more
		}
		got = append(got, ev.Revision)
	}
}

// A polled subscriber's queue grows on demand but keeps the bound: one
// more than QueueSize behind and it is cut off, naming its last revision,
// exactly as with a channel.
func TestPolledSubscriberIsCutOffAtTheBound(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 8})
	stalled, err := b.Subscribe(t.Context(), switchboard.SubscribeRequest{WorkspaceID: "a", Notify: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := b.Subscribe(t.Context(), switchboard.SubscribeRequest{WorkspaceID: "a", Notify: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for range 5 {
		for range 8 {
			m.commit("a", switchboard.EventConfigured)
		}
		page, more := pollAll(reader)
		if !more {
			t.Fatal("the reader that keeps up was ended")
		}
		got = append(got, page...)
	}
	if !slices.Equal(got, seq(1, 40)) {
		t.Fatalf("reader got %v; want 1..40", got)
	}
	if got, more := pollAll(stalled); more || !slices.Equal(got, seq(1, 8)) {
		t.Fatalf("stalled subscriber got %v (more %v); want 1..8 and the end", got, more)
	}
	var ce *switchboard.CutoffError
	if err := stalled.Err(); !errors.As(err, &ce) || ce.LastRevision != 8 {
		t.Fatalf("Err() = %v; want a CutoffError at revision 8", err)
	}
	if s := b.Stats(); s.Cutoffs != 1 || s.Subscribers != 1 {
		t.Fatalf("Stats = %+v; want 1 cutoff, 1 subscriber", s)
	}
}

// A polled replay longer than the bound is paced by the consumer: it waits
// for room instead of being cut off, and hands over everything in order.
func TestPolledReplayIsPacedByTheConsumer(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 3, ReplayPageSize: 4})
	for range 20 {
		m.commit("a", switchboard.EventConfigured)
	}
	notes := make(chan struct{}, 1)
	sub, err := b.Subscribe(t.Context(), switchboard.SubscribeRequest{WorkspaceID: "a", AfterRevision: ptr(0), Notify: func() {
		select {
		case notes <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for len(got) < 20 {
		select {
		case <-notes:
		case <-time.After(10 * time.Second):
			t.Fatalf("no notification after %v", got)
		}
		page, more := pollAll(sub)
		if !more {
			t.Fatalf("ended after %v: %v", got, sub.Err())
		}
		got = append(got, page...)
	}
	if !slices.Equal(got, seq(1, 20)) {
		t.Fatalf("got %v; want 1..20", got)
	}
	m.commit("a", switchboard.EventConfigured)
	waitFor(t, func() bool { page, _ := pollAll(sub); got = append(got, page...); return len(got) == 21 })
	if s := b.Stats(); s.Cutoffs != 0 || s.Replaying != 0 {
		t.Fatalf("Stats = %+v; want no cutoff and nobody replaying", s)
	}
}

// With EndByCall the subscription outlives its context and ends with End
// alone, live or still replaying; End twice is harmless.
func TestEndByCallEndsOnlyWithEnd(t *testing.T) {
	b, m := newBroker(t, fanout.Options{QueueSize: 8, ReplayPageSize: 2})
	for range 3 {
		m.commit("a", switchboard.EventConfigured)
	}
	for _, after := range []*uint64{nil, ptr(0)} {
		ctx, cancel := context.WithCancel(t.Context())
		notified := make(chan struct{}, 1)
		notify := func() {
			select {
			case notified <- struct{}{}:
			default:
			}
		}
		sub, err := b.Subscribe(ctx, switchboard.SubscribeRequest{WorkspaceID: "a", AfterRevision: after, Notify: notify, EndByCall: true})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if s := b.Stats(); s.Subscribers != 1 {
			t.Fatalf("after ctx ended: Stats = %+v; want the subscriber still there", s)
		}
		sub.End()
		sub.End()
		if s := b.Stats(); s.Subscribers != 0 {
			t.Fatalf("after End: Stats = %+v; want no subscriber", s)
		}
		for {
			ev, more := sub.Poll()
			if !more {
				break
			}
			if ev == nil {
				<-notified // a replay ends on its own goroutine
			}
		}
		if err := sub.Err(); err != nil {
			t.Fatalf("Err() = %v; want nil after End", err)
		}
	}
}
