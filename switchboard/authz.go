package switchboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

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

// ---- viewer ----

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

// ---- users ----

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

// ---- API tokens ----

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
		s.logger().Warn("recording token use", "token", t.ID, "err", err)
	}
}

// ---- audit ----

// AuditMaxEntries bounds each workspace's audit log (the store keeps the
// newest); AuditMaxAge drops older entries.
const (
	AuditMaxEntries = 10000
	AuditMaxAge     = 365 * 24 * time.Hour
)

// audit records a change made by p. A failure to record is logged; the
// change itself has already committed.
func (s *Service) audit(ctx context.Context, p *Principal, action, target, detail string) {
	e := auditEntry(p, s.now(), action, target, detail)
	if err := s.Store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.logger().Error("writing audit entry", "workspace", p.WorkspaceID, "action", action, "err", err)
	}
}

// auditEntry is the record of a change made by p. Changes to an
// integration hand it to the store in Change.Audit, so it commits with
// them; other changes append it with audit.
func auditEntry(p *Principal, at time.Time, action, target, detail string) *AuditEntry {
	return &AuditEntry{WorkspaceID: p.WorkspaceID, At: at, UserID: p.UserID, TokenID: p.TokenID, Role: p.Role, Action: action, Target: target, Detail: detail}
}

// AuditPage is one page of the audit log, newest first.
type AuditPage struct {
	Entries    []*AuditEntry
	NextCursor string // empty on the last page
}

// AuditLog returns the viewer's workspace's audit log, newest first. It
// needs the ADMIN role and the integrations:read scope. after is the
// NextCursor of the previous page.
func (s *Service) AuditLog(ctx context.Context, first int, after string) (*AuditPage, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireRole(p, RoleAdmin, "Reading the audit log"); err != nil {
		return nil, err
	}
	if first <= 0 || first > 500 {
		return nil, &Error{Code: EINVALID, Field: "first", Message: "first must be between 1 and 500."}
	}
	var before uint64
	if after != "" {
		if _, err := fmt.Sscanf(after, "a%d", &before); err != nil || before == 0 {
			return nil, &Error{Code: EINVALID, Field: "after", Message: "after must be a cursor returned by auditLog."}
		}
	}
	entries, err := s.Store.FindAudit(ctx, p.WorkspaceID, before, first+1)
	if err != nil {
		return nil, err
	}
	page := &AuditPage{Entries: entries}
	if len(entries) > first {
		page.Entries = entries[:first]
		page.NextCursor = fmt.Sprintf("a%d", entries[first-1].Seq)
	}
	return page, nil
}

// ---- idempotency ----

// IdempotencyTTL is how long a mutation's first result is replayed.
const IdempotencyTTL = 24 * time.Hour

// Idempotent runs fn once per (workspace, token, key) within
// IdempotencyTTL. A repeat with the same operation and input returns the
// first result (decoded into out) and runs nothing; a repeat with another
// input is ECONFLICT. A failed fn stores nothing, so a retry runs again.
// An empty key just runs fn.
func (s *Service) Idempotent(ctx context.Context, key, operation string, input any, out any, fn func() (any, error)) error {
	if key == "" {
		res, err := fn()
		if err != nil {
			return err
		}
		return assign(out, res)
	}
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return err
	}
	if len(key) > 200 {
		return &Error{Code: EINVALID, Field: "idempotencyKey", Message: "idempotencyKey must be at most 200 characters."}
	}
	in, err := json.Marshal(input)
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	h := sha256.Sum256(append([]byte(operation+"\x00"), in...))

	// Concurrent repeats of one key wait for the first.
	unlock := s.lockKey(p.WorkspaceID + "\x00" + p.TokenID + "\x00" + key)
	defer unlock()

	replay := func(r *IdempotencyRecord) error {
		if r.Operation != operation || !bytes.Equal(r.InputHash, h[:]) {
			return &Error{Code: ECONFLICT, Field: "idempotencyKey", Message: fmt.Sprintf("The idempotency key %q was used at %s with another operation or input; use a new key for a new request.", key, r.CreatedAt.Format(time.RFC3339))}
		}
		return json.Unmarshal(r.Result, out)
	}
	r, err := s.Store.FindIdempotency(ctx, p.WorkspaceID, p.TokenID, key)
	if err == nil {
		return replay(r)
	} else if ErrorCode(err) != ENOTFOUND {
		return fmt.Errorf("idempotency: %w", err)
	}
	res, err := fn()
	if err != nil {
		return err
	}
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	now := s.now()
	rec := &IdempotencyRecord{WorkspaceID: p.WorkspaceID, TokenID: p.TokenID, Key: key, Operation: operation, InputHash: h[:], Result: data, CreatedAt: now, ExpiresAt: now.Add(IdempotencyTTL)}
	if _, err := s.Store.PutIdempotency(context.WithoutCancel(ctx), rec); err != nil {
		s.logger().Error("storing idempotency record", "workspace", p.WorkspaceID, "operation", operation, "err", err)
	}
	return json.Unmarshal(data, out)
}

func assign(out, res any) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (s *Service) lockKey(k string) func() {
	s.keysMu.Lock()
	if s.keys == nil {
		s.keys = map[string]*keyLock{}
	}
	l := s.keys[k]
	if l == nil {
		l = &keyLock{}
		s.keys[k] = l
	}
	l.refs++
	s.keysMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.keysMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.keys, k)
		}
		s.keysMu.Unlock()
	}
}

// ---- wipe ----

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
