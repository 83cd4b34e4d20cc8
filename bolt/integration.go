package bolt

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// FindIntegrationByID returns ENOTFOUND if the integration does not exist in
// that workspace.
func (s *Store) FindIntegrationByID(ctx context.Context, workspaceID, id string) (*switchboard.Integration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var in *switchboard.Integration
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		in, err = s.loadIntegration(wsBucket(tx, workspaceID), workspaceID, id)
		if err == nil && in == nil {
			err = notFoundIntegration(id)
		}
		return err
	})
	if err != nil {
		return nil, wrap(err, "find integration %s/%s", workspaceID, id)
	}
	return in, nil
}

// FindIntegrationByProvider finds the integration for a provider and owner
// (empty owner: the workspace's), or ENOTFOUND.
func (s *Store) FindIntegrationByProvider(ctx context.Context, workspaceID, providerID, ownerUserID string) (*switchboard.Integration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var in *switchboard.Integration
	err := s.db.View(func(tx *bbolt.Tx) error {
		ws := wsBucket(tx, workspaceID)
		var id []byte
		if idx := sub(ws, bByProvider); idx != nil {
			id = idx.Get(providerKey(providerID, ownerUserID))
		}
		if id == nil {
			return switchboard.Errorf(switchboard.ENOTFOUND, "No %s integration found.", providerID)
		}
		var err error
		in, err = s.loadIntegration(ws, workspaceID, string(id))
		if err == nil && in == nil {
			err = notFoundIntegration(string(id))
		}
		return err
	})
	if err != nil {
		return nil, wrap(err, "find integration %s/%s/%s", workspaceID, providerID, ownerUserID)
	}
	return in, nil
}

// FindIntegrations lists a workspace's integrations that match f, ordered
// by ID. An unknown workspace has none.
func (s *Store) FindIntegrations(ctx context.Context, workspaceID string, f switchboard.IntegrationFilter) ([]*switchboard.Integration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*switchboard.Integration{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := sub(wsBucket(tx, workspaceID), bIntegrations)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			in := new(switchboard.Integration)
			if err := decodeIntegration(v, in); err != nil {
				return fmt.Errorf("decode integration %q: %w", k, err)
			}
			if f.Match(in) {
				out = append(out, in)
			}
			return nil
		})
	})
	if err != nil {
		return nil, wrap(err, "find integrations %s", workspaceID)
	}
	return out, nil
}

// Commit applies c in one transaction and returns the committed event once
// it is durable. See switchboard.Change for the contract. When c.Teardown is
// set, its ID holds the job's assigned ID after a successful commit.
//
// Transactions go through bbolt's Batch, which may run the transaction
// function (and so c.Apply) more than once; only the last run's results are
// kept and only a successful commit's changes persist.
func (s *Store) Commit(ctx context.Context, c switchboard.Change) (*switchboard.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.WorkspaceID == "" || c.IntegrationID == "" {
		return nil, switchboard.Errorf(switchboard.EINVALID, "Workspace and integration IDs are required.")
	}
	if c.Apply == nil {
		return nil, wrap(errNoApply, "commit %s/%s", c.WorkspaceID, c.IntegrationID)
	}
	key := decodedKey(c.WorkspaceID, c.IntegrationID)
	var r commitResult
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		r = commitResult{}
		res, err := s.commit(tx, c, key)
		if err != nil {
			return err
		}
		r = res
		return nil
	})
	if err != nil {
		return nil, wrap(err, "commit %s/%s", c.WorkspaceID, c.IntegrationID)
	}
	if r.jobID != 0 {
		c.Teardown.ID = r.jobID
	}
	s.decoded.committed(key, r.written)
	if _, ok := s.wsComplete.Load(c.WorkspaceID); !ok {
		s.wsComplete.Store(c.WorkspaceID, struct{}{})
	}
	s.bumpVersion(c.WorkspaceID)
	return r.ev, nil
}

// commitWSBucket is createWSBucket for commits. Once a commit to a
// workspace is durable, its bucket and every sub-bucket exist for good
// (nothing deletes a workspace's bucket, and what deletes a sub-bucket
// creates it again in the same transaction), so later commits only look
// the workspace's bucket up instead of creating each sub-bucket if needed.
func (s *Store) commitWSBucket(tx *bbolt.Tx, workspaceID string) (*bbolt.Bucket, error) {
	if _, ok := s.wsComplete.Load(workspaceID); ok {
		if ws := wsBucket(tx, workspaceID); ws != nil {
			return ws, nil
		}
	}
	return createWSBucket(tx, workspaceID)
}

// commitResult is what one run of Commit's transaction produced.
type commitResult struct {
	ev      *switchboard.Event
	jobID   uint64
	written decodedVersion // what the decoded cache recorded, if anything
}

type constError string

func (e constError) Error() string { return string(e) }

const errNoApply = constError("Change.Apply is nil")

// commit is one run of Commit's transaction. It must not change anything
// outside tx: Batch may run it again or roll it back.
//
// key is decodedKey(c.WorkspaceID, c.IntegrationID).
func (s *Store) commit(tx *bbolt.Tx, c switchboard.Change, key string) (commitResult, error) {
	now := s.now()
	ws, err := s.commitWSBucket(tx, c.WorkspaceID)
	if err != nil {
		return commitResult{}, err
	}
	// loadIntegration returns a private copy: Apply may have it.
	in, err := s.loadIntegration(ws, c.WorkspaceID, c.IntegrationID)
	if err != nil {
		return commitResult{}, err
	}
	if in == nil && !c.Create {
		return commitResult{}, notFoundIntegration(c.IntegrationID)
	}
	// What the rest of the commit needs of the current state, kept
	// before Apply changes its copy.
	var cur *curState
	if in != nil {
		cur = &curState{ID: in.ID, ProviderID: in.ProviderID, OwnerUserID: in.OwnerUserID, Status: in.Status, CreatedAt: in.CreatedAt, Revision: in.Revision}
	}
	var curRev uint64
	if cur != nil {
		curRev = cur.Revision
	}
	if c.ExpectedRevision != 0 && c.ExpectedRevision != curRev {
		return commitResult{}, switchboard.Errorf(switchboard.ECONFLICT,
			"Integration %s has changed: expected revision %d, current revision %d. Reload it and try again.",
			c.IntegrationID, c.ExpectedRevision, curRev)
	}

	if c.IfCredentials != nil {
		var serial uint64
		if in != nil {
			if gen, ok := in.CurrentGeneration(); ok {
				if serial, err = credentialSerial(ws, c.IntegrationID, gen); err != nil {
					return commitResult{}, err
				}
			}
		}
		if serial != *c.IfCredentials {
			return commitResult{}, switchboard.Errorf(switchboard.ECONFLICT,
				"The credentials of integration %s were replaced meanwhile; the change was about the previous ones.", c.IntegrationID)
		}
	}

	next, kind, err := c.Apply(in)
	if err != nil {
		return commitResult{}, applyError{err}
	}
	if next == nil {
		return commitResult{}, nil
	}
	// Own the value we stamp and store: the copy Apply was given is
	// ours; anything else Apply returned may be kept elsewhere.
	if next != in {
		next = next.Clone()
	}
	if next.ID == "" {
		next.ID = c.IntegrationID
	}
	if next.WorkspaceID == "" {
		next.WorkspaceID = c.WorkspaceID
	}
	if next.ID != c.IntegrationID || next.WorkspaceID != c.WorkspaceID {
		return commitResult{}, constError("Apply returned an integration with another ID or workspace")
	}

	if c.SoleInCategory && next.Status != switchboard.StatusDisconnected {
		if err := soleInCategory(ws, next, c.SoleMessage); err != nil {
			return commitResult{}, err
		}
	}

	at := c.At
	if at.IsZero() {
		at = now
	}
	at = at.UTC()

	meta := tx.Bucket(bMeta)
	rev := u64(meta.Get(kRevision)) + 1
	if err := meta.Put(kRevision, u64bytes(rev)); err != nil {
		return commitResult{}, err
	}
	next.Revision = rev
	next.UpdatedAt = at
	if cur == nil {
		next.CreatedAt = at
	} else {
		next.CreatedAt = cur.CreatedAt
	}

	// The (provider, owner) index: one integration per provider and owner.
	idx := ws.Bucket(bByProvider)
	pkey := providerKey(next.ProviderID, next.OwnerUserID)
	if cur != nil {
		if old := providerKey(cur.ProviderID, cur.OwnerUserID); string(old) != string(pkey) && string(idx.Get(old)) == cur.ID {
			if err := idx.Delete(old); err != nil {
				return commitResult{}, err
			}
		}
	}
	other := idx.Get(pkey)
	if other != nil && string(other) != next.ID {
		owner := "the workspace"
		if next.OwnerUserID != "" {
			owner = "user " + next.OwnerUserID
		}
		return commitResult{}, switchboard.Errorf(switchboard.ECONFLICT,
			"%s already has a %s integration (%s).", owner, next.ProviderID, other)
	}
	if other == nil { // an unchanged entry is not written again
		if err := idx.Put(pkey, []byte(next.ID)); err != nil {
			return commitResult{}, err
		}
	}
	raw, err := encodeIntegration(next)
	if err != nil {
		return commitResult{}, err
	}
	if err := ws.Bucket(bIntegrations).Put([]byte(next.ID), raw); err != nil {
		return commitResult{}, err
	}
	written := s.decoded.wrote(key, raw, next)
	var from switchboard.Status
	if cur != nil {
		from = cur.Status
	}
	if err := moveStatus(tx, from, next.Status); err != nil {
		return commitResult{}, err
	}

	ev := &switchboard.Event{
		Revision:    rev,
		At:          at,
		WorkspaceID: c.WorkspaceID,
		Kind:        kind,
		Integration: next,
	}
	if cur != nil {
		st := cur.Status
		ev.PreviousStatus = &st
	}
	// The event embeds the integration: its bytes are the ones just
	// written, not a second encoding.
	evRaw, err := appendEvent(make([]byte, 0, len(raw)+192), ev, raw)
	if err != nil {
		return commitResult{}, err
	}
	if err := ws.Bucket(bChangelog).Put(u64bytes(rev), evRaw); err != nil {
		return commitResult{}, err
	}
	if err := ws.Put(kChangelogCount, u64bytes(u64(ws.Get(kChangelogCount))+1)); err != nil {
		return commitResult{}, err
	}

	if c.Tokens != nil {
		gen, ok := next.CurrentGeneration()
		if !ok {
			return commitResult{}, switchboard.Errorf(switchboard.ECONFLICT,
				"Integration %s has no current generation (status %s); credentials cannot be stored.", next.ID, next.Status)
		}
		if err := s.putTokens(ws, c.WorkspaceID, next.ID, gen, c.Tokens); err != nil {
			return commitResult{}, err
		}
	}

	var jobID uint64
	if c.Teardown != nil {
		job := *c.Teardown
		tb := tx.Bucket(bTeardown)
		if job.ID, err = tb.NextSequence(); err != nil {
			return commitResult{}, err
		}
		if job.WorkspaceID == "" {
			job.WorkspaceID = c.WorkspaceID
		}
		if job.IntegrationID == "" {
			job.IntegrationID = c.IntegrationID
		}
		if job.CreatedAt.IsZero() {
			job.CreatedAt = at
		}
		if job.NextAttemptAt.IsZero() {
			job.NextAttemptAt = at
		}
		job.CreatedAt, job.NextAttemptAt = job.CreatedAt.UTC(), job.NextAttemptAt.UTC()
		if err := putJSON(tb, u64bytes(job.ID), &job); err != nil {
			return commitResult{}, err
		}
		jobID = job.ID
	}

	if c.Audit != nil {
		if e := c.Audit(ev); e != nil {
			a := *e
			if a.WorkspaceID != c.WorkspaceID {
				return commitResult{}, constError("Audit returned an entry for another workspace")
			}
			if a.At.IsZero() {
				a.At = at
			}
			a.At = a.At.UTC()
			if err := s.appendAudit(ws, &a); err != nil {
				return commitResult{}, err
			}
		}
	}

	if err := s.retain(ws, now, rev); err != nil {
		return commitResult{}, err
	}
	return commitResult{ev: ev, jobID: jobID, written: written}, nil
}

// curState is what a commit keeps of the integration's state before
// Apply.
type curState struct {
	ID, ProviderID, OwnerUserID string
	Status                      switchboard.Status
	CreatedAt                   time.Time
	Revision                    uint64
}

// soleInCategory refuses next when another integration of the workspace
// with its category is in any status but DISCONNECTED. It reads the
// workspace's integrations in the committing transaction, so a change that
// committed just before (in this batch or an earlier one) is seen.
func soleInCategory(ws *bbolt.Bucket, next *switchboard.Integration, message func(*switchboard.Integration) string) error {
	b := sub(ws, bIntegrations)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		if string(k) == next.ID {
			return nil
		}
		other := new(switchboard.Integration)
		if err := decodeIntegration(v, other); err != nil {
			return fmt.Errorf("decode integration %q: %w", k, err)
		}
		if other.Category != next.Category || other.Status == switchboard.StatusDisconnected {
			return nil
		}
		msg := fmt.Sprintf("This workspace already has a %s integration (%s, status %s); disconnect it first.", next.Category, other.ProviderID, other.Status)
		if message != nil {
			msg = message(other)
		}
		return switchboard.Errorf(switchboard.ECONFLICT, "%s", msg)
	})
}

// loadIntegration returns nil, nil when the integration does not exist.
func (s *Store) loadIntegration(ws *bbolt.Bucket, workspaceID, id string) (*switchboard.Integration, error) {
	b := sub(ws, bIntegrations)
	if b == nil || id == "" {
		return nil, nil
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	in, err := s.decoded.integration(decodedKey(workspaceID, id), v)
	if err != nil {
		return nil, fmt.Errorf("decode %q: %w", id, err)
	}
	return in, nil
}

func notFoundIntegration(id string) error {
	return switchboard.Errorf(switchboard.ENOTFOUND, "Integration %s not found.", id)
}

func providerKey(providerID, ownerUserID string) []byte {
	return []byte(providerID + "\x00" + ownerUserID)
}

// tokenKey is <integration id>\x00<generation>.
func tokenKey(integrationID string, generation uint64) []byte {
	return append([]byte(integrationID+"\x00"), u64bytes(generation)...)
}

// tokenAD binds sealed credentials to workspace, integration and generation.
func tokenAD(workspaceID, integrationID string, generation uint64) []byte {
	return []byte(workspaceID + "\x00" + integrationID + "\x00" + strconv.FormatUint(generation, 10))
}

// utc returns t in UTC, keeping the zero time zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
