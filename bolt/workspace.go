package bolt

import (
	"context"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// CreateWorkspace stores w. A zero CreatedAt is set to now (on w too). An
// existing workspace fails with ECONFLICT.
func (s *Store) CreateWorkspace(ctx context.Context, w *switchboard.Workspace) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w == nil || w.ID == "" {
		return switchboard.Errorf(switchboard.EINVALID, "Workspace ID is required.")
	}
	c := *w
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	c.CreatedAt = c.CreatedAt.UTC()
	defer s.tokens.invalidate()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		ws, err := createWSBucket(tx, c.ID)
		if err != nil {
			return err
		}
		if ws.Get(kInfo) != nil {
			return switchboard.Errorf(switchboard.ECONFLICT, "Workspace %s already exists.", c.ID)
		}
		return putJSON(ws, kInfo, &c)
	})
	if err != nil {
		return wrap(err, "create workspace %s", c.ID)
	}
	w.CreatedAt = c.CreatedAt
	return nil
}

// FindWorkspaceByID returns ENOTFOUND for a workspace never created.
func (s *Store) FindWorkspaceByID(ctx context.Context, id string) (*switchboard.Workspace, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var w *switchboard.Workspace
	err := s.db.View(func(tx *bbolt.Tx) error {
		ws := wsBucket(tx, id)
		var x switchboard.Workspace
		if ws != nil {
			ok, err := getJSON(ws, kInfo, &x)
			if err != nil {
				return err
			}
			if ok {
				w = &x
				return nil
			}
		}
		return switchboard.Errorf(switchboard.ENOTFOUND, "Workspace %s not found.", id)
	})
	if err != nil {
		return nil, wrap(err, "find workspace %s", id)
	}
	return w, nil
}

// CreateAPIToken stores t under secretHash, the SHA-256 of its secret. A
// zero CreatedAt is set to now (on t too). A hash already stored fails with
// ECONFLICT.
func (s *Store) CreateAPIToken(ctx context.Context, t *switchboard.APIToken, secretHash []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t == nil || len(secretHash) == 0 {
		return switchboard.Errorf(switchboard.EINVALID, "An API token and the hash of its secret are required.")
	}
	c := *t
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	c.CreatedAt = c.CreatedAt.UTC()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bAPITokens)
		if b.Get(secretHash) != nil {
			return switchboard.Errorf(switchboard.ECONFLICT, "An API token with this secret already exists.")
		}
		ws, err := createWSBucket(tx, c.WorkspaceID)
		if err != nil {
			return err
		}
		if ws.Bucket(bTokenIDs).Get([]byte(c.ID)) != nil {
			return switchboard.Errorf(switchboard.ECONFLICT, "An API token with ID %s already exists.", c.ID)
		}
		if err := ws.Bucket(bTokenIDs).Put([]byte(c.ID), secretHash); err != nil {
			return err
		}
		return putJSON(b, secretHash, &c)
	})
	if err != nil {
		return wrap(err, "create API token %s", c.ID)
	}
	t.CreatedAt = c.CreatedAt
	return nil
}

// FindAPITokenByHash returns ENOTFOUND for an unknown hash.
func (s *Store) FindAPITokenByHash(ctx context.Context, secretHash []byte) (*switchboard.APIToken, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// g is read before the read transaction: see tokenCache.
	cached, g, ok := s.tokens.get(secretHash)
	if ok {
		return cached, nil
	}
	var t *switchboard.APIToken
	err := s.db.View(func(tx *bbolt.Tx) error {
		var x switchboard.APIToken
		ok, err := false, error(nil)
		if len(secretHash) > 0 {
			ok, err = getJSON(tx.Bucket(bAPITokens), secretHash, &x)
		}
		if err != nil {
			return err
		}
		if !ok {
			return switchboard.Errorf(switchboard.ENOTFOUND, "API token not found.")
		}
		t = &x
		return nil
	})
	if err != nil {
		return nil, wrap(err, "find API token")
	}
	s.tokens.put(secretHash, g, t)
	return t, nil
}
