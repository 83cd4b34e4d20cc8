package switchboard

import (
	"context"
	"fmt"
)

// Disconnect ends a connection permanently. The card is DISCONNECTED in the
// same transaction that queues the teardown of the old generation (revoke
// at the provider, delete the tokens); the teardown runs in the background
// and can never touch a newer connection. Disconnecting a disconnected
// integration changes nothing.
func (s *Service) Disconnect(ctx context.Context, id string, confirm bool) (*Integration, error) {
	return s.DisconnectAt(ctx, id, confirm, 0)
}

// DisconnectAt is Disconnect that fails with ECONFLICT unless the
// integration is at expectedRevision (0: any).
func (s *Service) DisconnectAt(ctx context.Context, id string, confirm bool, expectedRevision uint64) (*Integration, error) {
	p, cur, err := s.manageable(ctx, id)
	if err != nil {
		return nil, err
	}
	if !confirm {
		return nil, &Error{Code: ECONFIRM, Field: "confirm", Message: cur.DisconnectWarning() + " Send confirm: true to disconnect."}
	}
	now := s.now()
	ev, err := s.Commit(ctx, Change{
		WorkspaceID:      p.WorkspaceID,
		IntegrationID:    id,
		ExpectedRevision: expectedRevision,
		At:               now,
		Teardown: &TeardownJob{
			WorkspaceID:   p.WorkspaceID,
			IntegrationID: id,
			ProviderID:    cur.ProviderID,
			Generation:    cur.Generation,
			NextAttemptAt: now,
			CreatedAt:     now,
		},
		Apply: func(c *Integration) (*Integration, EventKind, error) {
			if c.Status == StatusDisconnected {
				return nil, "", nil
			}
			if c.Generation != cur.Generation {
				// Reconnected between our read and this commit; the
				// queued job must name the generation it tears down.
				return nil, "", Errorf(ECONFLICT, "The integration changed while disconnecting; try again.")
			}
			c.Status = StatusDisconnected
			c.StatusReason = ReasonUserDisconnected
			c.StatusMessage = "Disconnected. Data already synced stays; nothing new syncs."
			closeAccountPeriod(c, now)
			c.Account = nil
			c.GrantedScopes = nil
			c.MissingScopes = nil
			return c, EventDisconnected, nil
		},
		Audit: func(ev *Event) *AuditEntry {
			return auditEntry(p, ev.At, "disconnectIntegration", id, fmt.Sprintf("generation %d, revision %d", cur.Generation, ev.Revision))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("disconnect %s: %w", id, err)
	}
	if ev == nil {
		return s.Store.FindIntegrationByID(ctx, p.WorkspaceID, id)
	}
	s.kickTeardowns()
	return ev.Integration, nil
}
