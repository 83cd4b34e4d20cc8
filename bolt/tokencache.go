package bolt

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// tokenCache keeps decoded API tokens by the hash of their secret, so that
// authenticating a request needs no read transaction and no JSON decode.
//
// Every write to the api_tokens bucket (create, revoke, touch, wipe) raises
// gen after its transaction returns and empties the map; an entry counts
// only while its gen is the current one. A lookup reads gen before the
// read transaction it fills the cache from, so a value read before a write
// committed is tagged with the older gen and is never served after the
// write returns: a revocation takes effect the moment RevokeAPIToken
// returns, as without the cache. This process is the file's only writer
// (bbolt's file lock), so no change can bypass gen. Expiry and revocation
// are still checked on every use by the caller, on the returned value.
type tokenCache struct {
	gen atomic.Uint64
	mu  sync.RWMutex
	m   map[string]tokenEntry
}

type tokenEntry struct {
	gen uint64
	t   *switchboard.APIToken // never handed out; copies are
}

const tokenCacheMax = 1 << 14

// get returns a copy of the cached token for hash, if current.
func (c *tokenCache) get(hash []byte) (*switchboard.APIToken, uint64, bool) {
	g := c.gen.Load()
	c.mu.RLock()
	e, ok := c.m[string(hash)]
	c.mu.RUnlock()
	if ok && e.gen == g {
		return copyToken(e.t), g, true
	}
	return nil, g, false
}

// put keeps t for hash, tagged with gen g read before t was read.
func (c *tokenCache) put(hash []byte, g uint64, t *switchboard.APIToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g != c.gen.Load() {
		return // a write came in between; the next lookup reads again
	}
	if c.m == nil {
		c.m = make(map[string]tokenEntry)
	}
	if len(c.m) >= tokenCacheMax {
		clear(c.m)
	}
	c.m[string(hash)] = tokenEntry{gen: g, t: copyToken(t)}
}

// invalidate is called after every transaction that writes api_tokens.
func (c *tokenCache) invalidate() {
	c.mu.Lock()
	c.gen.Add(1)
	clear(c.m)
	c.mu.Unlock()
}

func copyToken(t *switchboard.APIToken) *switchboard.APIToken {
	c := *t
	c.Scopes = slices.Clone(t.Scopes)
	for _, p := range []**time.Time{&c.ExpiresAt, &c.RevokedAt, &c.LastUsedAt} {
		if *p != nil {
			v := **p
			*p = &v
		}
	}
	return &c
}
