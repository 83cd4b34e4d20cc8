package bolt

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/bont/switchboard/switchboard"
)

// decodedCache keeps the decoded form of recently read integrations next
// to the exact bytes they were decoded from. A read that finds the same
// bytes in the file gets a copy of the decoded value instead of decoding
// again; any other bytes (a later commit, a rolled-back batch) miss and
// are decoded. So it can never return what the file does not hold, and
// it needs no invalidation.
//
// A mutation reads its integration twice, once to check the caller may
// change it and once inside the commit's transaction; the second read,
// which runs serially inside DB.Batch, is the one this saves.
type decodedCache struct {
	mu sync.Mutex
	m  map[string]decodedEntry
}

type decodedEntry struct {
	raw []byte
	in  *switchboard.Integration // never handed out; copies are
}

// decodedCacheMax bounds the entries; when full, some are dropped.
const decodedCacheMax = 1 << 14

func decodedKey(workspaceID, id string) string { return workspaceID + "\x00" + id }

// integration decodes raw, the stored value of the integration key.
func (c *decodedCache) integration(key string, raw []byte) (*switchboard.Integration, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && bytes.Equal(e.raw, raw) {
		return copyIntegration(e.in), nil
	}
	in := new(switchboard.Integration)
	if err := json.Unmarshal(raw, in); err != nil {
		return nil, err
	}
	e = decodedEntry{raw: bytes.Clone(raw), in: copyIntegration(in)}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]decodedEntry)
	}
	if len(c.m) >= decodedCacheMax {
		n := 0
		for k := range c.m { // map order is random: drop an arbitrary eighth
			delete(c.m, k)
			if n++; n >= decodedCacheMax/8 {
				break
			}
		}
	}
	c.m[key] = e
	c.mu.Unlock()
	return in, nil
}

// copyIntegration is a deep copy that keeps a nil AccountHistory nil, as
// decoding would.
func copyIntegration(in *switchboard.Integration) *switchboard.Integration {
	c := in.Clone()
	if in.AccountHistory == nil {
		c.AccountHistory = nil
	}
	return c
}
