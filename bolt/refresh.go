package bolt

import (
	"context"
	"fmt"
	"time"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// tokenMeta is the clear record kept beside a generation's sealed tokens.
type tokenMeta struct {
	Expiry          time.Time `json:"expiry"`
	HasRefreshToken bool      `json:"hasRefreshToken"`
	IssuedAt        time.Time `json:"issuedAt"`
	// Serial is the credentials' TokenSet.Serial; absent in records
	// written before serials existed (0).
	Serial uint64 `json:"serial,omitempty"`
	switchboard.RefreshState
}

// TokenSchedule calls fn for every integration with a current generation,
// joined with its generation's token metadata. It reads integrations and
// metadata only; no sealed value is opened. fn runs inside a read
// transaction: it must not call back into the store.
func (s *Store) TokenSchedule(ctx context.Context, fn func(*switchboard.TokenMeta) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bWorkspaces).ForEachBucket(func(wsID []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			ws := tx.Bucket(bWorkspaces).Bucket(wsID)
			ints := ws.Bucket(bIntegrations)
			if ints == nil {
				return nil
			}
			metas := ws.Bucket(bTokenMeta)
			return ints.ForEach(func(id, v []byte) error {
				// Only the fields the schedule needs: decoding the rest
				// of every integration costs seconds at a million.
				var in scheduleFields
				if err := decodeScheduleFields(v, &in); err != nil {
					return fmt.Errorf("decode integration %q: %w", id, err)
				}
				gen, ok := (&switchboard.Integration{Status: in.Status, Generation: in.Generation}).CurrentGeneration()
				if !ok {
					return nil
				}
				m := &switchboard.TokenMeta{
					WorkspaceID: string(wsID), IntegrationID: in.ID, ProviderID: in.ProviderID,
					Generation: gen, Status: in.Status, StatusReason: in.StatusReason,
				}
				if metas != nil {
					var tm tokenMeta
					ok, err := getJSON(metas, tokenKey(in.ID, gen), &tm)
					if err != nil {
						return err
					}
					if ok {
						m.Known = true
						m.Expiry, m.HasRefreshToken, m.IssuedAt, m.Serial, m.RefreshState = tm.Expiry, tm.HasRefreshToken, tm.IssuedAt, tm.Serial, tm.RefreshState
					}
				}
				return fn(m)
			})
		})
	})
	return wrap(err, "token schedule")
}

// PutRefreshState replaces the refresh state of a current generation's
// credentials with Serial serial. It fails with ECONFLICT for a generation
// that is not current or credentials replaced meanwhile, and ENOTFOUND
// when the generation has no credentials.
func (s *Store) PutRefreshState(ctx context.Context, workspaceID, integrationID string, generation, serial uint64, st switchboard.RefreshState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		ws, err := s.currentCredentials(tx, workspaceID, integrationID, generation, serial)
		if err != nil {
			return err
		}
		metas, err := ws.CreateBucketIfNotExists(bTokenMeta)
		if err != nil {
			return err
		}
		key := tokenKey(integrationID, generation)
		var tm tokenMeta
		if _, err := getJSON(metas, key, &tm); err != nil {
			return err
		}
		tm.RefreshState = switchboard.RefreshState{FailingSince: utcPtr(st.FailingSince), RefreshStartedAt: utcPtr(st.RefreshStartedAt)}
		return putJSON(metas, key, &tm)
	})
	return wrap(err, "put refresh state %s/%s/%d", workspaceID, integrationID, generation)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
