package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// EventsAfter returns up to limit events of a workspace with revision >
// after, in revision order; limit <= 0 means all. It fails with EINVALID
// when after is beyond the latest revision and with ECOMPACTED when
// retention dropped events after `after`. A workspace without events (or
// that does not exist) has none.
func (s *Store) EventsAfter(ctx context.Context, workspaceID string, after uint64, limit int) ([]*switchboard.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*switchboard.Event{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		latest := u64(tx.Bucket(bMeta).Get(kRevision))
		if after > latest {
			return switchboard.Errorf(switchboard.EINVALID,
				"Revision %d is ahead of the latest revision %d.", after, latest)
		}
		ws := wsBucket(tx, workspaceID)
		if ws == nil {
			return nil
		}
		if compacted := u64(ws.Get(kCompactedThrough)); after < compacted {
			return switchboard.Errorf(switchboard.ECOMPACTED,
				"Events after revision %d are no longer kept (the changelog starts after revision %d). Refetch the integrations and subscribe from the revision they carry.",
				after, compacted)
		}
		cl := ws.Bucket(bChangelog)
		if cl == nil {
			return nil
		}
		c := cl.Cursor()
		for k, v := c.Seek(u64bytes(after + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			ev := new(switchboard.Event)
			if err := decodeEvent(v, ev); err != nil {
				return fmt.Errorf("decode event %d: %w", u64(k), err)
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "events %s after %d", workspaceID, after)
	}
	return out, nil
}

// retain drops a workspace's oldest events beyond the count bound or older
// than the age bound, never the event of revision newest, and records the
// highest dropped revision as the compaction point.
func (s *Store) retain(ws *bbolt.Bucket, now time.Time, newest uint64) error {
	if s.maxEvents <= 0 && s.maxAge <= 0 {
		return nil
	}
	cl := ws.Bucket(bChangelog)
	count := u64(ws.Get(kChangelogCount))
	compacted := u64(ws.Get(kCompactedThrough))
	dropped := false
	cur := cl.Cursor()
	for {
		k, v := cur.First()
		if k == nil || u64(k) >= newest {
			break
		}
		drop := s.maxEvents > 0 && count > uint64(s.maxEvents)
		if !drop && s.maxAge > 0 {
			at, err := eventAt(v)
			if err != nil {
				return fmt.Errorf("decode event %d: %w", u64(k), err)
			}
			drop = at.Before(now.Add(-s.maxAge))
		}
		if !drop {
			break
		}
		rev := u64(k)
		if err := cl.Delete(k); err != nil {
			return err
		}
		count--
		compacted = max(compacted, rev)
		dropped = true
	}
	if !dropped {
		return nil
	}
	if err := ws.Put(kChangelogCount, u64bytes(count)); err != nil {
		return err
	}
	return ws.Put(kCompactedThrough, u64bytes(compacted))
}

// eventAt returns the At of a stored event. Every commit checks the age of
// its workspace's oldest event, so the common layout json.Marshal writes
// for switchboard.Event ({"Revision":<n>,"At":"<RFC 3339>",...) is read
// without decoding the whole event; anything else is decoded in full.
func eventAt(v []byte) (time.Time, error) {
	const head, at = `{"Revision":`, `,"At":"`
	if bytes.HasPrefix(v, []byte(head)) {
		i := len(head)
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
		if bytes.HasPrefix(v[i:], []byte(at)) {
			rest := v[i+len(at):]
			if j := bytes.IndexByte(rest, '"'); j > 0 {
				if t, err := time.Parse(time.RFC3339Nano, string(rest[:j])); err == nil {
					return t, nil
				}
			}
		}
	}
	var e struct{ At time.Time }
	if err := json.Unmarshal(v, &e); err != nil {
		return time.Time{}, err
	}
	return e.At, nil
}
