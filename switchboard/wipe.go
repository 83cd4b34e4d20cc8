package switchboard

import (
	"context"
	"fmt"
)

// WipeWorkspace irreversibly wipes the viewer's workspace: every
// integration is disconnected (its provider tokens revoked and deleted by
// the teardown jobs queued in the same transaction), the history
// (changelog, account history, settings) and the API tokens are deleted,
// and one WORKSPACE_WIPED event per integration tells the sync engine to
// delete what it synced. Only SUPPORT may wipe, and confirmName must be
// the workspace's name exactly.
func (s *Service) WipeWorkspace(ctx context.Context, confirmName string) (*WipeResult, error) {
	p, err := writer(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireRole(p, RoleSupport, "Wiping a workspace"); err != nil {
		return nil, err
	}
	ws, err := s.Store.FindWorkspaceByID(ctx, p.WorkspaceID)
	if err != nil {
		return nil, fmt.Errorf("wipe: %w", err)
	}
	if confirmName != ws.Name {
		return nil, &Error{Code: ECONFIRM, Field: "confirmName", Message: fmt.Sprintf("Wiping is irreversible: it disconnects every integration and deletes the workspace's tokens, history and synced data. Type the workspace's name (%q) as confirmName.", ws.Name)}
	}
	res, err := s.Store.WipeWorkspace(ctx, p.WorkspaceID, s.now())
	if err != nil {
		return nil, fmt.Errorf("wipe: %w", err)
	}
	for _, ev := range res.Events {
		s.publish(ev, nil)
	}
	res.Workspace = ws
	s.kickTeardowns()
	s.audit(ctx, p, "wipeWorkspace", p.WorkspaceID, fmt.Sprintf("%d integrations, %d teardowns, %d tokens deleted", len(res.Events), res.Teardowns, len(res.DeletedTokenIDs)))
	s.tokensRevoked(res.DeletedTokenIDs...)
	return res, nil
}
