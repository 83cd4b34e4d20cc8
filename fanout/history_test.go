package fanout_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/fanout"
	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

// boltLog is a real bbolt store with a broker that sees every commit
// published, as the gateway wires them.
type boltLog struct {
	t      testing.TB
	path   string
	opts   bolt.Options
	st     *bolt.Store
	broker *fanout.Broker
	bopts  fanout.Options
}

func newBoltLog(t testing.TB, opts bolt.Options, bopts fanout.Options) *boltLog {
	t.Helper()
	key, err := seal.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: key})
	if err != nil {
		t.Fatal(err)
	}
	opts.Keyring = kr
	l := &boltLog{t: t, path: filepath.Join(t.TempDir(), "switchboard.db"), opts: opts, bopts: bopts}
	l.open()
	t.Cleanup(func() { l.close() })
	return l
}

// open opens the store and starts a broker at its revision, as the
// gateway does at start-up.
func (l *boltLog) open() {
	l.t.Helper()
	st, err := bolt.Open(l.path, l.opts)
	if err != nil {
		l.t.Fatal(err)
	}
	rev, err := st.Revision(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	l.st, l.broker = st, fanout.New(st, rev, l.bopts)
}

func (l *boltLog) close() {
	if l.st == nil {
		return
	}
	l.broker.Close()
	l.st.Close()
	l.st, l.broker = nil, nil
}

// restart closes the broker and the store and opens them again.
func (l *boltLog) restart() {
	l.t.Helper()
	l.close()
	l.open()
}

// commitAt commits one event to ws (creating its integration the first
// time) stamped at, without publishing it.
func (l *boltLog) commitAt(ws string, at time.Time) *switchboard.Event {
	l.t.Helper()
	id := "int-" + ws
	ev, err := l.st.Commit(context.Background(), switchboard.Change{WorkspaceID: ws, IntegrationID: id, Create: true, At: at,
		Apply: func(cur *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			if cur == nil {
				return &switchboard.Integration{ID: id, WorkspaceID: ws, ProviderID: "hubspot", Category: switchboard.CategoryCRM, Status: switchboard.StatusConnected}, switchboard.EventCreated, nil
			}
			cur.SettingValues = map[string]string{"n": fmt.Sprint(cur.Revision)}
			return cur, switchboard.EventConfigured, nil
		}})
	if err != nil {
		l.t.Fatal(err)
	}
	return ev
}

// commit commits one event to ws and publishes it.
func (l *boltLog) commit(ws string) *switchboard.Event {
	ev := l.commitAt(ws, time.Now())
	l.broker.Publish(ev)
	return ev
}

// storeRevisions is what the store alone answers for a replay of ws after
// after: its revisions, or the error code.
func (l *boltLog) storeRevisions(ws string, after uint64) ([]uint64, string) {
	l.t.Helper()
	evs, err := l.st.EventsAfter(context.Background(), ws, after, 0)
	if err != nil {
		return nil, switchboard.ErrorCode(err)
	}
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.Revision)
	}
	return out, ""
}

// replay subscribes to ws after after and returns the revisions replayed
// up to the store's latest revision, or the error code of Subscribe.
func (l *boltLog) replay(ws string, after uint64) ([]uint64, string) {
	l.t.Helper()
	want, _ := l.storeRevisions(ws, after)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := l.broker.Subscribe(ctx, switchboard.SubscribeRequest{WorkspaceID: ws, AfterRevision: &after})
	if err != nil {
		return nil, switchboard.ErrorCode(err)
	}
	got := receive(l.t, sub, len(want))
	if len(want) > 0 && len(got) > 0 && got[len(got)-1] < want[len(want)-1] {
		l.t.Fatalf("replay of %s after %d ended at %d", ws, after, got[len(got)-1])
	}
	return got, ""
}

// pages returns the replay pages served from memory and from the store
// by fn.
func pages(b *fanout.Broker, fn func()) (memory, store uint64) {
	before := b.Stats()
	fn()
	after := b.Stats()
	return after.ReplayPagesFromMemory - before.ReplayPagesFromMemory, after.ReplayPagesFromStore - before.ReplayPagesFromStore
}

// checkReplay replays ws after each revision in afters and compares with
// the store's own answer; fromMemory says which of them the history must
// serve entirely (the others start with pages read from the store).
func checkReplay(t *testing.T, l *boltLog, ws string, afters []uint64, fromMemory func(after uint64) bool) {
	t.Helper()
	for _, after := range afters {
		want, wantCode := l.storeRevisions(ws, after)
		var got []uint64
		var code string
		mem, store := pages(l.broker, func() { got, code = l.replay(ws, after) })
		if code != wantCode || !slices.Equal(got, want) {
			t.Errorf("replay of %s after %d = %v %q; the store says %v %q", ws, after, got, code, want, wantCode)
		}
		if len(want) == 0 {
			continue
		}
		if fromMemory(after) {
			if mem == 0 || store > 0 {
				t.Errorf("replay of %s after %d: %d pages from memory, %d from the store; want all from memory", ws, after, mem, store)
			}
		} else if store == 0 {
			t.Errorf("replay of %s after %d: %d pages from memory, none from the store; want the store first", ws, after, mem)
		}
	}
}

func TestHistoryEdges(t *testing.T) {
	const keep = 10
	l := newBoltLog(t, bolt.Options{}, fanout.Options{HistoryEvents: keep, ReplayPageSize: 4})
	for range 30 {
		l.commit("a")
	}
	// Revisions 21..30 are kept: any replay after 20 or later comes from
	// memory (after 30 has nothing to serve), anything before from the
	// store.
	checkReplay(t, l, "a", []uint64{0, 1, 18, 19, 20, 21, 25, 26, 27, 29}, func(after uint64) bool { return after >= 20 })
	checkReplay(t, l, "a", []uint64{30}, func(uint64) bool { return false })
	if _, code := l.replay("a", 31); code != switchboard.EINVALID {
		t.Errorf("replay after 31 (ahead of the store): code %q; want %s", code, switchboard.EINVALID)
	}
	if got := l.broker.Stats().HistoryEvents; got != keep {
		t.Errorf("HistoryEvents = %d; want %d", got, keep)
	}
}

func TestHistoryEvictsAcrossWorkspaces(t *testing.T) {
	l := newBoltLog(t, bolt.Options{}, fanout.Options{HistoryEvents: 6, ReplayPageSize: 3})
	// a: 1..4, then b: 5..8. The bound of 6 keeps 3, 4 of a and 5..8 of b.
	for range 4 {
		l.commit("a")
	}
	for range 4 {
		l.commit("b")
	}
	checkReplay(t, l, "a", []uint64{0, 1, 2, 3, 4}, func(after uint64) bool { return after == 2 || after == 3 })
	checkReplay(t, l, "b", []uint64{0, 4, 5, 7}, func(uint64) bool { return true })
	// Two more in b push a out of the history: a is served by the store
	// until it has events again.
	l.commit("b")
	l.commit("b")
	checkReplay(t, l, "a", []uint64{0, 3, 4}, func(uint64) bool { return false })
	checkReplay(t, l, "b", []uint64{0, 4, 6, 9}, func(uint64) bool { return true })
	// a's next event is kept: a replay after 4 (the store has nothing
	// between 4 and 11) is served from memory, one from before is not.
	l.commit("a")
	checkReplay(t, l, "a", []uint64{0, 3, 4, 10}, func(after uint64) bool { return after >= 4 })
}

func TestHistoryBytesBound(t *testing.T) {
	const bound = 8 << 10
	l := newBoltLog(t, bolt.Options{}, fanout.Options{HistoryBytes: bound, ReplayPageSize: 50})
	for i := range 200 {
		l.commit(fmt.Sprintf("ws%d", i%7))
	}
	st := l.broker.Stats()
	if st.HistoryBytes > bound || st.HistoryBytes <= 0 {
		t.Fatalf("HistoryBytes = %d; want (0, %d]", st.HistoryBytes, bound)
	}
	if st.HistoryEvents < 5 || st.HistoryEvents >= 200 {
		t.Fatalf("HistoryEvents = %d under a bound of %d bytes; want some, not all", st.HistoryEvents, bound)
	}
	kept := uint64(200 - st.HistoryEvents)
	checkReplay(t, l, "ws3", []uint64{0, kept - 7, kept, 190}, func(after uint64) bool { return after >= kept })
}

func TestHistoryOff(t *testing.T) {
	l := newBoltLog(t, bolt.Options{}, fanout.Options{HistoryEvents: -1})
	for range 5 {
		l.commit("a")
	}
	for _, after := range []uint64{0, 2, 4} {
		want, _ := l.storeRevisions("a", after)
		if got, code := l.replay("a", after); code != "" || !slices.Equal(got, want) {
			t.Errorf("replay after %d = %v %q; want %v", after, got, code, want)
		}
	}
	if st := l.broker.Stats(); st.HistoryEvents != 0 || st.HistoryBytes != 0 || st.ReplayPagesFromMemory != 0 {
		t.Fatalf("history off: %+v", st)
	}
}

func TestHistoryAfterRestart(t *testing.T) {
	l := newBoltLog(t, bolt.Options{}, fanout.Options{ReplayPageSize: 4})
	for range 10 {
		l.commit("a")
	}
	l.restart()
	// Nothing before the restart is in memory: served by the store.
	checkReplay(t, l, "a", []uint64{0, 5, 9}, func(uint64) bool { return false })
	for range 5 {
		l.commit("a")
	}
	// The store's revision at start-up is where the history begins.
	checkReplay(t, l, "a", []uint64{0, 9, 10, 12, 14}, func(after uint64) bool { return after >= 10 && after < 15 })
}

func TestHistoryKeepsStoreCompaction(t *testing.T) {
	// The store keeps 5 events per workspace; the history keeps all of
	// them: a replay from before the store's compaction point is still
	// ECOMPACTED.
	l := newBoltLog(t, bolt.Options{ChangelogMaxEvents: 5}, fanout.Options{ReplayPageSize: 2})
	for range 12 {
		l.commit("a")
	}
	if _, code := l.replay("a", 3); code != switchboard.ECOMPACTED {
		t.Fatalf("replay after 3: code %q; want %s", code, switchboard.ECOMPACTED)
	}
	checkReplay(t, l, "a", []uint64{0, 6, 7, 8, 11}, func(after uint64) bool { return after >= 7 && after < 12 })

	// Age: events older than ChangelogMaxAge go at the next commit of
	// their workspace.
	l2 := newBoltLog(t, bolt.Options{ChangelogMaxAge: time.Hour}, fanout.Options{})
	old := time.Now().Add(-2 * time.Hour)
	for range 4 {
		l2.broker.Publish(l2.commitAt("b", old))
	}
	l2.commit("b") // drops 1..4 from the store
	checkReplay(t, l2, "b", []uint64{0, 2, 4}, func(after uint64) bool { return after == 4 })
	if _, code := l2.replay("b", 2); code != switchboard.ECOMPACTED {
		t.Fatalf("replay after 2: code %q; want %s", code, switchboard.ECOMPACTED)
	}
}

func TestHistoryWipe(t *testing.T) {
	l := newBoltLog(t, bolt.Options{}, fanout.Options{ReplayPageSize: 3})
	ctx := context.Background()
	for _, ws := range []string{"a", "b"} {
		if err := l.st.CreateWorkspace(ctx, &switchboard.Workspace{ID: ws, Name: ws, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		l.commit("a") // 1, 3, 5, 7, 9
		l.commit("b") // 2, 4, 6, 8, 10
	}
	wipe := func() uint64 {
		t.Helper()
		res, err := l.st.WipeWorkspace(ctx, "a", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 1 {
			t.Fatalf("wipe wrote %d events; want 1", len(res.Events))
		}
		l.broker.Publish(res.Events[0])
		return res.Events[0].Revision
	}
	wiped := wipe() // 11
	// a's 5 events before the wipe left memory; the wipe's event came in.
	if got := l.broker.Stats().HistoryEvents; got != 6 {
		t.Fatalf("HistoryEvents = %d after the wipe; want 6", got)
	}
	for _, after := range []uint64{0, 3, wiped - 2} {
		if _, code := l.replay("a", after); code != switchboard.ECOMPACTED {
			t.Errorf("replay of the wiped workspace after %d: code %q; want %s", after, code, switchboard.ECOMPACTED)
		}
	}
	checkReplay(t, l, "a", []uint64{wiped - 1}, func(uint64) bool { return true })
	checkReplay(t, l, "b", []uint64{0, 2, 9}, func(uint64) bool { return true })

	// A second wipe right after the first: the first one's event is gone
	// from the store, and from memory.
	wiped2 := wipe() // 12
	if got := l.broker.Stats().HistoryEvents; got != 6 {
		t.Fatalf("HistoryEvents = %d after the second wipe; want 6", got)
	}
	if _, code := l.replay("a", wiped-1); code != switchboard.ECOMPACTED {
		t.Errorf("replay after the first wipe: code %q; want %s", code, switchboard.ECOMPACTED)
	}
	l.commit("a")
	checkReplay(t, l, "a", []uint64{wiped2 - 1, wiped2}, func(uint64) bool { return true })
}

func TestHistoryEventNotYetPublished(t *testing.T) {
	// A commit whose Publish has not run yet is read from the store at the
	// end of the replay, as before.
	l := newBoltLog(t, bolt.Options{}, fanout.Options{})
	for range 5 {
		l.commit("a")
	}
	six := l.commitAt("a", time.Now()) // not published yet
	want := seq(3, 6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := mustSubscribe(t, l.broker, ctx, "a", ptr(2))
	if got := receive(t, sub, len(want)); !slices.Equal(got, want) {
		t.Fatalf("replay after 2 = %v; want %v", got, want)
	}
	// Once published, it is not sent again; the next one is.
	l.broker.Publish(six)
	l.commit("a")
	if got := receive(t, sub, 1); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("live after the replay = %v; want [7]", got)
	}
}

// TestHistoryReplayDuringPublish resumes subscribers of several
// workspaces from many revisions while commits go on, and checks that
// each receives its workspace's revisions without a gap or a duplicate.
// Run it with -race.
func TestHistoryReplayDuringPublish(t *testing.T) {
	l := newBoltLog(t, bolt.Options{}, fanout.Options{HistoryEvents: 150, ReplayPageSize: 7, QueueSize: 4096})
	wss := []string{"a", "b", "c"}
	for i := range 60 {
		l.commit(wss[i%3])
	}
	const extra = 300
	var wg sync.WaitGroup
	var mu sync.Mutex // commit and publish in revision order, as the service would
	for w := range 3 {
		wg.Go(func() {
			for i := range extra / 3 {
				mu.Lock()
				l.commit(wss[(i+w)%3])
				mu.Unlock()
			}
		})
	}
	type result struct {
		ws    string
		after uint64
		got   []uint64
		err   error
	}
	results := make(chan result, 64)
	var subs sync.WaitGroup
	for i := range 24 {
		subs.Go(func() {
			ws := wss[i%3]
			latest, err := l.st.Revision(context.Background())
			if err != nil {
				results <- result{ws: ws, err: err}
				return
			}
			after := min(uint64(i*9), latest)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sub, wake, err := subscribeWoken(ctx, l.broker, switchboard.SubscribeRequest{WorkspaceID: ws, AfterRevision: &after})
			if err != nil {
				results <- result{ws: ws, after: after, err: err}
				return
			}
			var got []uint64
			timeout := time.After(20 * time.Second)
			for {
				ev, more := sub.Poll()
				if ev == nil && more {
					select {
					case <-wake:
						continue
					case <-timeout:
						results <- result{ws, after, got, fmt.Errorf("timed out")}
						return
					}
				}
				if ev == nil {
					results <- result{ws, after, got, fmt.Errorf("closed: %v", sub.Err())}
					return
				}
				if ev.WorkspaceID != ws {
					results <- result{ws, after, got, fmt.Errorf("event %d of workspace %s", ev.Revision, ev.WorkspaceID)}
					return
				}
				got = append(got, ev.Revision)
				if ev.Revision > 60+extra {
					results <- result{ws, after, got, nil}
					return
				}
			}
		})
	}
	wg.Wait()
	for _, ws := range wss {
		l.commit(ws) // the last of each: 361, 362, 363
	}
	subs.Wait()
	close(results)
	for r := range results {
		if r.err != nil {
			t.Errorf("%s after %d: %v (got %v)", r.ws, r.after, r.err, r.got)
			continue
		}
		want, _ := l.storeRevisions(r.ws, r.after)
		want = want[:len(r.got)]
		if !slices.Equal(r.got, want) {
			t.Errorf("%s after %d: got %v; want %v", r.ws, r.after, r.got, want)
		}
	}
	if st := l.broker.Stats(); st.ReplayPagesFromMemory == 0 {
		t.Errorf("no replay page came from memory: %+v", st)
	}
}

func TestHistoryBoundedOverManyWorkspaces(t *testing.T) {
	const keep = 1000
	b, m := newBroker(t, fanout.Options{HistoryEvents: keep})
	for i := range 100000 {
		m.commit(fmt.Sprintf("ws%d", i), switchboard.EventConfigured)
	}
	st := b.Stats()
	if st.HistoryEvents != keep {
		t.Fatalf("HistoryEvents = %d over 100,000 workspaces; want %d", st.HistoryEvents, keep)
	}
	// Each kept event costs its estimate plus its workspace's entry; the
	// 99,000 workspaces whose events went cost nothing.
	if per := st.HistoryBytes / keep; per < 200 || per > 2000 {
		t.Fatalf("HistoryBytes = %d for %d events in as many workspaces (%d each)", st.HistoryBytes, keep, per)
	}
	for _, ws := range []string{"ws5", "ws99999"} {
		sub := mustSubscribe(t, b, t.Context(), ws, ptr(0))
		want := m.revisions(ws, 0, m.latest())
		if got := receive(t, sub, len(want)); !slices.Equal(got, want) {
			t.Fatalf("replay of %s = %v; want %v", ws, got, want)
		}
	}
}

func TestHistoryStartsOverAfterMissingRevision(t *testing.T) {
	b, m := newBroker(t, fanout.Options{MaxPending: 3, ReplayPageSize: 2})
	m.commit("a", switchboard.EventConfigured) // 1
	m.record("a", switchboard.EventConfigured, switchboard.CategoryCRM)
	for range 6 { // 3..8; past 3 pending the broker gives up on 2
		m.commit("a", switchboard.EventConfigured)
	}
	if got := b.Stats().Pending; got != 0 {
		t.Fatalf("Pending = %d; want 0 after giving up on revision 2", got)
	}
	// 2 was never delivered, so it is not in memory: a replay from before
	// it is read from the store and has it.
	sub := mustSubscribe(t, b, t.Context(), "a", ptr(0))
	if got := receive(t, sub, 8); !slices.Equal(got, seq(1, 8)) {
		t.Fatalf("replay = %v; want %v", got, seq(1, 8))
	}
	if st := b.Stats(); st.ReplayPagesFromStore == 0 {
		t.Fatalf("no replay page read from the store: %+v", st)
	}
}
