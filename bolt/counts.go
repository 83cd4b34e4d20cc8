package bolt

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// meta/status_counts/<status> holds the number of integrations in each
// status, kept in the commit's own transaction, so a metric of
// integrations by status costs one read instead of a scan.
var bStatusCounts = []byte("status_counts")

// initStatusCounts creates the counters of a file written before they
// existed, by counting once.
func initStatusCounts(tx *bbolt.Tx) error {
	meta := tx.Bucket(bMeta)
	if meta.Bucket(bStatusCounts) != nil {
		return nil
	}
	counts, err := countStatuses(tx)
	if err != nil {
		return err
	}
	b, err := meta.CreateBucket(bStatusCounts)
	if err != nil {
		return err
	}
	for st, n := range counts {
		if err := b.Put([]byte(st), u64bytes(n)); err != nil {
			return err
		}
	}
	return nil
}

// countStatuses counts integrations by status the slow way.
func countStatuses(tx *bbolt.Tx) (map[switchboard.Status]uint64, error) {
	counts := map[switchboard.Status]uint64{}
	wss := tx.Bucket(bWorkspaces)
	if wss == nil {
		return counts, nil
	}
	err := wss.ForEachBucket(func(name []byte) error {
		ints := wss.Bucket(name).Bucket(bIntegrations)
		if ints == nil {
			return nil
		}
		return ints.ForEach(func(k, v []byte) error {
			var in struct{ Status switchboard.Status }
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("decode integration %s: %w", k, err)
			}
			counts[in.Status]++
			return nil
		})
	})
	return counts, err
}

// moveStatus updates the counters for one integration going from `from`
// ("" when it is new) to `to`.
func moveStatus(tx *bbolt.Tx, from, to switchboard.Status) error {
	if from == to {
		return nil
	}
	b := tx.Bucket(bMeta).Bucket(bStatusCounts)
	if from != "" {
		if n := u64(b.Get([]byte(from))); n > 0 {
			if err := b.Put([]byte(from), u64bytes(n-1)); err != nil {
				return err
			}
		}
	}
	if to != "" {
		return b.Put([]byte(to), u64bytes(u64(b.Get([]byte(to)))+1))
	}
	return nil
}

// StatusCounts returns how many integrations are in each status, across
// all workspaces.
func (s *Store) StatusCounts(ctx context.Context) (map[switchboard.Status]uint64, error) {
	counts := map[switchboard.Status]uint64{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bMeta).Bucket(bStatusCounts).ForEach(func(k, v []byte) error {
			counts[switchboard.Status(k)] = u64(v)
			return nil
		})
	})
	return counts, err
}
