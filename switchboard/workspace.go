package switchboard

import (
	"context"
	"time"
)

// Workspace is one tenant. Every key in the store is scoped by workspace.
type Workspace struct {
	ID        string
	Name      string
	Plan      Plan
	CreatedAt time.Time
}

// Role is what a principal may do in its workspace.
type Role string

const (
	RoleAdmin   Role = "ADMIN"
	RoleMember  Role = "MEMBER"
	RoleSupport Role = "SUPPORT"
)

// Token scopes: what an API token may do, within what its role allows.
const (
	ScopeIntegrationsRead  = "integrations:read"
	ScopeIntegrationsWrite = "integrations:write"
	// ScopeSync is for the product's sync engine: fetching access tokens
	// and reporting sync progress and failures.
	ScopeSync        = "sync"
	ScopeTokensAdmin = "tokens:admin"
)

// DefaultScopes are the scopes of a token created without any.
var DefaultScopes = []string{ScopeIntegrationsRead, ScopeIntegrationsWrite}

// APIToken is a bearer credential. Only a hash of its secret is stored; the
// secret is shown once, when the token is created.
type APIToken struct {
	ID          string
	WorkspaceID string
	// UserID is the user the token acts as (personal integrations belong
	// to it).
	UserID     string
	Name       string
	Role       Role
	Scopes     []string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// Principal is who is asking: resolved from a bearer token at the edge and
// carried in the context.
type Principal struct {
	WorkspaceID string
	UserID      string
	Role        Role
	TokenID     string
	Scopes      []string
	// ExpiresAt is when the token stops working (nil: never). Long-lived
	// connections opened with it are closed then.
	ExpiresAt *time.Time
}

// HasScope reports whether the principal's token carries scope. A token
// without scopes has DefaultScopes; sync and tokens:admin are never
// implied.
func (p *Principal) HasScope(scope string) bool {
	scopes := p.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	for _, s := range scopes {
		if s == scope {
			return true
		}
	}
	return false
}

type principalKey struct{}

// NewContextWithPrincipal returns ctx carrying p.
func NewContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the principal in ctx, or nil.
func PrincipalFromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// RequirePrincipal returns the principal in ctx or an EUNAUTHENTICATED error.
func RequirePrincipal(ctx context.Context) (*Principal, error) {
	p := PrincipalFromContext(ctx)
	if p == nil || p.WorkspaceID == "" {
		return nil, Errorf(EUNAUTHENTICATED, "Sign in: send Authorization: Bearer <token>.")
	}
	return p, nil
}
