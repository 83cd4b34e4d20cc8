package switchboard

import (
	"context"
	"sync"
)

// identity is what never changes about an integration once it exists: the
// service sets its provider, category and owner when it creates the card
// and no change after that touches them, and no integration is ever
// deleted (a wiped workspace keeps its cards, disconnected).
type identity struct {
	providerID string
	category   Category
	owner      string
}

// identities remembers the identity of integrations read before, by
// workspace and ID, so that checking who may change one (manageableID)
// needs no read of the store once the integration has been seen. Because
// an identity never changes and integrations are never deleted, an entry
// can never go stale; the memory holds at most identitiesMax entries and
// starts over when full.
type identities struct {
	mu sync.RWMutex
	m  map[string]identity
}

const identitiesMax = 1 << 16

func identityKey(workspaceID, id string) string { return workspaceID + "\x00" + id }

func (c *identities) get(key string) (identity, bool) {
	c.mu.RLock()
	v, ok := c.m[key]
	c.mu.RUnlock()
	return v, ok
}

func (c *identities) put(key string, in *Integration) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= identitiesMax {
		c.m = make(map[string]identity)
	}
	c.m[key] = identity{providerID: in.ProviderID, category: in.Category, owner: in.OwnerUserID}
	c.mu.Unlock()
}

// manageableID is manageable for changes that need only the integration's
// identity before their commit (configure): the same checks in the same
// order with the same errors, answered from memory for an integration
// seen before. It returns the principal and the integration's provider ID.
// Everything that can change (status, settings, revision) is read and
// checked again inside the commit.
func (s *Service) manageableID(ctx context.Context, id string) (*Principal, string, error) {
	p, err := writer(ctx)
	if err != nil {
		return nil, "", err
	}
	key := identityKey(p.WorkspaceID, id)
	ident, ok := s.identities.get(key)
	if !ok {
		cur, err := s.Store.FindIntegrationByID(ctx, p.WorkspaceID, id)
		if err != nil {
			if ErrorCode(err) == ENOTFOUND {
				return nil, "", notFound(id)
			}
			return nil, "", err
		}
		s.identities.put(key, cur)
		ident = identity{providerID: cur.ProviderID, category: cur.Category, owner: cur.OwnerUserID}
	}
	if ident.owner != "" && ident.owner != p.UserID { // canSee
		return nil, "", notFound(id)
	}
	if !canManage(p, ident.category, ident.owner) {
		return nil, "", forbidden(ident.category)
	}
	return p, ident.providerID, nil
}
