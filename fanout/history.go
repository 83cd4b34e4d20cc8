package fanout

import (
	"context"
	"sort"
	"sync"
	"unsafe"

	"github.com/bont/switchboard/switchboard"
)

// The replay history: the most recent delivered events, kept in memory so
// that a subscriber resuming within them is replayed without reading and
// decoding the store's changelog.
//
// It holds every event the broker delivers, in revision order, up to
// Options.HistoryEvents events and Options.HistoryBytes estimated bytes
// over all workspaces; past either bound the oldest event (of any
// workspace) goes. A workspace whose events have all gone costs nothing.
//
// It is a cache of the store, never the authority: each replay page still
// asks the store for its first event (EventsAfter with limit 1), so that
// ECOMPACTED, EINVALID and an unknown workspace are answered by the store
// exactly as before, and the page comes from memory only when the first
// kept event after the requested revision is the store's first one.
// Otherwise (the range starts before the history: evicted, or from before
// a restart) the whole page is read from the store.
//
// That check is enough because a workspace's kept events never have a
// hole: the history holds every event of the workspace from its oldest
// kept one up to the broker's delivered revision. Events are added in
// revision order as they are delivered; eviction takes a workspace's
// oldest; a wipe drops all of the workspace's earlier events; and when the
// broker gives up on a missing revision (MaxPending) the history starts
// over. So if the store's first event after the requested revision is the
// first kept one, the store's events up to the delivered revision are the
// kept ones. Events committed but not delivered yet are not in the
// history; a page that reaches its end is completed from the store, as a
// page read from the store would be.

// Defaults for the history's bounds (Options.HistoryEvents, HistoryBytes).
const (
	DefaultHistoryEvents = 50000
	DefaultHistoryBytes  = 32 << 20
)

// Estimated fixed costs, in bytes: the two slots an event takes (its
// workspace's queue and the eviction order, each with slack for growth),
// and a workspace's entry (map slot, struct, queue header).
const (
	slotBytes      = 2*int64(unsafe.Sizeof((*switchboard.Event)(nil))) + 2*int64(unsafe.Sizeof(orderEntry{}))
	workspaceBytes = 160
)

type history struct {
	maxEvents int
	maxBytes  int64

	mu        sync.Mutex
	workspace map[string]*wsHistory
	order     fifo[orderEntry] // one entry per event added, oldest first
	events    int              // events kept
	bytes     int64            // their estimated size, and the workspaces'

	hits, misses uint64 // replay pages served from memory, from the store
}

// wsHistory is one workspace's kept events, oldest first.
type wsHistory struct {
	id  string
	evs fifo[*switchboard.Event]
}

// orderEntry names the workspace of an event added: eviction drops that
// workspace's oldest event if it is still the one of revision rev (a wipe
// may have dropped it already).
type orderEntry struct {
	ws  *wsHistory
	rev uint64
}

func newHistory(maxEvents int, maxBytes int64) *history {
	return &history{
		maxEvents: maxEvents,
		maxBytes:  maxBytes,
		workspace: make(map[string]*wsHistory),
	}
}

// add keeps ev, the next delivered event, and evicts the oldest events
// beyond the bounds. The broker calls it in revision order.
func (h *history) add(ev *switchboard.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.workspace[ev.WorkspaceID]
	if w == nil {
		w = &wsHistory{id: ev.WorkspaceID}
		h.workspace[ev.WorkspaceID] = w
		h.bytes += workspaceBytes + int64(len(w.id))
	}
	if ev.Kind == switchboard.EventWorkspaceWiped {
		// A wipe replaces the workspace's changelog by its WORKSPACE_WIPED
		// events (consecutive revisions and one time, one transaction):
		// the history before the first of them goes from memory too.
		if n := w.evs.len(); n == 0 || !sameWipe(w.evs.at(n-1), ev) {
			for w.evs.len() > 0 {
				h.forget(w.evs.pop())
			}
		}
	}
	w.evs.push(ev)
	h.order.push(orderEntry{w, ev.Revision})
	h.events++
	h.bytes += eventBytes(ev)
	for h.events > 0 && (h.events > h.maxEvents || h.bytes > h.maxBytes) {
		h.evictOldest()
	}
}

// sameWipe reports whether ev is the WORKSPACE_WIPED event that follows
// prev in one wipe.
func sameWipe(prev, ev *switchboard.Event) bool {
	return prev.Kind == switchboard.EventWorkspaceWiped && prev.Revision == ev.Revision-1 && prev.At.Equal(ev.At)
}

func (h *history) forget(ev *switchboard.Event) {
	h.events--
	h.bytes -= eventBytes(ev)
}

func (h *history) evictOldest() {
	for h.order.len() > 0 {
		e := h.order.pop()
		w := e.ws
		if w.evs.len() == 0 || w.evs.at(0).Revision != e.rev {
			continue // dropped by a wipe
		}
		h.forget(w.evs.pop())
		if w.evs.len() == 0 && h.workspace[w.id] == w {
			delete(h.workspace, w.id)
			h.bytes -= workspaceBytes + int64(len(w.id))
		}
		return
	}
}

// reset forgets every event.
func (h *history) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.workspace)
	h.order = fifo[orderEntry]{}
	h.events, h.bytes = 0, 0
}

// after returns up to limit kept events of workspace ws with a revision
// above after.
func (h *history) after(ws string, after uint64, limit int) []*switchboard.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.workspace[ws]
	if w == nil {
		return nil
	}
	n := w.evs.len()
	i := sort.Search(n, func(i int) bool { return w.evs.at(i).Revision > after })
	k := min(n-i, limit)
	if k <= 0 {
		return nil
	}
	evs := make([]*switchboard.Event, k)
	copy(evs, w.evs.items[w.evs.head+i:])
	return evs
}

// eventsAfter is the replay's EventsAfter: from the history when it holds
// the page, else from the store (see the comment at the top of the file).
func (b *Broker) eventsAfter(ctx context.Context, ws string, after uint64, limit int) ([]*switchboard.Event, error) {
	h := b.hist
	if h == nil {
		return b.src.EventsAfter(ctx, ws, after, limit)
	}
	probe, err := b.src.EventsAfter(ctx, ws, after, 1)
	if err != nil {
		return nil, err
	}
	if len(probe) == 0 {
		// Nothing after the revision: the page is empty.
		return probe, nil
	}
	page := h.after(ws, after, limit)
	if len(page) == 0 || page[0].Revision != probe[0].Revision {
		h.count(false)
		return b.src.EventsAfter(ctx, ws, after, limit)
	}
	h.count(true)
	if len(page) == limit {
		return page, nil
	}
	// The page reached the delivered revision: the store may hold events
	// committed since, not yet delivered.
	last := after
	if len(page) > 0 {
		last = page[len(page)-1].Revision
	}
	more, err := b.src.EventsAfter(ctx, ws, last, limit-len(page))
	if err != nil {
		return nil, err
	}
	return append(page, more...), nil
}

func (h *history) count(fromMemory bool) {
	h.mu.Lock()
	if fromMemory {
		h.hits++
	} else {
		h.misses++
	}
	h.mu.Unlock()
}

// eventBytes estimates the heap an event holds: its structs, strings,
// slices and map. Events are immutable once published, so the estimate
// made when an event is added is the one subtracted when it goes.
func eventBytes(ev *switchboard.Event) int64 {
	const (
		strHdr  = int64(unsafe.Sizeof(""))
		timePtr = int64(unsafe.Sizeof(switchboard.Event{}.At)) + 8
		mapHdr  = 48
		mapSlot = 2*strHdr + 16 // key and value headers, and the map's per-entry overhead
	)
	n := slotBytes + int64(unsafe.Sizeof(*ev)) + int64(len(ev.WorkspaceID)+len(ev.Kind))
	if ev.PreviousStatus != nil {
		n += strHdr
	}
	in := ev.Integration
	if in == nil {
		return n
	}
	n += int64(unsafe.Sizeof(*in)) + int64(len(in.ID)+len(in.WorkspaceID)+len(in.ProviderID)+len(in.Category)+
		len(in.OwnerUserID)+len(in.Status)+len(in.StatusReason)+len(in.StatusMessage)+len(in.SyncCheckpoint))
	if a := in.Account; a != nil {
		n += int64(unsafe.Sizeof(*a)) + int64(len(a.ID)+len(a.Name)+len(a.Email))
	}
	for _, p := range in.AccountHistory {
		n += int64(unsafe.Sizeof(p)) + int64(len(p.Account.ID)+len(p.Account.Name)+len(p.Account.Email))
		if p.Until != nil {
			n += timePtr
		}
	}
	for _, s := range in.GrantedScopes {
		n += strHdr + int64(len(s))
	}
	for _, s := range in.MissingScopes {
		n += strHdr + int64(len(s))
	}
	if in.ConnectedAt != nil {
		n += timePtr
	}
	if in.LastSyncedAt != nil {
		n += timePtr
	}
	if in.SettingValues != nil {
		n += mapHdr
		for k, v := range in.SettingValues {
			n += mapSlot + int64(len(k)+len(v))
		}
	}
	return n
}

// fifo is a queue on a slice: items[head:], compacted as it is pushed.
type fifo[T any] struct {
	items []T
	head  int
}

func (f *fifo[T]) len() int   { return len(f.items) - f.head }
func (f *fifo[T]) at(i int) T { return f.items[f.head+i] }
func (f *fifo[T]) push(v T) {
	if f.head > 0 && len(f.items) == cap(f.items) && f.head >= len(f.items)/2 {
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items = f.items[:n]
		f.head = 0
	}
	f.items = append(f.items, v)
}

func (f *fifo[T]) pop() T {
	v := f.items[f.head]
	var zero T
	f.items[f.head] = zero
	f.head++
	if f.head == len(f.items) {
		f.items = f.items[:0]
		f.head = 0
	}
	return v
}
