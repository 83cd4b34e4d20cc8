package bolt

import (
	"context"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// BulkCommit commits changes in order in one write transaction, each
// exactly as Commit would (revision, state, changelog, indexes, counters,
// credentials, audit), and returns their events once the transaction is
// durable. Nothing is published: it is for tools that build large files
// (the load command's data-size scenario), not for a running gateway.
// Any failing change rolls back the whole transaction.
func (s *Store) BulkCommit(ctx context.Context, changes []switchboard.Change) ([]*switchboard.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]*switchboard.Event, 0, len(changes))
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, c := range changes {
			if c.WorkspaceID == "" || c.IntegrationID == "" {
				return switchboard.Errorf(switchboard.EINVALID, "Workspace and integration IDs are required.")
			}
			if c.Apply == nil {
				return errNoApply
			}
			r, err := s.commit(tx, c, decodedKey(c.WorkspaceID, c.IntegrationID))
			if err != nil {
				return err
			}
			out = append(out, r.ev)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "bulk commit of %d changes", len(changes))
	}
	return out, nil
}
