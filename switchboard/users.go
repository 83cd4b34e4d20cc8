package switchboard

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Viewer is who is asking.
type Viewer struct {
	Principal *Principal
	User      *User // nil when the token's user has no record
	Workspace *Workspace
}

// Viewer returns who is asking: user, workspace, role and scopes. Any
// valid token may ask.
func (s *Service) Viewer(ctx context.Context) (*Viewer, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	ws, err := s.Store.FindWorkspaceByID(ctx, p.WorkspaceID)
	if err != nil {
		return nil, fmt.Errorf("viewer: %w", err)
	}
	v := &Viewer{Principal: p, Workspace: ws}
	if u, err := s.Store.FindUserByID(ctx, p.WorkspaceID, p.UserID); err == nil {
		v.User = u
	} else if ErrorCode(err) != ENOTFOUND {
		return nil, fmt.Errorf("viewer: %w", err)
	}
	return v, nil
}

// EffectiveScopes returns the scopes p's token carries.
func (p *Principal) EffectiveScopes() []string {
	if len(p.Scopes) == 0 {
		return slices.Clone(DefaultScopes)
	}
	return slices.Clone(p.Scopes)
}

// NewUserInput adds a person to the viewer's workspace.
type NewUserInput struct {
	Name  string
	Email string
	Role  Role
}

// CreateUser adds a user to the viewer's workspace. It needs the ADMIN
// role and the tokens:admin scope. SUPPORT users are the product's staff:
// they are created with the command line, not through the API.
func (s *Service) CreateUser(ctx context.Context, in NewUserInput) (*User, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireScope(p, ScopeTokensAdmin); err != nil {
		return nil, err
	}
	if err := requireRole(p, RoleAdmin, "Adding users"); err != nil {
		return nil, err
	}
	if in.Role != RoleAdmin && in.Role != RoleMember {
		return nil, &Error{Code: EINVALID, Field: "role", Message: "A user's role is ADMIN or MEMBER; SUPPORT users are created with `switchboard token create --role support`."}
	}
	if strings.TrimSpace(in.Name) == "" || len(in.Name) > 200 {
		return nil, &Error{Code: EINVALID, Field: "name", Message: "A user needs a name of at most 200 characters."}
	}
	if len(in.Email) > 320 || (in.Email != "" && !strings.Contains(in.Email, "@")) {
		return nil, &Error{Code: EINVALID, Field: "email", Message: "The email address is not valid."}
	}
	u := &User{ID: NewID("usr"), WorkspaceID: p.WorkspaceID, Name: strings.TrimSpace(in.Name), Email: in.Email, Role: in.Role, CreatedAt: s.now()}
	if err := s.Store.CreateUser(ctx, u); err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	s.audit(ctx, p, "createUser", u.ID, "role "+string(u.Role))
	return u, nil
}

// Users lists the viewer's workspace's users (ADMIN, tokens:admin).
func (s *Service) Users(ctx context.Context) ([]*User, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireScope(p, ScopeTokensAdmin); err != nil {
		return nil, err
	}
	if err := requireRole(p, RoleAdmin, "Listing users"); err != nil {
		return nil, err
	}
	return s.Store.FindUsers(ctx, p.WorkspaceID)
}
