package switchboard

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"
)

// AuthorizationPayload is what connect and reconnect return.
type AuthorizationPayload struct {
	AuthorizationURL string
	ExpiresAt        time.Time
	Integration      *Integration
}

// ConnectInput starts connecting a provider.
type ConnectInput struct {
	ProviderID string
	ReturnTo   string
	LoginHint  string
}

// Connect starts an authorization for a provider: it creates the card if
// there is none yet (DISCONNECTED, event CREATED), stores a one-time state
// and returns the provider's authorization URL. The card turns CONNECTED
// only when the callback completes.
func (s *Service) Connect(ctx context.Context, in ConnectInput) (*AuthorizationPayload, error) {
	p, err := writer(ctx)
	if err != nil {
		return nil, err
	}
	ws, err := s.Store.FindWorkspaceByID(ctx, p.WorkspaceID)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	base, ok := s.Catalogue.Provider(in.ProviderID)
	if !ok {
		return nil, &Error{Code: ENOTFOUND, Field: "provider", Message: fmt.Sprintf("No provider %q. The providers query lists the ones available.", in.ProviderID)}
	}
	pv := s.providerFor(ws, base)
	if !ws.Plan.Allows(pv.Category) {
		return nil, Errorf(EPLAN, "%s", pv.UnavailableReason)
	}
	if !pv.Available {
		return nil, &Error{Code: EINVALID, Field: "provider", Message: pv.UnavailableReason}
	}
	owner := ""
	if pv.Category.Personal() {
		owner = p.UserID
	}
	if !canManage(p, pv.Category, owner) {
		return nil, forbidden(pv.Category)
	}
	if err := s.checkReturnTo(in.ReturnTo); err != nil {
		return nil, err
	}
	if err := s.checkOneCRM(ctx, p.WorkspaceID, pv); err != nil {
		return nil, err
	}

	cur, err := s.ensureIntegration(ctx, p.WorkspaceID, pv, owner)
	if err != nil {
		return nil, err
	}
	if cur.Status != StatusDisconnected {
		return nil, Errorf(ECONFLICT, "%s is already connected (status %s). Use reconnectIntegration to sign in again, or disconnect it first to connect another account.", pv.Name, cur.Status)
	}
	res, err := s.startAuthorization(ctx, p, cur, pv, IntentConnect, in.ReturnTo, in.LoginHint)
	if err == nil {
		s.audit(ctx, p, "connectIntegration", cur.ID, "started authorization with "+pv.ID)
	}
	return res, err
}

// checkOneCRM refuses to connect a CRM (an exclusive category) while
// another CRM of the workspace is connected (in any status but
// DISCONNECTED). It runs when the authorization starts and again before
// the exchange, so a person learns early; the rule itself is enforced by
// the store inside the callback's commit (Change.SoleInCategory), where two
// callbacks racing cannot both pass it.
func (s *Service) checkOneCRM(ctx context.Context, workspaceID string, pv *Provider) error {
	if !pv.Category.Exclusive() {
		return nil
	}
	cat := pv.Category
	ins, err := s.Store.FindIntegrations(ctx, workspaceID, IntegrationFilter{Category: &cat})
	if err != nil {
		return fmt.Errorf("connect %s: %w", pv.ID, err)
	}
	for _, other := range ins {
		if other.ProviderID != pv.ID && other.Status != StatusDisconnected {
			return Errorf(ECONFLICT, "%s", s.oneCRMMessage(other, pv))
		}
	}
	return nil
}

// oneCRMMessage says that other is the workspace's CRM and must be
// disconnected before pv can be connected.
func (s *Service) oneCRMMessage(other *Integration, pv *Provider) string {
	name := other.ProviderID
	if op, ok := s.Catalogue.Provider(other.ProviderID); ok {
		name = op.Name
	}
	return fmt.Sprintf("This workspace's CRM is %s; a workspace has one CRM. Disconnect %s first, then connect %s.", name, name, pv.Name)
}

// ensureIntegration returns the card for provider and owner, creating it
// when there is none.
func (s *Service) ensureIntegration(ctx context.Context, wsID string, pv *Provider, owner string) (*Integration, error) {
	cur, err := s.Store.FindIntegrationByProvider(ctx, wsID, pv.ID, owner)
	if err == nil {
		return cur, nil
	} else if ErrorCode(err) != ENOTFOUND {
		return nil, fmt.Errorf("connect %s: %w", pv.ID, err)
	}
	id := NewID("int")
	ev, err := s.Commit(ctx, Change{
		WorkspaceID:   wsID,
		IntegrationID: id,
		Create:        true,
		Apply: func(cur *Integration) (*Integration, EventKind, error) {
			if cur != nil {
				return nil, "", nil // created by a concurrent call with the same id; impossible with random ids
			}
			return &Integration{
				ID:            id,
				WorkspaceID:   wsID,
				ProviderID:    pv.ID,
				Category:      pv.Category,
				OwnerUserID:   owner,
				Status:        StatusDisconnected,
				StatusReason:  ReasonNeverConnected,
				StatusMessage: "Not connected yet.",
			}, EventCreated, nil
		},
	})
	if ErrorCode(err) == ECONFLICT {
		// Another request created the card first; use it.
		return s.Store.FindIntegrationByProvider(ctx, wsID, pv.ID, owner)
	} else if err != nil {
		return nil, fmt.Errorf("connect %s: %w", pv.ID, err)
	}
	return ev.Integration, nil
}

// ReconnectInput starts re-authenticating an integration.
type ReconnectInput struct {
	ID        string
	ReturnTo  string
	LoginHint string
}

// Reconnect starts an authorization for an existing connection. It keeps
// the generation, and with it the sync checkpoint. It is allowed in every
// status but DISCONNECTED (re-consenting a connected integration is
// harmless); a disconnected one is connected again with Connect.
func (s *Service) Reconnect(ctx context.Context, in ReconnectInput) (*AuthorizationPayload, error) {
	p, cur, err := s.manageable(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if cur.Status == StatusDisconnected {
		return nil, Errorf(ECONFLICT, "This integration is disconnected; connect it again with connectIntegration.")
	}
	pv, ok := s.Catalogue.Provider(cur.ProviderID)
	if !ok || !pv.Available {
		return nil, Errorf(EINVALID, "The provider %q is not configured any more; it cannot be reconnected.", cur.ProviderID)
	}
	if err := s.checkReturnTo(in.ReturnTo); err != nil {
		return nil, err
	}
	res, err := s.startAuthorization(ctx, p, cur, pv, IntentReconnect, in.ReturnTo, in.LoginHint)
	if err == nil {
		s.audit(ctx, p, "reconnectIntegration", cur.ID, "started authorization with "+pv.ID)
	}
	return res, err
}

func (s *Service) checkReturnTo(returnTo string) error {
	if returnTo == "" {
		return nil
	}
	if s.ReturnToAllowed == nil || !s.ReturnToAllowed(returnTo) {
		return &Error{Code: EINVALID, Field: "returnTo", Message: "returnTo must be a URL on this gateway's own origin or an allow-listed one."}
	}
	return nil
}

// startAuthorization stores a pending authorization and returns its start
// link (see AuthStart): the provider's URL is only reached through it, so
// the callback can tell the browser that started the flow from any other.
func (s *Service) startAuthorization(ctx context.Context, p *Principal, cur *Integration, pv *Provider, intent AuthIntent, returnTo, loginHint string) (*AuthorizationPayload, error) {
	state := randomToken(32)
	providerURL, verifier, err := s.OAuth.AuthCodeURL(pv.ID, state, loginHint)
	if err != nil {
		return nil, fmt.Errorf("authorize %s: %w", pv.ID, err)
	}
	startID, secret := randomToken(24), randomToken(32)
	binding := sha256.Sum256([]byte(secret))
	now := s.now()
	st := &AuthState{
		State:          state,
		WorkspaceID:    p.WorkspaceID,
		IntegrationID:  cur.ID,
		ProviderID:     pv.ID,
		UserID:         p.UserID,
		TokenID:        p.TokenID,
		Role:           p.Role,
		Intent:         intent,
		Generation:     cur.Generation,
		CodeVerifier:   verifier,
		ReturnTo:       returnTo,
		CreatedAt:      now,
		ExpiresAt:      now.Add(s.stateTTL()),
		StartID:        startID,
		BrowserBinding: binding[:],
	}
	st.Start = &AuthStart{
		ID:            startID,
		State:         state,
		ProviderURL:   providerURL,
		BrowserSecret: secret,
		WorkspaceID:   p.WorkspaceID,
		IntegrationID: cur.ID,
		TokenID:       p.TokenID,
		ExpiresAt:     st.ExpiresAt,
	}
	if err := s.Store.PutAuthState(ctx, st); err != nil {
		return nil, fmt.Errorf("authorize %s: %w", pv.ID, err)
	}
	return &AuthorizationPayload{AuthorizationURL: s.startURL(startID), ExpiresAt: st.ExpiresAt, Integration: cur}, nil
}
