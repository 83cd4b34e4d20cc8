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
// is the time to replay 10,000 events.
//
//	go test -run '^$' -bench BenchmarkReplay10000 ./fanout
func BenchmarkReplay10000(b *testing.B) {
	const events = 10000
	key, err := seal.NewRandomKey()
	if err != nil {
		b.Fatal(err)
	}
	kr, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: key})
	if err != nil {
		b.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(b.TempDir(), "switchboard.db"), bolt.Options{Keyring: kr, ChangelogMaxEvents: events})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Commit(ctx, switchboard.Change{WorkspaceID: "ws", IntegrationID: "int1", Create: true,
		Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			return &switchboard.Integration{ID: "int1", WorkspaceID: "ws", ProviderID: "hubspot", Category: switchboard.CategoryCRM, Status: switchboard.StatusConnected}, switchboard.EventCreated, nil
		}}); err != nil {
		b.Fatal(err)
	}
	// Commits in parallel so DB.Batch groups them (setup, not measured).
	sem := make(chan struct{}, 256)
	errs := make(chan error, events)
	for i := range events - 1 {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			v := fmt.Sprint(i)
			_, err := st.Commit(ctx, switchboard.Change{WorkspaceID: "ws", IntegrationID: "int1",
				Apply: func(c *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
					c.SettingValues = map[string]string{"n": v}
					return c, switchboard.EventConfigured, nil
				}})
			errs <- err
		}()
	}
	for range events - 1 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	rev, err := st.Revision(ctx)
	if err != nil {
		b.Fatal(err)
	}
	br := fanout.New(st, rev, fanout.Options{})
	defer br.Close()
	b.ResetTimer()
	for range b.N {
		sctx, cancel := context.WithCancel(ctx)
		sub := mustSubscribe(b, br, sctx, "ws", ptr(0))
		n := 0
		for range sub.C {
			if n++; n == events {
				break
			}
		}
		cancel()
		if n != events {
			b.Fatalf("replayed %d events; want %d", n, events)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/replay")
}
