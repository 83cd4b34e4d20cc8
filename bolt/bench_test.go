package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

// BenchmarkCommitParallel is the durable-mutation path below GraphQL:
// concurrent Commits (each one read-modify-write of an integration, its
// changelog entry and the global revision, through DB.Batch, acknowledged
// after fsync), 64 goroutines per CPU, each on one of 20 integrations.
//
//	go test -run '^$' -bench BenchmarkCommitParallel -cpu 2 ./bolt
func BenchmarkCommitParallel(b *testing.B) {
	key, err := seal.NewRandomKey()
	if err != nil {
		b.Fatal(err)
	}
	kr, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: key})
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(filepath.Join(b.TempDir(), "switchboard.db"), Options{Keyring: kr})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const integrations = 20
	for i := range integrations {
		if _, err := s.Commit(ctx, createChange("ws1", fmt.Sprintf("int%d", i), fmt.Sprintf("p%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			v := strconv.FormatInt(i, 10)
			_, err := s.Commit(ctx, updateChange("ws1", fmt.Sprintf("int%d", i%integrations), switchboard.EventConfigured, func(in *switchboard.Integration) {
				in.SettingValues = map[string]string{"sync_interval_minutes": v}
			}))
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
