package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"time"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// FindTokens returns the credentials of one generation, or ENOTFOUND.
func (s *Store) FindTokens(ctx context.Context, workspaceID, integrationID string, generation uint64) (*switchboard.TokenSet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var sealed []byte
	var serial uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		ws := wsBucket(tx, workspaceID)
		if b := sub(ws, bTokens); b != nil {
			sealed = bytes.Clone(b.Get(tokenKey(integrationID, generation)))
		}
		if sealed == nil {
			return switchboard.Errorf(switchboard.ENOTFOUND,
				"No credentials for integration %s (generation %d).", integrationID, generation)
		}
		var err error
		serial, err = credentialSerial(ws, integrationID, generation)
		return err
	})
	if err != nil {
		return nil, wrap(err, "find tokens %s/%s/%d", workspaceID, integrationID, generation)
	}
	pt, err := s.keyring.Open(sealed, tokenAD(workspaceID, integrationID, generation))
	if err != nil {
		return nil, wrap(err, "find tokens %s/%s/%d", workspaceID, integrationID, generation)
	}
	t := new(switchboard.TokenSet)
	if err := json.Unmarshal(pt, t); err != nil {
		return nil, wrap(err, "find tokens %s/%s/%d: decode", workspaceID, integrationID, generation)
	}
	t.Serial = serial
	return t, nil
}

// PutTokens replaces the credentials of a generation that have Serial
// replaces; it fails with ECONFLICT unless generation is the integration's
// current generation and nobody wrote other credentials meanwhile, and
// ENOTFOUND if the integration does not exist. On success t.Serial is the
// new credentials' Serial.
func (s *Store) PutTokens(ctx context.Context, workspaceID, integrationID string, generation, replaces uint64, t *switchboard.TokenSet) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t == nil {
		return wrap(constError("nil TokenSet"), "put tokens %s/%s/%d", workspaceID, integrationID, generation)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		ws, err := s.currentCredentials(tx, workspaceID, integrationID, generation, replaces)
		if err != nil {
			return err
		}
		return s.putTokens(ws, workspaceID, integrationID, generation, t)
	})
	return wrap(err, "put tokens %s/%s/%d", workspaceID, integrationID, generation)
}

// currentCredentials returns the workspace's bucket when generation is
// the integration's current generation and its credentials have Serial
// serial; otherwise ECONFLICT (ENOTFOUND for an unknown integration).
func (s *Store) currentCredentials(tx *bbolt.Tx, workspaceID, integrationID string, generation, serial uint64) (*bbolt.Bucket, error) {
	ws := wsBucket(tx, workspaceID)
	in, err := s.loadIntegration(ws, workspaceID, integrationID)
	if err != nil {
		return nil, err
	}
	if in == nil {
		return nil, notFoundIntegration(integrationID)
	}
	cur, ok := in.CurrentGeneration()
	if !ok || cur != generation {
		return nil, switchboard.Errorf(switchboard.ECONFLICT,
			"Generation %d of integration %s is not current (current generation %d, status %s); its credentials cannot be written.",
			generation, integrationID, cur, in.Status)
	}
	got, err := credentialSerial(ws, integrationID, generation)
	if err != nil {
		return nil, err
	}
	if got != serial {
		return nil, switchboard.Errorf(switchboard.ECONFLICT,
			"The credentials of integration %s (generation %d) were replaced meanwhile (serial %d, not %d).",
			integrationID, generation, got, serial)
	}
	return ws, nil
}

// credentialSerial is the Serial of a generation's credentials: 0 when
// none were written with one.
func credentialSerial(ws *bbolt.Bucket, integrationID string, generation uint64) (uint64, error) {
	metas := sub(ws, bTokenMeta)
	if metas == nil {
		return 0, nil
	}
	var tm tokenMeta
	if _, err := getJSON(metas, tokenKey(integrationID, generation), &tm); err != nil {
		return 0, err
	}
	return tm.Serial, nil
}

func (s *Store) putTokens(ws *bbolt.Bucket, workspaceID, integrationID string, generation uint64, t *switchboard.TokenSet) error {
	serial, err := credentialSerial(ws, integrationID, generation)
	if err != nil {
		return err
	}
	pt, err := json.Marshal(t)
	if err != nil {
		return err
	}
	sealed, err := s.keyring.Seal(pt, tokenAD(workspaceID, integrationID, generation))
	clear(pt)
	if err != nil {
		return err
	}
	if err := ws.Bucket(bTokens).Put(tokenKey(integrationID, generation), sealed); err != nil {
		return err
	}
	meta, err := ws.CreateBucketIfNotExists(bTokenMeta)
	if err != nil {
		return err
	}
	// New credentials: a fresh schedule and no failure streak. The
	// transaction may run again (Batch): the serial is recomputed from
	// what it reads, so t.Serial ends as the committed one.
	t.Serial = serial + 1
	return putJSON(meta, tokenKey(integrationID, generation), &tokenMeta{
		Expiry:          utc(t.Expiry),
		HasRefreshToken: t.RefreshToken != "",
		IssuedAt:        s.now().UTC(),
		Serial:          t.Serial,
	})
}

// authStateTTL is the lifetime PutAuthState gives a state without ExpiresAt.
const authStateTTL = 10 * time.Minute

func authStateKey(state string) []byte {
	h := sha256.Sum256([]byte(state))
	return h[:]
}

// authStateAD binds a sealed state to its state parameter and to the clear
// expiry prefix stored in front of it.
func authStateAD(state string, expiry []byte) []byte {
	return append([]byte("auth_state\x00"+state+"\x00"), expiry...)
}

// PutAuthState stores a pending authorization under the SHA-256 of its
// state, sealed, so the PKCE verifier is never stored in clear. A zero
// CreatedAt becomes now and a zero ExpiresAt CreatedAt + 10 minutes. A
// state already pending fails with ECONFLICT.
func (s *Store) PutAuthState(ctx context.Context, st *switchboard.AuthState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if st == nil || st.State == "" {
		return switchboard.Errorf(switchboard.EINVALID, "An authorization state is required.")
	}
	c := *st
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = c.CreatedAt.Add(authStateTTL)
	}
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	pt, err := json.Marshal(&c)
	if err != nil {
		return wrap(err, "put auth state")
	}
	expiry := u64bytes(uint64(c.ExpiresAt.UnixNano()))
	sealed, err := s.keyring.Seal(pt, authStateAD(c.State, expiry))
	clear(pt)
	if err != nil {
		return wrap(err, "put auth state")
	}
	key := authStateKey(c.State)
	var startKey, startValue []byte
	if c.Start != nil {
		if startKey, startValue, err = s.sealAuthStart(c.Start, c.State, expiry); err != nil {
			return wrap(err, "put auth state")
		}
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bAuthStates)
		if b.Get(key) != nil || startKey != nil && b.Get(startKey) != nil {
			return switchboard.Errorf(switchboard.ECONFLICT, "Authorization state already pending.")
		}
		if startKey != nil {
			if err := b.Put(startKey, startValue); err != nil {
				return err
			}
		}
		return b.Put(key, append(expiry, sealed...))
	})
	return wrap(err, "put auth state")
}

// TakeAuthState returns and deletes the pending authorization, and its
// start link, in one transaction. Unknown or already used states return
// ENOTFOUND; expired ones are returned (and deleted) for the caller to
// report. A state accept refuses is left as it was.
func (s *Store) TakeAuthState(ctx context.Context, state string, accept func(*switchboard.AuthState) error) (*switchboard.AuthState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *switchboard.AuthState
	err := s.db.Update(func(tx *bbolt.Tx) error {
		out = nil
		b := tx.Bucket(bAuthStates)
		key := authStateKey(state)
		v := b.Get(key)
		if len(v) < 8 {
			return switchboard.Errorf(switchboard.ENOTFOUND,
				"This authorization is unknown or was already used. Start connecting again.")
		}
		pt, err := s.keyring.Open(v[8:], authStateAD(state, v[:8]))
		if err != nil {
			return err
		}
		st := new(switchboard.AuthState)
		err = json.Unmarshal(pt, st)
		clear(pt)
		if err != nil {
			return err
		}
		if accept != nil {
			if err := accept(st); err != nil {
				return err
			}
		}
		if err := b.Delete(key); err != nil {
			return err
		}
		if st.StartID != "" {
			if err := b.Delete(authStartKey(st.StartID)); err != nil {
				return err
			}
		}
		out = st
		return nil
	})
	if err != nil {
		return nil, wrap(err, "take auth state")
	}
	return out, nil
}

// DeleteExpiredAuthStates removes states that expired before now and
// returns how many. It reads only the clear expiry prefix.
func (s *Store) DeleteExpiredAuthStates(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cutoff := now.UnixNano()
	var n int
	err := s.db.Update(func(tx *bbolt.Tx) error {
		n = 0
		b := tx.Bucket(bAuthStates)
		var expired [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if int64(u64(v[:min(8, len(v))])) < cutoff {
				expired = append(expired, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	if err != nil {
		return 0, wrap(err, "delete expired auth states")
	}
	return n, nil
}
