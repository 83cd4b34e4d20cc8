package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// Start links live in the auth_states bucket beside their states, in the
// same format (clear expiry prefix + sealed JSON), so the sweep of expired
// states removes them too. Their keys cannot collide with a state's: a
// state's key hashes the bare state, a link's a prefixed ID.

func authStartKey(id string) []byte {
	h := sha256.Sum256([]byte("auth_start\x00" + id))
	return h[:]
}

// authStartAD binds a sealed start link to its ID and its expiry prefix.
func authStartAD(id string, expiry []byte) []byte {
	return append([]byte("auth_start\x00"+id+"\x00"), expiry...)
}

// sealAuthStart returns the key and value of st's record, to be written
// with its state (whose expiry and state it must carry).
func (s *Store) sealAuthStart(st *switchboard.AuthStart, state string, expiry []byte) (key, value []byte, err error) {
	if st.ID == "" || st.State != state {
		return nil, nil, switchboard.Errorf(switchboard.EINVALID, "A start link needs an ID and its own state.")
	}
	pt, err := json.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	sealed, err := s.keyring.Seal(pt, authStartAD(st.ID, expiry))
	clear(pt)
	if err != nil {
		return nil, nil, err
	}
	return authStartKey(st.ID), append(bytes.Clone(expiry), sealed...), nil
}

// FindAuthStart returns a start link, or ENOTFOUND when it is unknown or
// its state was already taken. Expired links are returned for the caller
// to report.
func (s *Store) FindAuthStart(ctx context.Context, id string) (*switchboard.AuthStart, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *switchboard.AuthStart
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bAuthStates)
		v := b.Get(authStartKey(id))
		if len(v) < 8 {
			return switchboard.Errorf(switchboard.ENOTFOUND, "This sign-in link is unknown or was already used.")
		}
		pt, err := s.keyring.Open(v[8:], authStartAD(id, v[:8]))
		if err != nil {
			return err
		}
		st := new(switchboard.AuthStart)
		err = json.Unmarshal(pt, st)
		clear(pt)
		if err != nil {
			return err
		}
		// The link dies with its state.
		if b.Get(authStateKey(st.State)) == nil {
			return switchboard.Errorf(switchboard.ENOTFOUND, "This sign-in link is unknown or was already used.")
		}
		out = st
		return nil
	})
	if err != nil {
		return nil, wrap(err, "find auth start")
	}
	return out, nil
}
