package fanout_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/fanout"
	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

// BenchmarkReplay10000 is a subscriber resuming 10,000 events behind:
// each op subscribes after revision 0 to a workspace whose changelog (in
// a real bbolt file) holds 10,000 events, and receives them all. ns/op
// is the time to replay 10,000 events. The events were committed before
// the broker started (as after a restart), so the replay history is empty
// and every page is read from bbolt and decoded;
// BenchmarkReplay10000Memory is the same replay served from the history.
//
//	go test -run '^$' -bench BenchmarkReplay10000 ./fanout
func BenchmarkReplay10000(b *testing.B) {
	st := replayStore(b)
	fillReplayStore(b, st, nil)
	rev, err := st.Revision(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	br := fanout.New(st, rev, fanout.Options{})
	defer br.Close()
	benchReplay(b, br, false)
}

// BenchmarkReplay10000Memory is BenchmarkReplay10000 with a broker that
// saw the events published (the gateway's case when a subscriber resumes
// within recent history): the pages come from its replay history, and
// bbolt only answers each page's first event.
func BenchmarkReplay10000Memory(b *testing.B) {
	st := replayStore(b)
	br := fanout.New(st, 0, fanout.Options{})
	defer br.Close()
	fillReplayStore(b, st, br.Publish)
	benchReplay(b, br, true)
}

const replayEvents = 10000

// replayStore opens an empty bbolt store.
func replayStore(b *testing.B) *bolt.Store {
	key, err := seal.NewRandomKey()
	if err != nil {
		b.Fatal(err)
	}
	kr, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: key})
	if err != nil {
		b.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(b.TempDir(), "switchboard.db"), bolt.Options{Keyring: kr, ChangelogMaxEvents: replayEvents})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// fillReplayStore commits replayEvents events to workspace "ws";
// publish, when set, sees each committed event.
func fillReplayStore(b *testing.B, st *bolt.Store, publish func(*switchboard.Event)) {
	const events = replayEvents
	if publish == nil {
		publish = func(*switchboard.Event) {}
	}
	ctx := context.Background()
	ev, err := st.Commit(ctx, switchboard.Change{WorkspaceID: "ws", IntegrationID: "int1", Create: true,
		Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			return &switchboard.Integration{ID: "int1", WorkspaceID: "ws", ProviderID: "hubspot", Category: switchboard.CategoryCRM, Status: switchboard.StatusConnected}, switchboard.EventCreated, nil
		}})
	if err != nil {
		b.Fatal(err)
	}
	publish(ev)
	// Commits in parallel so DB.Batch groups them (setup, not measured).
	sem := make(chan struct{}, 256)
	errs := make(chan error, events)
	for i := range events - 1 {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			v := fmt.Sprint(i)
			ev, err := st.Commit(ctx, switchboard.Change{WorkspaceID: "ws", IntegrationID: "int1",
				Apply: func(c *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
					c.SettingValues = map[string]string{"n": v}
					return c, switchboard.EventConfigured, nil
				}})
			if err == nil {
				publish(ev)
			}
			errs <- err
		}()
	}
	for range events - 1 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

func benchReplay(b *testing.B, br *fanout.Broker, fromMemory bool) {
	const events = replayEvents
	ctx := context.Background()
	before := br.Stats()
	b.ResetTimer()
	for range b.N {
		sctx, cancel := context.WithCancel(ctx)
		sub, wake, err := subscribeWoken(sctx, br, switchboard.SubscribeRequest{WorkspaceID: "ws", AfterRevision: ptr(0)})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for n < events {
			ev, more := sub.Poll()
			if ev != nil {
				n++
				continue
			}
			if !more {
				break
			}
			<-wake
		}
		cancel()
		if n != events {
			b.Fatalf("replayed %d events; want %d", n, events)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/replay")
	after := br.Stats()
	mem := after.ReplayPagesFromMemory - before.ReplayPagesFromMemory
	if fromMemory != (mem > 0) {
		b.Fatalf("%d replay pages served from memory; want them from memory: %v", mem, fromMemory)
	}
}
