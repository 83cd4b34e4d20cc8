package switchboard

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TokenPrefix starts every API token, so a leaked one is easy to spot.
const TokenPrefix = "sbt_"

// HashToken is how API token secrets are stored and looked up.
func HashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// CreateAPIToken makes a token for a workspace and returns its secret,
// which is not stored and cannot be shown again.
func (s *Service) CreateAPIToken(ctx context.Context, t *APIToken) (string, error) {
	if t.ID == "" {
		t.ID = NewID("tok")
	}
	t.CreatedAt = s.now()
	secret := TokenPrefix + randomToken(32)
	if err := s.Store.CreateAPIToken(ctx, t, HashToken(secret)); err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return secret, nil
}

// Authenticate resolves a bearer token to a principal. Every failure is
// EUNAUTHENTICATED with no hint of which part was wrong.
func (s *Service) Authenticate(ctx context.Context, bearer string) (*Principal, error) {
	fail := func() error {
		return Errorf(EUNAUTHENTICATED, "The API token is not valid. Send Authorization: Bearer <token> with a current token.")
	}
	if !strings.HasPrefix(bearer, TokenPrefix) || len(bearer) > 200 {
		return nil, fail()
	}
	t, err := s.Store.FindAPITokenByHash(ctx, HashToken(bearer))
	if ErrorCode(err) == ENOTFOUND {
		return nil, fail()
	} else if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	now := s.now()
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)) {
		return nil, fail()
	}
	s.touch(ctx, t, now)
	return &Principal{WorkspaceID: t.WorkspaceID, UserID: t.UserID, Role: t.Role, TokenID: t.ID, Scopes: t.Scopes, ExpiresAt: t.ExpiresAt}, nil
}

// CreateTokenInput describes a new API token.
type CreateTokenInput struct {
	Name string
	// UserID is the user the token acts as; empty means the viewer's own.
	UserID string
	// Scopes nil means DefaultScopes.
	Scopes    []string
	ExpiresAt *time.Time
}

// CreatedAPIToken is a new token and its secret, which is shown this once.
type CreatedAPIToken struct {
	Token  *APIToken
	Secret string
}

// CreateToken makes an API token. It needs the tokens:admin scope. A token
// acts as a user with that user's role: admins may create tokens for any
// user of the workspace, others only for themselves.
//
// A token never creates a token that holds a scope it lacks or outlives
// it: asking for such a scope or a later expiresAt is EFORBIDDEN. Without
// scopes the new token gets the default scopes the viewer's token holds;
// without expiresAt it expires with the viewer's token (never, when the
// viewer's token never expires).
func (s *Service) CreateToken(ctx context.Context, in CreateTokenInput) (*CreatedAPIToken, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireScope(p, ScopeTokensAdmin); err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Name) == "" || len(in.Name) > 200 {
		return nil, &Error{Code: EINVALID, Field: "name", Message: "A token needs a name of at most 200 characters, to recognise it later."}
	}
	userID := in.UserID
	if userID == "" {
		userID = p.UserID
	}
	role := p.Role
	if userID != p.UserID {
		if p.Role != RoleAdmin {
			return nil, Errorf(EFORBIDDEN, "Creating a token for another user needs the ADMIN role; this token acts with the %s role.", p.Role)
		}
		u, err := s.Store.FindUserByID(ctx, p.WorkspaceID, userID)
		if ErrorCode(err) == ENOTFOUND {
			return nil, &Error{Code: ENOTFOUND, Field: "userId", Message: fmt.Sprintf("No user %q in this workspace.", userID)}
		} else if err != nil {
			return nil, fmt.Errorf("create token: %w", err)
		}
		if u.Role == RoleSupport {
			return nil, Errorf(EFORBIDDEN, "Tokens for SUPPORT users are created with the command line only.")
		}
		role = u.Role
	}
	scopes, err := childScopes(p, in.Scopes)
	if err != nil {
		return nil, err
	}
	expiresAt, err := childExpiry(p, in.ExpiresAt, s.now())
	if err != nil {
		return nil, err
	}
	t := &APIToken{WorkspaceID: p.WorkspaceID, UserID: userID, Name: strings.TrimSpace(in.Name), Role: role, Scopes: scopes, ExpiresAt: expiresAt}
	secret, err := s.CreateAPIToken(ctx, t)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, p, "createApiToken", t.ID, fmt.Sprintf("for user %s, role %s, scopes %s", t.UserID, t.Role, strings.Join(t.Scopes, " ")))
	return &CreatedAPIToken{Token: t, Secret: secret}, nil
}

// childScopes returns the scopes of a token p creates: those asked for,
// each of which p's token must hold, or without any, the default scopes
// p's token holds.
func childScopes(p *Principal, asked []string) ([]string, error) {
	if len(asked) == 0 {
		var out []string
		for _, sc := range DefaultScopes {
			if p.HasScope(sc) {
				out = append(out, sc)
			}
		}
		if len(out) == 0 {
			return nil, &Error{Code: EFORBIDDEN, Field: "scopes", Message: fmt.Sprintf("This token holds none of the default scopes (%s); name the scopes the new token should have, among those this token holds (%s).",
				strings.Join(DefaultScopes, ", "), strings.Join(p.EffectiveScopes(), ", "))}
		}
		return normalizeScopes(out)
	}
	scopes, err := normalizeScopes(asked)
	if err != nil {
		return nil, err
	}
	for _, sc := range scopes {
		if !p.HasScope(sc) {
			return nil, &Error{Code: EFORBIDDEN, Field: "scopes", Message: fmt.Sprintf("A token cannot grant the %s scope, which it lacks itself; this token holds %s.", sc, strings.Join(p.EffectiveScopes(), ", "))}
		}
	}
	return scopes, nil
}

// childExpiry returns the expiry of a token p creates: the one asked for,
// which must be in the future and no later than p's token's, or without
// one, p's token's (nil: never).
func childExpiry(p *Principal, asked *time.Time, now time.Time) (*time.Time, error) {
	if asked == nil {
		if p.ExpiresAt == nil {
			return nil, nil
		}
		t := p.ExpiresAt.UTC()
		return &t, nil
	}
	if !asked.After(now) {
		return nil, &Error{Code: EINVALID, Field: "expiresAt", Message: "expiresAt must be in the future."}
	}
	if p.ExpiresAt != nil && asked.After(*p.ExpiresAt) {
		return nil, &Error{Code: EFORBIDDEN, Field: "expiresAt", Message: fmt.Sprintf("This token expires at %s, and a token cannot create one that outlives it: set expiresAt no later than that, or omit it to expire together.",
			p.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	t := asked.UTC()
	return &t, nil
}

// normalizeScopes checks scopes and returns them sorted and deduplicated;
// none means DefaultScopes.
func normalizeScopes(in []string) ([]string, error) {
	if len(in) == 0 {
		return slices.Clone(DefaultScopes), nil
	}
	var out []string
	for _, sc := range in {
		if !slices.Contains(KnownScopes, sc) {
			return nil, &Error{Code: EINVALID, Field: "scopes", Message: fmt.Sprintf("Unknown scope %q; scopes are %s.", sc, strings.Join(KnownScopes, ", "))}
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	slices.Sort(out)
	return out, nil
}

// APITokens lists tokens (never their secrets): an admin sees the
// workspace's, anyone else their own. Needs tokens:admin.
func (s *Service) APITokens(ctx context.Context) ([]*APIToken, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireScope(p, ScopeTokensAdmin); err != nil {
		return nil, err
	}
	all, err := s.Store.FindAPITokens(ctx, p.WorkspaceID)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, t := range all {
		if p.Role == RoleAdmin || t.UserID == p.UserID {
			out = append(out, t)
		}
	}
	return out, nil
}

// RevokeToken revokes a token at once: HTTP requests with it fail from
// now, and websockets opened with it are closed (TokensRevoked). Admins
// revoke any token of the workspace, others their own. Revoking a revoked
// token changes nothing.
func (s *Service) RevokeToken(ctx context.Context, id string) (*APIToken, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireScope(p, ScopeTokensAdmin); err != nil {
		return nil, err
	}
	t, err := s.Store.FindAPITokenByID(ctx, p.WorkspaceID, id)
	if ErrorCode(err) == ENOTFOUND || (err == nil && p.Role != RoleAdmin && t.UserID != p.UserID) {
		return nil, Errorf(ENOTFOUND, "No API token %q in this workspace.", id)
	} else if err != nil {
		return nil, err
	}
	if t.RevokedAt != nil {
		return t, nil
	}
	t, err = s.Store.RevokeAPIToken(ctx, p.WorkspaceID, id, s.now())
	if err != nil {
		return nil, fmt.Errorf("revoke token: %w", err)
	}
	s.tokensRevoked(t.ID)
	s.audit(ctx, p, "revokeApiToken", t.ID, "")
	return t, nil
}

func (s *Service) tokensRevoked(ids ...string) {
	if s.TokensRevoked != nil && len(ids) > 0 {
		s.TokensRevoked(ids)
	}
}

// lastUsedEvery bounds how often a token's LastUsedAt is written.
const lastUsedEvery = time.Minute

// touch records a token's use at most once a minute per token, so that
// authentication is not a write per request.
func (s *Service) touch(ctx context.Context, t *APIToken, now time.Time) {
	if t.LastUsedAt != nil && now.Sub(*t.LastUsedAt) < lastUsedEvery {
		return
	}
	s.touchMu.Lock()
	if s.touched == nil {
		s.touched = map[string]time.Time{}
	}
	last, ok := s.touched[t.ID]
	if ok && now.Sub(last) < lastUsedEvery {
		s.touchMu.Unlock()
		return
	}
	s.touched[t.ID] = now
	if len(s.touched) > 100000 {
		for k, v := range s.touched {
			if now.Sub(v) >= lastUsedEvery {
				delete(s.touched, k)
			}
		}
	}
	s.touchMu.Unlock()
	if err := s.Store.TouchAPIToken(ctx, t.WorkspaceID, t.ID, now); err != nil {
		s.Log().Warn("recording token use", "token", t.ID, "err", err)
	}
}
