package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

func TestCommitCreateAndUpdate(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	s := mustOpenWith(t, filepath.Join(t.TempDir(), "db"), Options{
		Keyring: mustKeyring(t, "k1"),
		Now:     func() time.Time { return at },
	})

	ev := mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	if got, want := ev.Revision, uint64(1); got != want {
		t.Fatalf("got revision %v; want %v", got, want)
	}
	if ev.PreviousStatus != nil {
		t.Fatalf("got previous status %v on create; want nil", *ev.PreviousStatus)
	}
	if got, want := ev.Kind, switchboard.EventCreated; got != want {
		t.Fatalf("got kind %v; want %v", got, want)
	}
	if got, want := ev.Integration.CreatedAt, at.UTC(); !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("got CreatedAt %v; want %v in UTC", got, want)
	}
	if got, want := ev.At, at.UTC(); !got.Equal(want) {
		t.Fatalf("got At %v; want %v", got, want)
	}

	ev2 := mustCommit(t, s, connectChange("ws1", "int1", "alice", nil))
	if got, want := ev2.Revision, uint64(2); got != want {
		t.Fatalf("got revision %v; want %v", got, want)
	}
	if ev2.PreviousStatus == nil || *ev2.PreviousStatus != switchboard.StatusDisconnected {
		t.Fatalf("got previous status %v; want %v", ev2.PreviousStatus, switchboard.StatusDisconnected)
	}
	if got, want := ev2.Integration.Revision, uint64(2); got != want {
		t.Fatalf("got integration revision %v; want %v", got, want)
	}

	in, err := s.FindIntegrationByID(ctx, "ws1", "int1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := in.Status, switchboard.StatusConnected; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if got, want := in.Revision, uint64(2); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if got, want := in.Account.Name, "alice"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	byProv, err := s.FindIntegrationByProvider(ctx, "ws1", "hubspot", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := byProv.ID, "int1"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if got, want := mustRevision(t, s), uint64(2); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}

	// Not found without Create.
	_, err = s.Commit(ctx, updateChange("ws1", "nope", "X", func(*switchboard.Integration) {}))
	wantCode(t, err, switchboard.ENOTFOUND)
	_, err = s.FindIntegrationByID(ctx, "ws1", "nope")
	wantCode(t, err, switchboard.ENOTFOUND)
	_, err = s.FindIntegrationByProvider(ctx, "ws1", "salesforce", "")
	wantCode(t, err, switchboard.ENOTFOUND)

	// Apply returning nil writes nothing.
	ev, err = s.Commit(ctx, switchboard.Change{WorkspaceID: "ws1", IntegrationID: "int1",
		Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			return nil, "", nil
		}})
	if ev != nil || err != nil {
		t.Fatalf("got %v, %v; want nil, nil", ev, err)
	}
	if got, want := mustRevision(t, s), uint64(2); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
}

func TestCommitConcurrentRevisionsAreContiguous(t *testing.T) {
	s := mustOpen(t)
	const goroutines, perG = 64, 50
	workspaces := []string{"ws-a", "ws-b", "ws-c", "ws-d"}

	var mu sync.Mutex
	var got []uint64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws := workspaces[g%len(workspaces)]
			id := "int-" + strconv.Itoa(g)
			ctx := context.Background()
			for i := range perG {
				c := updateChange(ws, id, switchboard.EventConfigured, func(in *switchboard.Integration) {
					if in.SettingValues == nil {
						in.SettingValues = map[string]string{}
					}
					in.SettingValues["n"] = strconv.Itoa(i)
				})
				if i == 0 {
					c = createChange(ws, id, "p-"+strconv.Itoa(g))
				}
				ev, err := s.Commit(ctx, c)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d commit %d: %w", g, i, err)
					return
				}
				mu.Lock()
				got = append(got, ev.Revision)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	const n = goroutines * perG
	slices.Sort(got)
	if len(got) != n {
		t.Fatalf("got %d revisions; want %d", len(got), n)
	}
	for i, rev := range got {
		if rev != uint64(i+1) {
			t.Fatalf("got revision %d at position %d; want %d (revisions must be 1..N exactly once)", rev, i, i+1)
		}
	}
	if got, want := mustRevision(t, s), uint64(n); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}

	var logged []uint64
	for _, ws := range workspaces {
		evs := mustEvents(t, s, ws, 0, 0)
		for _, ev := range evs {
			if ev.WorkspaceID != ws || ev.Integration.WorkspaceID != ws {
				t.Fatalf("got event of workspace %s in %s's changelog", ev.WorkspaceID, ws)
			}
			if ev.Integration.Revision != ev.Revision {
				t.Fatalf("got snapshot revision %d in event %d; want equal", ev.Integration.Revision, ev.Revision)
			}
		}
		logged = append(logged, revisions(evs)...)
	}
	slices.Sort(logged)
	if !slices.Equal(logged, got) {
		t.Fatalf("changelog revisions differ from committed revisions: got %d events; want %d", len(logged), len(got))
	}
}

func TestCommitExpectedRevision(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))     // 1
	mustCommit(t, s, connectChange("ws1", "int1", "alice", nil)) // 2

	stale := updateChange("ws1", "int1", switchboard.EventConfigured, func(in *switchboard.Integration) {
		in.SettingValues = map[string]string{"k": "stale"}
	})
	stale.ExpectedRevision = 1
	_, err := s.Commit(ctx, stale)
	wantCode(t, err, switchboard.ECONFLICT)
	if msg := switchboard.ErrorMessage(err); !containsAll(msg, "expected revision 1", "current revision 2") {
		t.Fatalf("got message %q; want it to name both revisions", msg)
	}

	fresh := stale
	fresh.ExpectedRevision = 2
	ev := mustCommit(t, s, fresh)
	if got, want := ev.Revision, uint64(3); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}

	// Expecting a revision of an integration that does not exist yet.
	c := createChange("ws1", "int2", "salesforce")
	c.ExpectedRevision = 7
	_, err = s.Commit(ctx, c)
	wantCode(t, err, switchboard.ECONFLICT)
}

func TestCommitDuplicateProviderOwner(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	_, err := s.Commit(ctx, createChange("ws1", "int2", "hubspot"))
	wantCode(t, err, switchboard.ECONFLICT)
	if _, err := s.FindIntegrationByID(ctx, "ws1", "int2"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Fatalf("got %v; want the conflicting integration not written", err)
	}
	if got, want := mustRevision(t, s), uint64(1); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}

	// Personal integrations: one per provider and owner.
	mustCommit(t, s, createOwnedChange("ws1", "mail-u1", "google", "u1"))
	mustCommit(t, s, createOwnedChange("ws1", "mail-u2", "google", "u2"))
	_, err = s.Commit(ctx, createOwnedChange("ws1", "mail-u1b", "google", "u1"))
	wantCode(t, err, switchboard.ECONFLICT)

	// Another workspace may have its own.
	mustCommit(t, s, createChange("ws2", "int2", "hubspot"))

	// Create on an existing id goes to Apply with the current state.
	_, err = s.Commit(ctx, createChange("ws1", "int1", "hubspot"))
	if !errors.Is(err, errExists) {
		t.Fatalf("got %v; want %v", err, errExists)
	}
}

func TestCommitApplyErrorWritesNothing(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", "alice", &switchboard.TokenSet{AccessToken: "a1"}))

	boom := errors.New("boom")
	c := switchboard.Change{
		WorkspaceID:   "ws1",
		IntegrationID: "int1",
		Apply: func(cur *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			cur.Status = switchboard.StatusError // a change to the private copy only
			return nil, "", boom
		},
		Tokens:   &switchboard.TokenSet{AccessToken: "a2"},
		Teardown: &switchboard.TeardownJob{Generation: 1},
	}
	_, err := s.Commit(ctx, c)
	if !errors.Is(err, boom) {
		t.Fatalf("got %v; want %v", err, boom)
	}
	if got, want := mustRevision(t, s), uint64(2); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	in, err := s.FindIntegrationByID(ctx, "ws1", "int1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := in.Status, switchboard.StatusConnected; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if got, want := len(mustEvents(t, s, "ws1", 0, 0)), 2; got != want {
		t.Fatalf("got %v events; want %v", got, want)
	}
	tok, err := s.FindTokens(ctx, "ws1", "int1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.AccessToken, "a1"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	jobs, err := s.DueTeardowns(ctx, time.Now().Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 0 {
		t.Fatalf("got %d teardown jobs; want 0", len(jobs))
	}
}

// A batch in which another change fails is rolled back and run again, so
// Apply runs twice; the committed result must be as if it ran once.
func TestCommitApplyRunningTwiceIsHarmless(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	before := mustRevision(t, s)

	// Exactly two calls per batch, and no timer: the batch runs when the
	// failing change joins the good one.
	s.db.MaxBatchSize = 2
	s.db.MaxBatchDelay = time.Minute

	var applies atomic.Int32
	good := switchboard.Change{
		WorkspaceID:   "ws1",
		IntegrationID: "int1",
		Apply: func(cur *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			applies.Add(1)
			n, _ := strconv.Atoi(cur.SettingValues["n"])
			if cur.SettingValues == nil {
				cur.SettingValues = map[string]string{}
			}
			cur.SettingValues["n"] = strconv.Itoa(n + 1)
			return cur, switchboard.EventConfigured, nil
		},
	}
	boom := errors.New("boom")
	bad := switchboard.Change{
		WorkspaceID:   "ws1",
		IntegrationID: "int1",
		Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			return nil, "", boom
		},
	}

	// The rerun happens when the good change is first in the batch; a
	// slow scheduler may reverse the order, so try a few times.
	commits, rerun := 0, false
	for attempt := 0; attempt < 5 && !rerun; attempt++ {
		applies.Store(0)
		goodErr := make(chan error, 1)
		go func() {
			_, err := s.Commit(ctx, good)
			goodErr <- err
		}()
		time.Sleep(100 * time.Millisecond) // let the good change join the batch first
		if _, err := s.Commit(ctx, bad); !errors.Is(err, boom) {
			t.Fatalf("got %v; want %v", err, boom)
		}
		select {
		case err := <-goodErr:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("good commit did not finish")
		}
		commits++
		rerun = applies.Load() >= 2
	}
	if !rerun {
		t.Fatalf("got Apply run once per commit in every attempt; want a batch retry to run it twice")
	}

	if got, want := mustRevision(t, s), before+uint64(commits); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	in, err := s.FindIntegrationByID(ctx, "ws1", "int1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := in.SettingValues["n"], strconv.Itoa(commits); got != want {
		t.Fatalf("got n=%v; want %v (each commit applied once)", got, want)
	}
	if got, want := len(mustEvents(t, s, "ws1", 0, 0)), 1+commits; got != want {
		t.Fatalf("got %v events; want %v", got, want)
	}
}

func TestRetentionByCount(t *testing.T) {
	ctx := context.Background()
	s := mustOpenWith(t, filepath.Join(t.TempDir(), "db"), Options{
		Keyring:            mustKeyring(t, "k1"),
		ChangelogMaxEvents: 5,
	})
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, createChange("ws2", "other", "hubspot")) // revision 2, another workspace
	for range 7 {
		mustCommit(t, s, updateChange("ws1", "int1", switchboard.EventConfigured, func(*switchboard.Integration) {}))
	}
	// ws1 has revisions 1, 3..9; the oldest three (1, 3, 4) are dropped.
	for _, after := range []uint64{0, 1, 3} {
		_, err := s.EventsAfter(ctx, "ws1", after, 0)
		wantCode(t, err, switchboard.ECOMPACTED)
		if msg := switchboard.ErrorMessage(err); !containsAll(msg, "efetch") {
			t.Fatalf("got message %q; want it to tell the client to refetch", msg)
		}
	}
	if got, want := revisions(mustEvents(t, s, "ws1", 4, 0)), []uint64{5, 6, 7, 8, 9}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	if got, want := revisions(mustEvents(t, s, "ws1", 7, 0)), []uint64{8, 9}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	// The other workspace is not compacted by ws1's commits.
	if got, want := revisions(mustEvents(t, s, "ws2", 0, 0)), []uint64{2}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
}

func TestRetentionByAge(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := mustOpenWith(t, filepath.Join(t.TempDir(), "db"), Options{
		Keyring:         mustKeyring(t, "k1"),
		ChangelogMaxAge: 24 * time.Hour,
		Now:             func() time.Time { return now },
	})
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))     // 1
	mustCommit(t, s, connectChange("ws1", "int1", "alice", nil)) // 2
	now = now.Add(12 * time.Hour)
	mustCommit(t, s, updateChange("ws1", "int1", switchboard.EventSynced, func(*switchboard.Integration) {})) // 3
	if got, want := revisions(mustEvents(t, s, "ws1", 0, 0)), []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}

	// Now 1 and 2 are 25h old, 3 is 13h old.
	now = now.Add(13 * time.Hour)
	mustCommit(t, s, updateChange("ws1", "int1", switchboard.EventSynced, func(*switchboard.Integration) {})) // 4
	_, err := s.EventsAfter(ctx, "ws1", 1, 0)
	wantCode(t, err, switchboard.ECOMPACTED)
	if got, want := revisions(mustEvents(t, s, "ws1", 2, 0)), []uint64{3, 4}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}

	// Even when every older event is expired, the newest stays.
	now = now.Add(72 * time.Hour)
	mustCommit(t, s, updateChange("ws1", "int1", switchboard.EventSynced, func(*switchboard.Integration) {})) // 5
	if got, want := revisions(mustEvents(t, s, "ws1", 4, 0)), []uint64{5}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	_, err = s.EventsAfter(ctx, "ws1", 3, 0)
	wantCode(t, err, switchboard.ECOMPACTED)
}

func TestEventsAfterPagination(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	for range 9 {
		mustCommit(t, s, updateChange("ws1", "int1", switchboard.EventSynced, func(*switchboard.Integration) {}))
	}
	var pages [][]uint64
	after := uint64(0)
	for {
		evs := mustEvents(t, s, "ws1", after, 3)
		if len(evs) == 0 {
			break
		}
		pages = append(pages, revisions(evs))
		after = evs[len(evs)-1].Revision
	}
	want := [][]uint64{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10}}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("got %v; want %v", pages, want)
	}

	_, err := s.EventsAfter(ctx, "ws1", 11, 10)
	wantCode(t, err, switchboard.EINVALID)
	// At the latest revision: nothing yet, not an error.
	if got := mustEvents(t, s, "ws1", 10, 10); len(got) != 0 {
		t.Fatalf("got %v; want none", revisions(got))
	}
	// A workspace that does not exist has no events.
	if got := mustEvents(t, s, "nobody", 0, 10); got == nil || len(got) != 0 {
		t.Fatalf("got %v; want an empty list", got)
	}
}

func TestWorkspaceScoping(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	// The same integration id and provider in two workspaces.
	mustCommit(t, s, createChange("A", "int1", "hubspot"))
	mustCommit(t, s, connectChange("A", "int1", "alice", &switchboard.TokenSet{AccessToken: "tokA"}))
	mustCommit(t, s, createChange("B", "int1", "hubspot"))
	mustCommit(t, s, createChange("B", "int2", "slack"))

	listA, err := s.FindIntegrations(ctx, "A", switchboard.IntegrationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	listB, err := s.FindIntegrations(ctx, "B", switchboard.IntegrationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(listA), 1; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if got, want := len(listB), 2; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	for _, in := range listB {
		if in.WorkspaceID != "B" || in.Status != switchboard.StatusDisconnected {
			t.Fatalf("got %+v in B's list; want only B's integrations", in)
		}
	}
	if got, want := listB[0].ID+","+listB[1].ID, "int1,int2"; got != want {
		t.Fatalf("got %v; want %v (ordered by ID)", got, want)
	}
	connected := switchboard.StatusConnected
	if got, err := s.FindIntegrations(ctx, "B", switchboard.IntegrationFilter{Status: &connected}); err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want no connected integrations in B", got, err)
	}

	for _, ev := range mustEvents(t, s, "B", 0, 0) {
		if ev.WorkspaceID != "B" {
			t.Fatalf("got event %d of %s in B's changelog", ev.Revision, ev.WorkspaceID)
		}
	}
	if got, want := revisions(mustEvents(t, s, "B", 0, 0)), []uint64{3, 4}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	_, err = s.FindTokens(ctx, "B", "int1", 1)
	wantCode(t, err, switchboard.ENOTFOUND)
	if got, err := s.FindIntegrations(ctx, "C", switchboard.IntegrationFilter{}); err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want none", got, err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestEventAtReadsTheStoredLayout(t *testing.T) {
	at := time.Date(2026, 11, 27, 5, 6, 7, 891011121, time.UTC)
	st := switchboard.StatusConnected
	data, err := json.Marshal(&switchboard.Event{Revision: 4711, At: at, WorkspaceID: "ws", Kind: switchboard.EventConfigured,
		Integration: &switchboard.Integration{ID: "i", UpdatedAt: at.Add(time.Hour)}, PreviousStatus: &st})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]byte{data, []byte(`{"Kind":"x","At":"2026-11-27T05:06:07.891011121Z","Revision":4711}`)} {
		got, err := eventAt(v)
		if err != nil || !got.Equal(at) {
			t.Errorf("eventAt(%s) = %v, %v; want %v", v, got, err, at)
		}
	}
	if _, err := eventAt([]byte(`{"Revision":1,"At":"not a time"}`)); err == nil {
		t.Error("eventAt accepted a bad time")
	}
}
