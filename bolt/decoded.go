package bolt

import (
	"bytes"
	"sync"
	"time"
	"unicode/utf8"

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
// change it (a read transaction, which sees the last committed bytes) and
// once inside the commit's transaction (which sees what earlier commits
// of the same batch wrote). So each key keeps two versions: the one a
// commit wrote last, which the next commit of the batch reads, and the
// newest one known to be committed (or read), which readers outside the
// batch see until it commits. With one version the two kinds of reader
// replaced each other's entry and both decoded.
type decodedCache struct {
	mu sync.Mutex
	m  map[string]decodedEntry
}

type decodedEntry struct {
	written decodedVersion // the latest a commit wrote, durable or not
	read    decodedVersion // the newest committed or read one
}

// decodedVersion is one integration's stored bytes and their decoded
// value. in is never handed out; copies are. raw is never changed.
type decodedVersion struct {
	raw []byte
	in  *switchboard.Integration
}

func (v decodedVersion) rev() uint64 {
	if v.in == nil {
		return 0
	}
	return v.in.Revision
}

// decodedCacheMax bounds the entries; when full, some are dropped.
const decodedCacheMax = 1 << 14

func decodedKey(workspaceID, id string) string { return workspaceID + "\x00" + id }

// integration decodes raw, the stored value of the integration key.
func (c *decodedCache) integration(key string, raw []byte) (*switchboard.Integration, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		if e.written.in != nil && bytes.Equal(e.written.raw, raw) {
			return copyIntegration(e.written.in), nil
		}
		if e.read.in != nil && bytes.Equal(e.read.raw, raw) {
			return copyIntegration(e.read.in), nil
		}
	}
	in := new(switchboard.Integration)
	if err := decodeIntegration(raw, in); err != nil {
		return nil, err
	}
	// A reader that started before a commit must not replace what that
	// commit recorded with the older bytes it saw.
	c.put(key, decodedVersion{raw: bytes.Clone(raw), in: copyIntegration(in)}, false)
	return in, nil
}

// put records v as key's written version or, unless a newer one is
// known, as its read version.
func (c *decodedCache) put(key string, v decodedVersion, written bool) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]decodedEntry)
	}
	e, ok := c.m[key]
	if !ok && len(c.m) >= decodedCacheMax {
		n := 0
		for k := range c.m { // map order is random: drop an arbitrary eighth
			delete(c.m, k)
			if n++; n >= decodedCacheMax/8 {
				break
			}
		}
	}
	switch {
	case written:
		e.written = v
	case v.rev() >= e.read.rev():
		e.read = v
	}
	c.m[key] = e
	c.mu.Unlock()
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

// wrote records that raw, just written for key inside a commit, decodes
// to in, so that the next commit of the same batch that reads the
// integration does not decode it again, and returns what it recorded for
// committed. It records nothing unless a copy of in can be made equal to
// what json.Unmarshal(raw) returns: every time must be at offset 0
// (marshalled as "Z", decoded in UTC) and every string valid UTF-8
// (json.Marshal replaces invalid bytes). A rolled-back batch leaves other
// bytes in the file, which miss. raw is kept, not copied: the caller
// must not change it.
func (c *decodedCache) wrote(key string, raw []byte, in *switchboard.Integration) decodedVersion {
	v := copyIntegration(in)
	if !canonical(v) {
		return decodedVersion{}
	}
	dv := decodedVersion{raw: raw, in: v}
	c.put(key, dv, true)
	return dv
}

// committed records that v (returned by wrote) is durable, so that
// readers outside the next batch find it, unless a newer one is known.
func (c *decodedCache) committed(key string, v decodedVersion) {
	if v.in == nil {
		return
	}
	c.put(key, v, false)
}

// canonical turns v's times to UTC without monotonic readings and reports
// whether v is now what decoding its JSON gives. Slices and maps keep
// their nil-ness through a JSON round trip (null and [] or {}).
func canonical(v *switchboard.Integration) bool {
	ok := true
	t := func(p *time.Time) {
		if _, off := p.Zone(); off != 0 {
			ok = false
		}
		*p = p.UTC()
	}
	tp := func(p *time.Time) {
		if p != nil {
			t(p)
		}
	}
	s := func(ss ...string) {
		for _, x := range ss {
			if !utf8.ValidString(x) {
				ok = false
			}
		}
	}
	s(v.ID, v.WorkspaceID, v.ProviderID, string(v.Category), v.OwnerUserID, string(v.Status), v.StatusReason, v.StatusMessage, v.SyncCheckpoint)
	if v.Account != nil {
		s(v.Account.ID, v.Account.Name, v.Account.Email)
	}
	for i := range v.AccountHistory {
		p := &v.AccountHistory[i]
		s(p.Account.ID, p.Account.Name, p.Account.Email)
		t(&p.From)
		tp(p.Until)
	}
	s(v.GrantedScopes...)
	s(v.MissingScopes...)
	tp(v.ConnectedAt)
	tp(v.LastSyncedAt)
	for k, x := range v.SettingValues {
		s(k, x)
	}
	t(&v.CreatedAt)
	t(&v.UpdatedAt)
	return ok
}
