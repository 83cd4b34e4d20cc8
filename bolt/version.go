package bolt

import "sync"

// versions counts, per workspace, the committed writes to its
// integrations in this process. A cache of anything derived from a
// workspace's integrations keys its entries by this version: every commit
// raises it after the transaction is durable and before Commit returns,
// so a read that starts after a commit returned sees a new version. The
// counters live in memory only; a restarted process starts with empty
// caches, so they need not survive it.
type versions struct {
	mu sync.RWMutex
	m  map[string]uint64
}

// IntegrationsVersion is the workspace's integrations version: it changes
// (only ever upwards) with every commit that can change what a query of the
// workspace's integrations returns.
func (s *Store) IntegrationsVersion(workspaceID string) uint64 {
	s.versions.mu.RLock()
	v := s.versions.m[workspaceID]
	s.versions.mu.RUnlock()
	return v
}

func (s *Store) bumpVersion(workspaceID string) {
	s.versions.mu.Lock()
	if s.versions.m == nil {
		s.versions.m = map[string]uint64{}
	}
	s.versions.m[workspaceID]++
	s.versions.mu.Unlock()
}
