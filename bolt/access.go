package bolt

// Who may do what: users, the API token index, the audit log, idempotency
// records and the workspace wipe.
//
//	workspaces/<workspace id>/
//	  users/<user id>                          JSON User
//	  api_token_ids/<token id>                 SHA-256 of the token's secret (key into api_tokens)
//	  audit/<sequence>                         JSON AuditEntry
//	  audit_count                              number of entries in audit
//	  idempotency/<token id>\x00<key>          expiry (unix ns) + sealed JSON IdempotencyRecord
//	  idempotency_expiry/<expiry ns><token id>\x00<key>   (empty) — for the sweep

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"time"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

var (
	bUsers      = []byte("users")
	bTokenIDs   = []byte("api_token_ids")
	bAudit      = []byte("audit")
	bIdem       = []byte("idempotency")
	bIdemExpiry = []byte("idempotency_expiry")

	kAuditCount = []byte("audit_count")
)

// accessBuckets are the workspace sub-buckets of this file.
var accessBuckets = [][]byte{bUsers, bTokenIDs, bAudit, bIdem, bIdemExpiry}

// indexTokens adds every API token to its workspace's api_token_ids
// index; it runs at Open, so data files written before the index existed
// get it.
func indexTokens(tx *bbolt.Tx) error {
	return tx.Bucket(bAPITokens).ForEach(func(k, v []byte) error {
		var t switchboard.APIToken
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		ws, err := createWSBucket(tx, t.WorkspaceID)
		if err != nil {
			return err
		}
		idx := ws.Bucket(bTokenIDs)
		if idx.Get([]byte(t.ID)) == nil {
			return idx.Put([]byte(t.ID), bytes.Clone(k))
		}
		return nil
	})
}

// CreateUser stores u; an existing ID in the workspace is ECONFLICT.
func (s *Store) CreateUser(ctx context.Context, u *switchboard.User) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if u == nil || u.ID == "" || u.WorkspaceID == "" {
		return switchboard.Errorf(switchboard.EINVALID, "A user needs an ID and a workspace.")
	}
	c := *u
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	c.CreatedAt = c.CreatedAt.UTC()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		ws, err := createWSBucket(tx, c.WorkspaceID)
		if err != nil {
			return err
		}
		b := ws.Bucket(bUsers)
		if b.Get([]byte(c.ID)) != nil {
			return switchboard.Errorf(switchboard.ECONFLICT, "User %s already exists.", c.ID)
		}
		return putJSON(b, []byte(c.ID), &c)
	})
	if err != nil {
		return wrap(err, "create user %s", c.ID)
	}
	u.CreatedAt = c.CreatedAt
	return nil
}

// FindUserByID returns ENOTFOUND for a user not in the workspace.
func (s *Store) FindUserByID(ctx context.Context, workspaceID, id string) (*switchboard.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var u *switchboard.User
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := sub(wsBucket(tx, workspaceID), bUsers); b != nil && id != "" {
			var x switchboard.User
			ok, err := getJSON(b, []byte(id), &x)
			if err != nil {
				return err
			}
			if ok {
				u = &x
				return nil
			}
		}
		return switchboard.Errorf(switchboard.ENOTFOUND, "User %s not found.", id)
	})
	if err != nil {
		return nil, wrap(err, "find user %s", id)
	}
	return u, nil
}

// FindUsers lists a workspace's users ordered by ID.
func (s *Store) FindUsers(ctx context.Context, workspaceID string) ([]*switchboard.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*switchboard.User{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := sub(wsBucket(tx, workspaceID), bUsers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			u := new(switchboard.User)
			if err := json.Unmarshal(v, u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, wrap(err, "find users %s", workspaceID)
	}
	return out, nil
}

// tokenHash returns the secret hash of a token of the workspace, or nil.
func tokenHash(tx *bbolt.Tx, workspaceID, id string) []byte {
	idx := sub(wsBucket(tx, workspaceID), bTokenIDs)
	if idx == nil || id == "" {
		return nil
	}
	return idx.Get([]byte(id))
}

func loadToken(tx *bbolt.Tx, workspaceID, id string) (*switchboard.APIToken, []byte, error) {
	h := tokenHash(tx, workspaceID, id)
	var t switchboard.APIToken
	if h != nil {
		ok, err := getJSON(tx.Bucket(bAPITokens), h, &t)
		if err != nil {
			return nil, nil, err
		}
		if ok && t.WorkspaceID == workspaceID {
			return &t, h, nil
		}
	}
	return nil, nil, switchboard.Errorf(switchboard.ENOTFOUND, "API token %s not found.", id)
}

// FindAPITokenByID returns ENOTFOUND for a token not in the workspace.
func (s *Store) FindAPITokenByID(ctx context.Context, workspaceID, id string) (*switchboard.APIToken, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var t *switchboard.APIToken
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		t, _, err = loadToken(tx, workspaceID, id)
		return err
	})
	if err != nil {
		return nil, wrap(err, "find API token %s", id)
	}
	return t, nil
}

// FindAPITokens lists a workspace's tokens ordered by ID.
func (s *Store) FindAPITokens(ctx context.Context, workspaceID string) ([]*switchboard.APIToken, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*switchboard.APIToken{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		idx := sub(wsBucket(tx, workspaceID), bTokenIDs)
		if idx == nil {
			return nil
		}
		all := tx.Bucket(bAPITokens)
		return idx.ForEach(func(k, h []byte) error {
			t := new(switchboard.APIToken)
			ok, err := getJSON(all, h, t)
			if err != nil || !ok {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, wrap(err, "find API tokens %s", workspaceID)
	}
	return out, nil
}

// updateToken applies f to a token of the workspace and stores it.
func (s *Store) updateToken(workspaceID, id string, f func(t *switchboard.APIToken) bool) (*switchboard.APIToken, error) {
	var out *switchboard.APIToken
	defer s.tokens.invalidate()
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		t, h, err := loadToken(tx, workspaceID, id)
		if err != nil {
			return err
		}
		out = t
		if !f(t) {
			return nil
		}
		return putJSON(tx.Bucket(bAPITokens), h, t)
	})
	return out, err
}

// RevokeAPIToken sets RevokedAt once.
func (s *Store) RevokeAPIToken(ctx context.Context, workspaceID, id string, at time.Time) (*switchboard.APIToken, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := s.updateToken(workspaceID, id, func(t *switchboard.APIToken) bool {
		if t.RevokedAt != nil {
			return false
		}
		at := at.UTC()
		t.RevokedAt = &at
		return true
	})
	if err != nil {
		return nil, wrap(err, "revoke API token %s", id)
	}
	return t, nil
}

// TouchAPIToken sets LastUsedAt (never backwards).
func (s *Store) TouchAPIToken(ctx context.Context, workspaceID, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := s.updateToken(workspaceID, id, func(t *switchboard.APIToken) bool {
		if t.LastUsedAt != nil && !at.After(*t.LastUsedAt) {
			return false
		}
		at := at.UTC()
		t.LastUsedAt = &at
		return true
	})
	return wrap(err, "touch API token %s", id)
}

// AppendAudit stores e with the next sequence of its workspace, and drops
// entries beyond switchboard.AuditMaxEntries or older than AuditMaxAge.
func (s *Store) AppendAudit(ctx context.Context, e *switchboard.AuditEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := *e
	c.At = c.At.UTC()
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		ws, err := createWSBucket(tx, c.WorkspaceID)
		if err != nil {
			return err
		}
		return s.appendAudit(ws, &c)
	})
	if err != nil {
		return wrap(err, "append audit %s", c.WorkspaceID)
	}
	e.Seq = c.Seq
	return nil
}

// appendAudit appends c to the audit log of the workspace bucket ws,
// assigning c.Seq, and drops entries past retention. It runs inside the
// caller's transaction.
func (s *Store) appendAudit(ws *bbolt.Bucket, c *switchboard.AuditEntry) error {
	b := ws.Bucket(bAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	c.Seq = seq
	raw, err := appendAuditEntry(make([]byte, 0, 256), c)
	if err != nil {
		return err
	}
	if err := b.Put(u64bytes(seq), raw); err != nil {
		return err
	}
	// Retention: the oldest entries go first.
	cutoff := c.At.Add(-switchboard.AuditMaxAge)
	n := u64(ws.Get(kAuditCount)) + 1
	cur := b.Cursor()
	for k, v := cur.First(); k != nil && u64(k) < seq; k, v = cur.Next() {
		drop := n > uint64(s.auditMax)
		if !drop {
			at, err := auditAt(v)
			if err != nil {
				return err
			}
			drop = at.Before(cutoff)
		}
		if !drop {
			break
		}
		if err := cur.Delete(); err != nil {
			return err
		}
		n--
	}
	return ws.Put(kAuditCount, u64bytes(n))
}

// auditAt reads At from a stored audit entry. Retention reads it for the
// oldest entry on every append, so the layout json.Marshal writes for
// switchboard.AuditEntry ({"Seq":<n>,"WorkspaceID":"<id>","At":"<RFC
// 3339>",...) is read without decoding the whole entry; anything else (an
// escaped workspace ID, another layout) is decoded in full.
func auditAt(v []byte) (time.Time, error) {
	const head, ws, at = `{"Seq":`, `,"WorkspaceID":"`, `","At":"`
	if rest, ok := bytes.CutPrefix(v, []byte(head)); ok {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if rest, ok := bytes.CutPrefix(rest[i:], []byte(ws)); ok {
			if j := bytes.IndexByte(rest, '"'); j >= 0 && bytes.IndexByte(rest[:j], '\\') < 0 {
				if rest, ok := bytes.CutPrefix(rest[j:], []byte(at)); ok {
					if k := bytes.IndexByte(rest, '"'); k > 0 {
						if t, err := time.Parse(time.RFC3339Nano, string(rest[:k])); err == nil {
							return t, nil
						}
					}
				}
			}
		}
	}
	var e struct{ At time.Time }
	if err := json.Unmarshal(v, &e); err != nil {
		return time.Time{}, err
	}
	return e.At, nil
}

// FindAudit returns entries with Seq < before (0: all), newest first.
func (s *Store) FindAudit(ctx context.Context, workspaceID string, before uint64, limit int) ([]*switchboard.AuditEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*switchboard.AuditEntry{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := sub(wsBucket(tx, workspaceID), bAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			if k, _ = c.Seek(u64bytes(before)); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			if before != 0 && u64(k) >= before {
				continue
			}
			e := new(switchboard.AuditEntry)
			if err := json.Unmarshal(v, e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "find audit %s", workspaceID)
	}
	return out, nil
}

func idemKey(tokenID, key string) []byte { return []byte(tokenID + "\x00" + key) }

func idemAD(workspaceID string, k []byte) []byte {
	return append([]byte("idempotency\x00"+workspaceID+"\x00"), k...)
}

// FindIdempotency returns a live record, or ENOTFOUND.
func (s *Store) FindIdempotency(ctx context.Context, workspaceID, tokenID, key string) (*switchboard.IdempotencyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := idemKey(tokenID, key)
	var sealed []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := sub(wsBucket(tx, workspaceID), bIdem); b != nil {
			if v := b.Get(k); len(v) > 8 && time.Unix(0, int64(binary.BigEndian.Uint64(v))).After(s.now()) {
				sealed = bytes.Clone(v[8:])
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "find idempotency record")
	}
	if sealed == nil {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "No idempotency record.")
	}
	pt, err := s.keyring.Open(sealed, idemAD(workspaceID, k))
	if err != nil {
		return nil, wrap(err, "open idempotency record")
	}
	r := new(switchboard.IdempotencyRecord)
	if err := json.Unmarshal(pt, r); err != nil {
		return nil, wrap(err, "decode idempotency record")
	}
	return r, nil
}

// PutIdempotency stores r unless a live record holds its key, and sweeps
// expired records of the workspace.
func (s *Store) PutIdempotency(ctx context.Context, r *switchboard.IdempotencyRecord) (*switchboard.IdempotencyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := idemKey(r.TokenID, r.Key)
	pt, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sealed, err := s.keyring.Seal(pt, idemAD(r.WorkspaceID, k))
	if err != nil {
		return nil, wrap(err, "seal idempotency record")
	}
	exp := u64bytes(uint64(r.ExpiresAt.UnixNano()))
	existing := false
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		existing = false
		ws, err := createWSBucket(tx, r.WorkspaceID)
		if err != nil {
			return err
		}
		b, eb := ws.Bucket(bIdem), ws.Bucket(bIdemExpiry)
		now := uint64(s.now().UnixNano())
		c := eb.Cursor()
		for ek, _ := c.First(); ek != nil && u64(ek[:8]) <= now; ek, _ = c.Next() {
			if err := b.Delete(ek[8:]); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if v := b.Get(k); len(v) > 8 {
			existing = true
			return nil
		}
		if err := b.Put(k, append(slices.Clone(exp), sealed...)); err != nil {
			return err
		}
		return eb.Put(append(slices.Clone(exp), k...), nil)
	})
	if err != nil {
		return nil, wrap(err, "put idempotency record")
	}
	if existing {
		return s.FindIdempotency(ctx, r.WorkspaceID, r.TokenID, r.Key)
	}
	return r, nil
}

// WipeWorkspace: see switchboard.AccessStore. One transaction.
func (s *Store) WipeWorkspace(ctx context.Context, workspaceID string, at time.Time) (*switchboard.WipeResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Raised after the transaction, whatever its outcome.
	defer s.bumpVersion(workspaceID)
	at = at.UTC()
	var res *switchboard.WipeResult
	defer s.tokens.invalidate()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		res = &switchboard.WipeResult{}
		ws := wsBucket(tx, workspaceID)
		if ws == nil || ws.Get(kInfo) == nil {
			return switchboard.Errorf(switchboard.ENOTFOUND, "Workspace %s not found.", workspaceID)
		}
		if _, err := createWSBucket(tx, workspaceID); err != nil {
			return err
		}
		meta := tx.Bucket(bMeta)
		rev := u64(meta.Get(kRevision))
		firstRev := rev + 1

		// The history goes: every event of the changelog.
		if err := ws.DeleteBucket(bChangelog); err != nil {
			return err
		}
		cl, err := ws.CreateBucket(bChangelog)
		if err != nil {
			return err
		}

		ins := ws.Bucket(bIntegrations)
		var all []*switchboard.Integration
		if err := ins.ForEach(func(k, v []byte) error {
			in := new(switchboard.Integration)
			if err := json.Unmarshal(v, in); err != nil {
				return err
			}
			all = append(all, in)
			return nil
		}); err != nil {
			return err
		}
		tb := tx.Bucket(bTeardown)
		for _, cur := range all {
			prev := cur.Status
			next := cur.Clone()
			if gen, ok := cur.CurrentGeneration(); ok {
				seq, err := tb.NextSequence()
				if err != nil {
					return err
				}
				job := &switchboard.TeardownJob{ID: seq, WorkspaceID: workspaceID, IntegrationID: cur.ID, ProviderID: cur.ProviderID,
					Generation: gen, NextAttemptAt: at, CreatedAt: at}
				if err := putJSON(tb, u64bytes(seq), job); err != nil {
					return err
				}
				res.Teardowns++
			}
			if err := moveStatus(tx, prev, switchboard.StatusDisconnected); err != nil {
				return err
			}
			next.Status = switchboard.StatusDisconnected
			next.StatusReason = switchboard.ReasonWorkspaceWiped
			next.StatusMessage = "The workspace was wiped: this integration was disconnected and its synced data deleted."
			next.Account, next.AccountHistory = nil, nil
			next.GrantedScopes, next.MissingScopes = nil, nil
			next.SyncCheckpoint, next.LastSyncedAt, next.SettingValues = "", nil, nil
			rev++
			next.Revision = rev
			next.UpdatedAt = at
			if err := putJSON(ins, []byte(next.ID), next); err != nil {
				return err
			}
			ev := &switchboard.Event{Revision: rev, At: at, WorkspaceID: workspaceID, Kind: switchboard.EventWorkspaceWiped, Integration: next, PreviousStatus: &prev}
			if err := putJSON(cl, u64bytes(rev), ev); err != nil {
				return err
			}
			res.Events = append(res.Events, ev)
		}
		if err := meta.Put(kRevision, u64bytes(rev)); err != nil {
			return err
		}
		if err := ws.Put(kChangelogCount, u64bytes(uint64(len(res.Events)))); err != nil {
			return err
		}
		if err := ws.Put(kCompactedThrough, u64bytes(firstRev-1)); err != nil {
			return err
		}

		// API tokens go, but those of the sync engine, which must still
		// read the wipe's events.
		idx := ws.Bucket(bTokenIDs)
		all2 := tx.Bucket(bAPITokens)
		var del [][]byte
		if err := idx.ForEach(func(k, h []byte) error {
			var t switchboard.APIToken
			ok, err := getJSON(all2, h, &t)
			if err != nil {
				return err
			}
			if ok && slices.Contains(t.Scopes, switchboard.ScopeSync) {
				return nil
			}
			if err := all2.Delete(h); err != nil {
				return err
			}
			del = append(del, bytes.Clone(k))
			res.DeletedTokenIDs = append(res.DeletedTokenIDs, string(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range del {
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
		// Replays of the wiped state must not come back.
		for _, name := range [][]byte{bIdem, bIdemExpiry} {
			if err := ws.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := ws.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "wipe workspace %s", workspaceID)
	}
	return res, nil
}
