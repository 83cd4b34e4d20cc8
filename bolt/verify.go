package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bont/switchboard/seal"
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

// SecretsReport says which key seals each stored secret and names those
// the keys in question do not open. It never holds a secret.
type SecretsReport struct {
	// CurrentKey is the key new secrets are sealed with.
	CurrentKey string   `json:"currentKey"`
	Usage      KeyUsage `json:"usage"`
	// Unopenable names up to 1000 secrets the keys do not open;
	// UnopenableCount is exact.
	Unopenable      []SecretRef `json:"unopenable,omitempty"`
	UnopenableCount int         `json:"unopenableCount"`
	// KeyChecks holds the file's key checks (a constant sealed with each
	// key id in use, no secret), so that a caller holding keys can tell
	// whether they are the file's keys: see KeyCheckOpens.
	KeyChecks map[string][]byte `json:"keyChecks,omitempty"`
}

// OK reports whether the keys open every secret.
func (r *SecretsReport) OK() bool { return r.UnopenableCount == 0 }

// CheckSecrets opens every stored secret with the store's keyring,
// counting on only the keys whose ids are in keyIDs (all of the keyring's
// when keyIDs is nil): the secrets it names are those a gateway started
// with just those keys could not open. A pending OAuth state cannot be
// opened without its state parameter; it counts as openable when its key id
// is among them. Reads run in bounded transactions, beside live writers.
func (s *Store) CheckSecrets(ctx context.Context, keyIDs []string) (*SecretsReport, error) {
	usable := func(id string) bool { return s.keyring.Has(id) }
	if keyIDs != nil {
		usable = func(id string) bool { return s.keyring.Has(id) && slices.Contains(keyIDs, id) }
	}
	rep, err := checkSecrets(ctx, s.db, s.keyring, usable, s.now())
	if err != nil {
		return nil, wrap(err, "check secrets")
	}
	rep.CurrentKey = s.keyring.CurrentID()
	if rep.KeyChecks, err = s.keyChecks(); err != nil {
		return nil, wrap(err, "check secrets")
	}
	return rep, nil
}

func (s *Store) keyChecks() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bMeta).Bucket(bKeyChecks).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	return out, err
}

// KeyCheckOpens reports whether kr holds the key that sealed check, a key
// check of key id id (from SecretsReport.KeyChecks).
func KeyCheckOpens(kr *seal.Keyring, id string, check []byte) bool {
	if envID, err := seal.KeyID(check); err != nil || envID != id {
		return false
	}
	pt, err := kr.Open(check, keyCheckAD(id))
	return err == nil && bytes.Equal(pt, keyCheckPlaintext)
}

// CheckSecretsFile is CheckSecrets on a data file that no process holds
// open (a stopped gateway's, or a backup), with the keys of kr: it opens
// the file read-only, so it works with keys Open would refuse. A key of kr
// whose id has a key check in the file that it does not open counts as
// absent.
func CheckSecretsFile(ctx context.Context, path string, kr *seal.Keyring) (*SecretsReport, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("data file %s is in use by another switchboard process; check through it (switchboard check -data DIR) or stop it", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	good := map[string]bool{}
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			return fmt.Errorf("%s is not a switchboard data file (no meta bucket)", path)
		}
		checks := meta.Bucket(bKeyChecks)
		for _, id := range kr.IDs() {
			v := checks.Get([]byte(id))
			good[id] = v == nil || KeyCheckOpens(kr, id, v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep, err := checkSecrets(ctx, db, kr, func(id string) bool { return good[id] }, time.Now())
	if err != nil {
		return nil, fmt.Errorf("check secrets in %s: %w", path, err)
	}
	rep.CurrentKey = kr.CurrentID()
	return rep, nil
}

func checkSecrets(ctx context.Context, db *bbolt.DB, kr *seal.Keyring, usable func(string) bool, now time.Time) (*SecretsReport, error) {
	rep := &SecretsReport{Usage: KeyUsage{}}
	err := scanAll(ctx, db, now, func(it *sealedItem) {
		ok := it.keyID()
		rep.Usage.add(it)
		switch {
		case !ok:
		case !usable(it.ref.KeyID):
			it.ref.Reason = fmt.Sprintf("no configured key opens key id %q", it.ref.KeyID)
		case it.ad == nil:
			return // an OAuth state under a usable key
		default:
			pt, err := kr.Open(it.env, it.ad)
			if err == nil {
				clear(pt)
				return
			}
			it.ref.Reason = openReason(err, it.ref.KeyID)
		}
		if it.ref.Reason == "" {
			it.ref.Reason = "malformed value"
		}
		rep.UnopenableCount++
		if len(rep.Unopenable) < maxNamed {
			rep.Unopenable = append(rep.Unopenable, it.ref)
		}
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}
