// Package fanout is Switchboard's in-process event broker: it hands every
// committed event to the subscribers of its workspace, in revision order,
// and replays the store's changelog for subscribers that resume from a
// revision, serving the recent part of it from memory (history.go).
//
// Each subscriber has a bounded queue, which its consumer polls
// (Subscription.Poll) after each notification (SubscribeRequest.Notify):
// a slice that grows only as the subscriber falls behind and is given back
// once drained, so an idle subscriber costs no queue memory. The publisher
// never waits for a subscriber: when a queue is full the subscriber is cut
// off (Poll reports the end once the queue is drained, and Err returns a
// *switchboard.CutoffError) and it resumes from the changelog with nothing
// lost.
package fanout

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/bont/switchboard/switchboard"
)

// Defaults for Options.
const (
	DefaultQueueSize      = 512
	DefaultReplayPageSize = 500
	DefaultMaxPending     = 10000
)

// EventSource is the part of switchboard.Store the broker replays from.
// EventsAfter must see every event whose Publish has started: the store
// commits before anyone publishes.
type EventSource interface {
	EventsAfter(ctx context.Context, workspaceID string, after uint64, limit int) ([]*switchboard.Event, error)
}

// Options tune a Broker. The zero value uses the defaults.
type Options struct {
	// QueueSize bounds each subscriber's queue, and the buffer that holds
	// live events while its replay runs (default 512). A subscriber that
	// falls that far behind is cut off.
	QueueSize int
	// ReplayPageSize is the limit passed to EventsAfter (default 500).
	ReplayPageSize int
	// MaxPending bounds the events held back while an earlier revision is
	// missing (default 10000). Committed revisions are contiguous, so a
	// missing one means a commit that was never published; past this bound
	// the broker stops waiting for it and cuts every subscriber off, so they
	// resume from the store, which has the truth.
	MaxPending int
	// OnCutoff, when set, is called in a goroutine of its own each time a
	// subscriber is cut off for falling behind (or by the MaxPending valve).
	OnCutoff func(workspaceID string, lastRevision uint64)
	// HistoryEvents and HistoryBytes bound the replay history: the most
	// recent delivered events, over all workspaces, kept in memory so that
	// a resume within them is served without reading the store (see
	// history.go). HistoryBytes bounds their estimated heap size. Zero
	// means DefaultHistoryEvents (50,000) and DefaultHistoryBytes
	// (32 MiB); a negative value of either turns the history off.
	HistoryEvents int
	HistoryBytes  int64
	// Logger receives warnings (events published twice or out of range,
	// the MaxPending valve). Nil discards them.
	Logger *slog.Logger
}

// Stats are counters since the broker started.
type Stats struct {
	Subscribers int    // currently registered, replaying or live
	Replaying   int    // of those, still replaying the changelog
	Delivered   uint64 // events enqueued to subscribers, replayed or live
	Cutoffs     uint64 // subscribers cut off for falling behind
	Pending     int    // published events waiting for an earlier revision

	HistoryEvents int   // events kept in the replay history
	HistoryBytes  int64 // their estimated size, in bytes
	// Replay pages served from the history, and read from the store
	// (they start before the history); empty ones are not counted.
	ReplayPagesFromMemory, ReplayPagesFromStore uint64
}

// Broker implements switchboard.Broker in memory. Its methods are safe for
// concurrent use.
type Broker struct {
	src  EventSource
	opts Options
	log  *slog.Logger
	hist *history // nil: no replay history

	mu         sync.Mutex
	next       uint64                        // next revision to deliver
	pending    map[uint64]*switchboard.Event // published, waiting for next
	workspaces map[string][]*subscriber      // registered subscribers by workspace
	closed     bool
	nsubs      int
	nreplaying int

	delivered atomic.Uint64
	cutoffs   atomic.Uint64
}

var _ switchboard.Broker = (*Broker)(nil)

// New returns a broker that replays from src. lastRevision is the store's
// latest revision when the broker starts: the first event it expects from
// Publish is lastRevision+1.
func New(src EventSource, lastRevision uint64, opts Options) *Broker {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.ReplayPageSize <= 0 {
		opts.ReplayPageSize = DefaultReplayPageSize
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var hist *history
	if opts.HistoryEvents >= 0 && opts.HistoryBytes >= 0 {
		if opts.HistoryEvents == 0 {
			opts.HistoryEvents = DefaultHistoryEvents
		}
		if opts.HistoryBytes == 0 {
			opts.HistoryBytes = DefaultHistoryBytes
		}
		hist = newHistory(opts.HistoryEvents, opts.HistoryBytes)
	}
	return &Broker{
		hist:       hist,
		src:        src,
		opts:       opts,
		log:        log,
		next:       lastRevision + 1,
		pending:    make(map[uint64]*switchboard.Event),
		workspaces: make(map[string][]*subscriber),
	}
}

// subscriber is one Subscribe call. Fields marked "mu" are guarded by the
// broker's mutex.
type subscriber struct {
	workspaceID string
	match       func(*switchboard.Event) bool
	notify      func() // nil, or called after each enqueue and after the end
	q           queue  // grown on demand, up to QueueSize

	// last is the last revision this subscriber has handled: enqueued, or
	// skipped by match. The replay goroutine writes it while replaying, the
	// publisher (under mu) once live.
	last atomic.Uint64

	idx    int                  // mu: position in workspaces[workspaceID]
	live   bool                 // mu: false while replaying; then the replay goroutine fills q
	held   []*switchboard.Event // mu: live events that arrived during replay
	done   bool                 // mu: unregistered; q is closed or about to be
	cutoff bool                 // mu: ended for falling behind
	err    error                // mu: why it ended, unless cutoff

	stopAfter    func() bool        // releases the context.AfterFunc
	cancelReplay context.CancelFunc // nil for live-only subscribers
}

var errShutdown = switchboard.Errorf(switchboard.EUNAVAILABLE, "server is shutting down")

// Publish hands over a committed event. It never blocks: it delivers
// every event that is now in order (holding back those that arrived before
// an earlier revision) to the subscribers of the event's workspace, and
// cuts off the ones whose queue is full.
func (b *Broker) Publish(ev *switchboard.Event) {
	if ev == nil {
		return
	}
	var cut []cutoffNote
	b.mu.Lock()
	switch {
	case b.closed:
	case ev.Revision < b.next:
		b.log.Warn("fanout: dropping event at or below the delivered revision",
			"revision", ev.Revision, "next", b.next)
	case ev.Revision > b.next:
		if _, dup := b.pending[ev.Revision]; dup {
			b.log.Warn("fanout: dropping event published twice", "revision", ev.Revision)
			break
		}
		b.pending[ev.Revision] = ev
		if len(b.pending) > b.opts.MaxPending {
			cut = b.skipGapLocked(cut)
		}
	default:
		cut = b.deliverLocked(ev, cut)
		b.next++
		cut = b.drainPendingLocked(cut)
	}
	b.mu.Unlock()
	b.notifyCutoffs(cut)
}

func (b *Broker) drainPendingLocked(cut []cutoffNote) []cutoffNote {
	for len(b.pending) > 0 {
		ev, ok := b.pending[b.next]
		if !ok {
			break
		}
		delete(b.pending, b.next)
		cut = b.deliverLocked(ev, cut)
		b.next++
	}
	return cut
}

// skipGapLocked gives up on the missing revision(s) before the lowest
// pending one. Live subscribers may have missed the skipped revisions, so
// all of them are cut off and resume from the store.
func (b *Broker) skipGapLocked(cut []cutoffNote) []cutoffNote {
	low := uint64(0)
	for rev := range b.pending {
		if low == 0 || rev < low {
			low = rev
		}
	}
	b.log.Error("fanout: revisions were never published; cutting off all subscribers",
		"from", b.next, "to", low-1, "pending", len(b.pending))
	for _, subs := range b.workspaces {
		for len(subs) > 0 {
			s := subs[len(subs)-1]
			cut = append(cut, cutoffNote{s.workspaceID, s.last.Load()})
			b.cutoffLocked(s)
			subs = subs[:len(subs)-1]
		}
	}
	b.next = low
	if b.hist != nil {
		// The skipped revisions are not in the history: it starts over.
		b.hist.reset()
	}
	return b.drainPendingLocked(cut)
}

type cutoffNote struct {
	workspaceID  string
	lastRevision uint64
}

func (b *Broker) notifyCutoffs(cut []cutoffNote) {
	if len(cut) == 0 {
		return
	}
	for _, c := range cut {
		b.log.Info("fanout: subscriber cut off", "workspace", c.workspaceID, "lastRevision", c.lastRevision)
	}
	if f := b.opts.OnCutoff; f != nil {
		go func() {
			for _, c := range cut {
				f(c.workspaceID, c.lastRevision)
			}
		}()
	}
}

// deliverLocked offers ev to its workspace's subscribers. Cutting a
// subscriber off removes it from the slice being walked, so those are
// collected and ended after the walk.
func (b *Broker) deliverLocked(ev *switchboard.Event, cut []cutoffNote) []cutoffNote {
	if b.hist != nil {
		// Under mu, before any subscriber sees it: a replay that starts
		// after a subscriber registered finds in the history every event
		// delivered before, and holds the ones delivered after.
		b.hist.add(ev)
	}
	subs := b.workspaces[ev.WorkspaceID]
	var slow []*subscriber
	for _, s := range subs {
		if s.live && ev.Revision <= s.last.Load() {
			// The replay read it from the store before it was published.
			continue
		}
		if s.match != nil && !s.match(ev) {
			if s.live {
				s.last.Store(ev.Revision)
			}
			continue
		}
		if !s.live {
			if len(s.held) >= b.opts.QueueSize {
				slow = append(slow, s)
				continue
			}
			s.held = append(s.held, ev)
			continue
		}
		if !s.offer(ev, b.opts.QueueSize) {
			slow = append(slow, s)
			continue
		}
		s.last.Store(ev.Revision)
		b.delivered.Add(1)
		s.notified()
	}
	for _, s := range slow {
		cut = append(cut, cutoffNote{s.workspaceID, s.last.Load()})
		b.cutoffLocked(s)
	}
	return cut
}

func (b *Broker) cutoffLocked(s *subscriber) {
	if s.done {
		return
	}
	b.cutoffs.Add(1)
	s.cutoff = true
	b.endLocked(s, nil)
}

// endLocked unregisters s. A live subscriber's queue is closed here; a
// replaying one's replay is cancelled and its goroutine closes the queue,
// since it may be waiting to push to it.
func (b *Broker) endLocked(s *subscriber, err error) {
	if s.done {
		return
	}
	s.done = true
	s.err = err
	s.held = nil
	subs := b.workspaces[s.workspaceID]
	last := len(subs) - 1
	subs[s.idx] = subs[last]
	subs[s.idx].idx = s.idx
	subs[last] = nil
	if last == 0 {
		delete(b.workspaces, s.workspaceID)
	} else {
		b.workspaces[s.workspaceID] = subs[:last]
	}
	b.nsubs--
	if !s.live {
		b.nreplaying--
	}
	if s.stopAfter != nil {
		s.stopAfter()
	}
	if s.live {
		s.close()
		s.notified()
	} else {
		s.cancelReplay()
	}
}

func (s *subscriber) notified() {
	if s.notify != nil {
		s.notify()
	}
}

// offer enqueues ev unless the queue holds bound events already.
func (s *subscriber) offer(ev *switchboard.Event, bound int) bool {
	s.q.mu.Lock()
	defer s.q.mu.Unlock()
	return s.q.pushLocked(ev, bound)
}

// close ends the queue: Poll reports the end once it has handed out what
// is queued.
func (s *subscriber) close() {
	s.q.mu.Lock()
	s.q.closed = true
	s.q.mu.Unlock()
}

// keepCap is the capacity a drained queue keeps, so that a subscriber
// receiving now and then does not allocate for every event while an idle
// one holds almost nothing.
const keepCap = 4

// queue is a subscriber's queue: events in items[head:].
type queue struct {
	mu     sync.Mutex
	items  []*switchboard.Event
	head   int
	closed bool
	space  chan struct{} // the replay waits on it for room; Poll closes it
	wake   int           // once at most this many are queued
}

func (q *queue) pushLocked(ev *switchboard.Event, bound int) bool {
	if len(q.items)-q.head >= bound {
		return false
	}
	if q.head > 0 && len(q.items) == cap(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, ev)
	return true
}

func (q *queue) poll() (*switchboard.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return nil, !q.closed
	}
	ev := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		if cap(q.items) > keepCap {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
	}
	if q.space != nil && len(q.items)-q.head <= q.wake {
		close(q.space)
		q.space = nil
	}
	return ev, true
}

// push is the replay's blocking enqueue: it waits for room or for ctx.
// A full queue wakes the replay once it has drained to half its bound, not
// at every event taken, so that the consumer does not pay a wake-up (and
// the replay a park) per event.
func (q *queue) push(ctx context.Context, ev *switchboard.Event, bound int) bool {
	for {
		q.mu.Lock()
		if q.pushLocked(ev, bound) {
			q.mu.Unlock()
			return true
		}
		if q.space == nil {
			q.space = make(chan struct{})
			q.wake = bound / 2
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return false
		}
	}
}

// Subscribe registers a subscriber for req.WorkspaceID.
//
// With req.AfterRevision nil it streams live events from now on. Otherwise
// it replays the changelog after *req.AfterRevision, paced by the consumer,
// and then streams live events, with no gap and no duplicate: the
// subscriber is registered first, live events that arrive during the replay
// are held (up to QueueSize, or it is cut off) and sent after it, skipping
// any revision the replay already sent.
//
// An error reading the first replay page (ECOMPACTED, EINVALID, ...) is
// returned from Subscribe; a later one ends the subscription and is
// returned by Err. When ctx ends (without EndByCall) or End is called, the
// subscription ends and Err returns nil. After Close, Subscribe fails with
// EUNAVAILABLE.
func (b *Broker) Subscribe(ctx context.Context, req switchboard.SubscribeRequest) (*switchboard.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscriber{
		workspaceID: req.WorkspaceID,
		match:       req.Match,
		notify:      req.Notify,
		live:        req.AfterRevision == nil,
	}
	var rctx context.Context
	if !s.live {
		parent := ctx
		if req.EndByCall {
			// The replay ends with End (endLocked cancels it), not ctx.
			parent = context.WithoutCancel(ctx)
		}
		rctx, s.cancelReplay = context.WithCancel(parent)
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		if s.cancelReplay != nil {
			s.cancelReplay()
		}
		return nil, errShutdown
	}
	if s.live {
		s.last.Store(b.next - 1)
	} else {
		s.last.Store(*req.AfterRevision)
	}
	subs := b.workspaces[s.workspaceID]
	s.idx = len(subs)
	b.workspaces[s.workspaceID] = append(subs, s)
	b.nsubs++
	if !s.live {
		b.nreplaying++
	}
	if s.live && !req.EndByCall {
		// Set under mu: endLocked reads it.
		s.stopAfter = context.AfterFunc(ctx, func() { b.end(s, nil) })
	}
	b.mu.Unlock()

	sub := &switchboard.Subscription{Poll: s.q.poll, Err: func() error { return b.errOf(s) }, End: func() { b.end(s, nil) }}
	if s.live {
		return sub, nil
	}

	first, err := b.eventsAfter(rctx, s.workspaceID, *req.AfterRevision, b.opts.ReplayPageSize)
	if err != nil {
		b.mu.Lock()
		wasDone := s.done
		b.endLocked(s, nil)
		b.mu.Unlock()
		if wasDone && ctx.Err() == nil {
			// Close or a cutoff raced the first page.
			return nil, b.errOf(s)
		}
		return nil, err
	}
	b.mu.Lock()
	if !s.done && !req.EndByCall {
		s.stopAfter = context.AfterFunc(ctx, func() { b.end(s, nil) })
	}
	b.mu.Unlock()
	go b.replay(rctx, s, first)
	return sub, nil
}

func (b *Broker) end(s *subscriber, err error) {
	b.mu.Lock()
	b.endLocked(s, err)
	b.mu.Unlock()
}

func (b *Broker) errOf(s *subscriber) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.cutoff {
		return &switchboard.CutoffError{LastRevision: s.last.Load()}
	}
	return s.err
}

// replay sends page and the pages after it into s's queue, then the events held
// meanwhile, and switches s to live. It is the only goroutine a subscriber
// ever has, and it exits when the subscriber goes live or ends.
func (b *Broker) replay(ctx context.Context, s *subscriber, page []*switchboard.Event) {
	var err error
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = nil // ended by ctx, Close or a cutoff: those set the reason
		}
		b.mu.Lock()
		wasLive := s.live
		if !wasLive {
			b.endLocked(s, err)
		}
		b.mu.Unlock()
		if !wasLive {
			s.close()
			s.notified()
		}
		s.cancelReplay()
	}()

	for {
		for _, ev := range page {
			if !b.send(ctx, s, ev) {
				err = ctx.Err()
				return
			}
		}
		if len(page) < b.opts.ReplayPageSize {
			break
		}
		page, err = b.eventsAfter(ctx, s.workspaceID, page[len(page)-1].Revision, b.opts.ReplayPageSize)
		if err != nil {
			return
		}
	}

	for {
		b.mu.Lock()
		if s.done {
			b.mu.Unlock()
			return
		}
		held := s.held
		s.held = nil
		if len(held) == 0 {
			s.live = true
			b.nreplaying--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, ev := range held {
			if !b.send(ctx, s, ev) {
				err = ctx.Err()
				return
			}
		}
	}
}

// send is the replay's blocking send: it skips what s has already handled
// and what match refuses, and gives up when ctx ends.
func (b *Broker) send(ctx context.Context, s *subscriber, ev *switchboard.Event) bool {
	if ev.Revision <= s.last.Load() {
		return true
	}
	if s.match != nil && !s.match(ev) {
		s.last.Store(ev.Revision)
		return true
	}
	if !s.q.push(ctx, ev, b.opts.QueueSize) {
		return false
	}
	s.last.Store(ev.Revision)
	b.delivered.Add(1)
	s.notified()
	return true
}

// Close ends every subscriber; their Err returns EUNAVAILABLE. Later
// Subscribe calls fail with EUNAVAILABLE and Publish does nothing.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, subs := range b.workspaces {
		for len(subs) > 0 {
			s := subs[len(subs)-1]
			subs = subs[:len(subs)-1]
			b.endLocked(s, errShutdown)
		}
	}
	clear(b.pending)
	if b.hist != nil {
		b.hist.reset()
	}
	return nil
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Stats{
		Subscribers: b.nsubs,
		Replaying:   b.nreplaying,
		Delivered:   b.delivered.Load(),
		Cutoffs:     b.cutoffs.Load(),
		Pending:     len(b.pending),
	}
	if h := b.hist; h != nil {
		h.mu.Lock()
		st.HistoryEvents, st.HistoryBytes = h.events, h.bytes
		st.ReplayPagesFromMemory, st.ReplayPagesFromStore = h.hits, h.misses
		h.mu.Unlock()
	}
	return st
}
