package switchboard

import "context"

// Access rules. Every refusal is EFORBIDDEN and names what is missing.

// requireScope fails unless p's token carries scope.
func requireScope(p *Principal, scope string) error {
	if !p.HasScope(scope) {
		return Errorf(EFORBIDDEN, "This API token lacks the %s scope.", scope)
	}
	return nil
}

func requireRole(p *Principal, role Role, what string) error {
	if p.Role != role {
		return Errorf(EFORBIDDEN, "%s needs the %s role; this token acts with the %s role.", what, role, p.Role)
	}
	return nil
}

// reader returns the principal if it may read integrations.
func reader(ctx context.Context) (*Principal, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	return p, requireScope(p, ScopeIntegrationsRead)
}

// writer returns the principal if it may change integrations (its role is
// checked per integration by canManage).
func writer(ctx context.Context) (*Principal, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	return p, requireScope(p, ScopeIntegrationsWrite)
}

func (s *Service) findVisible(ctx context.Context, p *Principal, id string) (*Integration, error) {
	in, err := s.Store.FindIntegrationByID(ctx, p.WorkspaceID, id)
	if err != nil {
		if ErrorCode(err) == ENOTFOUND {
			return nil, notFound(id)
		}
		return nil, err
	}
	if !canSee(p, in) {
		return nil, notFound(id)
	}
	return in, nil
}

// manageable returns the integration id and its principal if the viewer
// may change it: integrations:write, the integration visible to the viewer
// (else NOT_FOUND, like an id that does not exist), and the role to manage
// it (else FORBIDDEN).
func (s *Service) manageable(ctx context.Context, id string) (*Principal, *Integration, error) {
	p, err := writer(ctx)
	if err != nil {
		return nil, nil, err
	}
	cur, err := s.findVisible(ctx, p, id)
	if err != nil {
		return nil, nil, err
	}
	if !canManage(p, cur.Category, cur.OwnerUserID) {
		return nil, nil, forbidden(cur.Category)
	}
	return p, cur, nil
}

func notFound(id string) error {
	return Errorf(ENOTFOUND, "No integration %q in this workspace.", id)
}

func canSee(p *Principal, in *Integration) bool {
	return in.OwnerUserID == "" || in.OwnerUserID == p.UserID
}

// canManage reports whether p may connect, reconnect, configure and
// disconnect an integration of category c owned by owner: admins manage
// the workspace's integrations, everyone manages their own personal ones.
func canManage(p *Principal, c Category, owner string) bool {
	if c.Personal() {
		return p.UserID != "" && owner == p.UserID
	}
	return p.Role == RoleAdmin
}

func forbidden(c Category) error {
	if c.Personal() {
		return Errorf(EFORBIDDEN, "Personal integrations can only be managed by the user they belong to.")
	}
	return Errorf(EFORBIDDEN, "Managing workspace integrations needs the ADMIN role.")
}

// Actions returns the actions the viewer in ctx may take on in.
func (s *Service) Actions(ctx context.Context, in *Integration) []Action {
	p := PrincipalFromContext(ctx)
	if p == nil || !p.HasScope(ScopeIntegrationsWrite) || !canManage(p, in.Category, in.OwnerUserID) {
		return []Action{}
	}
	return ActionsFor(in.Status)
}
