package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Report is what Verify found in a data file.
type Report struct {
	Revision     uint64
	Workspaces   int
	Integrations int
	Events       int
	// Problems lists every inconsistency found; empty means the file is
	// sound.
	Problems []string
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks a data file that no process holds open (a stopped
// gateway's, or a backup): bbolt's own page-level check, then that state,
// changelog and revision agree — what a crash must never break:
//   - the global revision is the newest event anywhere (retention never
//     drops a workspace's newest event), and no event is newer;
//   - every workspace's changelog count matches its entries;
//   - every integration's latest change is in the changelog (unless
//     compacted) and that event's snapshot is the integration's state;
//   - the provider index and the integrations agree.
//
// It needs no key: it reads nothing sealed.
func Verify(path string) (*Report, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("data file %s is in use by another switchboard process; stop it, or take a backup through it", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	r := &Report{}
	err = db.View(func(tx *bbolt.Tx) error { return verifyTx(tx, r) })
	return r, err
}

// Verify runs the same checks as the package-level Verify on the open
// store. Like Check, it holds the write lock while it runs (bbolt's page
// check is not safe beside a writer), so commits wait.
func (s *Store) Verify() (*Report, error) {
	r := &Report{}
	errDone := errors.New("rolled back")
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := verifyTx(tx, r); err != nil {
			return err
		}
		return errDone
	})
	if err != errDone {
		return nil, err
	}
	return r, nil
}

func verifyTx(tx *bbolt.Tx, r *Report) error {
	for err := range tx.Check() {
		r.Problems = append(r.Problems, "bbolt: "+err.Error())
	}
	meta := tx.Bucket(bMeta)
	if meta == nil {
		r.Problems = append(r.Problems, "no meta bucket: not a switchboard data file")
		return nil
	}
	r.Revision = u64(meta.Get(kRevision))
	wss := tx.Bucket(bWorkspaces)
	if wss == nil {
		return nil
	}
	var newest uint64
	err := wss.ForEachBucket(func(name []byte) error {
		r.Workspaces++
		n, err := verifyWorkspace(wss.Bucket(name), string(name), r)
		newest = max(newest, n)
		return err
	})
	if err != nil {
		return err
	}
	if b := meta.Bucket(bStatusCounts); b != nil {
		actual, err := countStatuses(tx)
		if err != nil {
			return err
		}
		err = b.ForEach(func(k, v []byte) error {
			if n := actual[switchboard.Status(k)]; n != u64(v) {
				r.Problems = append(r.Problems, fmt.Sprintf("status count of %s says %d; there are %d", k, u64(v), n))
			}
			delete(actual, switchboard.Status(k))
			return nil
		})
		if err != nil {
			return err
		}
		for st, n := range actual {
			r.Problems = append(r.Problems, fmt.Sprintf("no status count for %s; there are %d", st, n))
		}
	}
	if newest > r.Revision {
		r.Problems = append(r.Problems, fmt.Sprintf("an event has revision %d beyond the global revision %d", newest, r.Revision))
	} else if newest < r.Revision {
		r.Problems = append(r.Problems, fmt.Sprintf("the global revision is %d but the newest event is %d", r.Revision, newest))
	}
	return nil
}

func verifyWorkspace(ws *bbolt.Bucket, id string, r *Report) (newest uint64, err error) {
	bad := func(format string, args ...any) {
		r.Problems = append(r.Problems, "workspace "+id+": "+fmt.Sprintf(format, args...))
	}
	compacted := u64(ws.Get(kCompactedThrough))
	var count uint64
	if cl := ws.Bucket(bChangelog); cl != nil {
		err := cl.ForEach(func(k, v []byte) error {
			count++
			newest = max(newest, u64(k))
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	r.Events += int(count)
	if c := u64(ws.Get(kChangelogCount)); c != count {
		bad("changelog count says %d, changelog holds %d", c, count)
	}
	ints := ws.Bucket(bIntegrations)
	if ints == nil {
		return newest, nil
	}
	err = ints.ForEach(func(k, v []byte) error {
		r.Integrations++
		var in switchboard.Integration
		if err := json.Unmarshal(v, &in); err != nil {
			bad("integration %s does not decode: %v", k, err)
			return nil
		}
		if in.ID != string(k) || in.WorkspaceID != id {
			bad("integration under key %s says it is %s of %s", k, in.ID, in.WorkspaceID)
		}
		if in.Revision <= compacted {
			return nil
		}
		raw := ws.Bucket(bChangelog).Get(u64bytes(in.Revision))
		if raw == nil {
			bad("integration %s is at revision %d, which is not in the changelog", in.ID, in.Revision)
			return nil
		}
		var ev switchboard.Event
		if err := json.Unmarshal(raw, &ev); err != nil || ev.Integration == nil {
			bad("event %d does not decode", in.Revision)
			return nil
		}
		if !sameState(ev.Integration, &in) {
			bad("integration %s differs from its event %d", in.ID, in.Revision)
		}
		if got := ws.Bucket(bByProvider).Get(providerKey(in.ProviderID, in.OwnerUserID)); !bytes.Equal(got, k) {
			bad("provider index for %s/%s points to %q, not %s", in.ProviderID, in.OwnerUserID, got, in.ID)
		}
		return nil
	})
	return newest, err
}

// sameState compares what the changelog snapshot and the stored state must
// agree on.
func sameState(a, b *switchboard.Integration) bool {
	ja, _ := json.Marshal(normal(a))
	jb, _ := json.Marshal(normal(b))
	return bytes.Equal(ja, jb)
}

func normal(in *switchboard.Integration) *switchboard.Integration {
	c := in.Clone()
	c.UpdatedAt, c.CreatedAt = time.Time{}, time.Time{}
	return c
}
