package switchboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"
)

// DefaultStateTTL is how long a person has to finish an authorization.
const DefaultStateTTL = 10 * time.Minute

// Service is the integration lifecycle: connect, the OAuth callback,
// reconnect, configure, disconnect and the teardown that follows. It is the
// one place where status rules meet the store, the broker and the
// providers; resolvers and HTTP handlers call it and nothing else.
//
// Every method that changes an integration commits through the Store and
// then publishes the committed event, so subscribers see exactly what was
// committed, and nothing that was not.
type Service struct {
	Store     Store
	Broker    Broker
	OAuth     OAuth
	Catalogue Catalogue
	Logger    *slog.Logger
	Now       func() time.Time
	// StateTTL bounds an authorization (default 10 minutes).
	StateTTL time.Duration
	// ReturnToAllowed says whether /oauth/callback may send the browser to
	// a returnTo URL. Nil allows none.
	ReturnToAllowed func(string) bool
	// TokensRevoked, when set, is told about API tokens that were revoked
	// or deleted, so that connections opened with them can be closed.
	TokensRevoked func(ids []string)
	// StartURL returns the absolute URL of the gateway's start link with
	// the given ID (authorizationUrl): /oauth/start/<id> under the public
	// URL. Nil gives the path alone.
	StartURL func(id string) string
	// AuthRefused, when set, counts a start link or a callback refused
	// though its state was genuine (step "start" or "callback", reason one
	// of the Refused* constants).
	AuthRefused func(step, reason string)

	touchMu sync.Mutex
	touched map[string]time.Time // token ID → last recorded use
	keysMu  sync.Mutex
	keys    map[string]*keyLock // idempotency keys in flight

	// refresher, when set (NewRefresher), learns of every credential write
	// and status change from commit.
	refresher *Refresher

	// identities remembers what never changes about integrations seen
	// (identity.go).
	identities identities

	kick     chan struct{}
	kickOnce sync.Once
	bg       sync.WaitGroup
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Service) stateTTL() time.Duration {
	if s.StateTTL > 0 {
		return s.StateTTL
	}
	return DefaultStateTTL
}

func (s *Service) kickChan() chan struct{} {
	s.kickOnce.Do(func() { s.kick = make(chan struct{}, 1) })
	return s.kick
}

// commit commits c and publishes the event. Every commit goes through here:
// the broker relies on seeing every committed revision exactly once.
func (s *Service) commit(ctx context.Context, c Change) (*Event, error) {
	if c.At.IsZero() {
		c.At = s.now()
	}
	ev, err := s.Store.Commit(ctx, c)
	if err != nil || ev == nil {
		return nil, err
	}
	s.publish(ev, c.Tokens)
	return ev, nil
}

// publish hands a committed event to the broker and the refresher. Every
// committed event goes through here exactly once.
func (s *Service) publish(ev *Event, tokens *TokenSet) {
	s.Broker.Publish(ev)
	if s.refresher != nil {
		s.refresher.observe(ev, tokens)
	}
}

// ---- reading ----

// Providers lists the catalogue as the viewer's workspace sees it: a
// provider is available only if it is configured and on the plan.
func (s *Service) Providers(ctx context.Context, category *Category) ([]*Provider, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	ws, err := s.Store.FindWorkspaceByID(ctx, p.WorkspaceID)
	if err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	var out []*Provider
	for _, base := range s.Catalogue.Providers() {
		if category != nil && base.Category != *category {
			continue
		}
		out = append(out, s.providerFor(ws, base))
	}
	return out, nil
}

// providerFor returns a copy of base with availability for ws's plan. The
// plan's reason wins over a missing configuration: configuring the provider
// would not help a workspace whose plan lacks the category.
func (s *Service) providerFor(ws *Workspace, base *Provider) *Provider {
	pv := *base
	if !ws.Plan.Allows(pv.Category) {
		pv.Available = false
		pv.UnavailableReason = planReason(ws.Plan, pv.Category)
	}
	return &pv
}

func planReason(plan Plan, c Category) string {
	var names []string
	for _, p := range PlansAllowing(c) {
		names = append(names, string(p))
	}
	return fmt.Sprintf("%s integrations are part of the %s plans; this workspace is on the %s plan.",
		categoryNoun(c), strings.Join(names, " and "), plan)
}

func categoryNoun(c Category) string {
	switch c {
	case CategoryCRM:
		return "CRM"
	case CategoryEmailCalendar:
		return "Email and calendar"
	case CategoryMessaging:
		return "Slack and Microsoft Teams"
	}
	return "These"
}

// Provider returns the catalogue entry for id, for rendering an
// integration's provider field. It does not apply plan rules.
func (s *Service) Provider(id string) (*Provider, error) {
	pv, ok := s.Catalogue.Provider(id)
	if !ok {
		// An integration whose provider was removed from the providers
		// file still renders, as unavailable.
		return &Provider{ID: id, Name: id, Category: CategoryOther,
			UnavailableReason: "This provider is no longer configured."}, nil
	}
	return pv, nil
}

// Integrations lists the viewer's workspace's integrations and the viewer's
// own personal ones.
func (s *Service) Integrations(ctx context.Context, f IntegrationFilter) ([]*Integration, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	uid := p.UserID
	f.OwnerUserID = &uid
	return s.Store.FindIntegrations(ctx, p.WorkspaceID, f)
}

// Integration returns one integration the viewer may see. Integrations of
// other workspaces, and other users' personal ones, are ENOTFOUND exactly
// like IDs that do not exist.
func (s *Service) Integration(ctx context.Context, id string) (*Integration, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	return s.findVisible(ctx, p, id)
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

// Settings returns every setting of in's provider with its effective value.
func (s *Service) Settings(in *Integration) []Setting {
	pv, err := s.Provider(in.ProviderID)
	if err != nil {
		return nil
	}
	return pv.EffectiveSettings(in.SettingValues)
}

// ---- connecting ----

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
	ev, err := s.commit(ctx, Change{
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

// CallbackParams are the query parameters a provider sends the browser
// back with.
type CallbackParams struct {
	State            string
	Code             string
	Error            string
	ErrorDescription string
	// BrowserSecret is the value of the cookie the start link set in the
	// browser ("" when the request carried none).
	BrowserSecret string
}

// CallbackResult is a completed authorization.
type CallbackResult struct {
	Integration *Integration
	Event       *Event
	Provider    *Provider
	ReturnTo    string
}

// CompleteAuthorization finishes the flow /oauth/callback received. On any
// failure the integration is left exactly as it was and the error says, in
// words for the person at the browser, what happened. The result's
// ReturnTo, when not empty, was checked when the flow started.
//
// The callback must come from the browser that opened the start link
// (cp.BrowserSecret); without it the callback is refused with EFORBIDDEN
// and the state stays pending, so whoever replays a callback URL can
// neither complete nor spoil the flow. An expired state is consumed
// whoever presents it: it can never succeed. The flow is also refused
// (EFORBIDDEN, state consumed) when the API token that started it has
// been revoked, deleted or has expired since.
func (s *Service) CompleteAuthorization(ctx context.Context, cp CallbackParams) (*CallbackResult, error) {
	if cp.State == "" {
		return nil, Errorf(EINVALID, "The provider sent the browser back without a state parameter. Start again from the settings page.")
	}
	now := s.now()
	var unbound *AuthState
	st, err := s.Store.TakeAuthState(ctx, cp.State, func(st *AuthState) error {
		if now.Before(st.ExpiresAt) && !browserBound(st, cp.BrowserSecret) {
			unbound = st
			return errNotThisBrowser
		}
		return nil
	})
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(EINVALID, "This sign-in link is unknown or was already used. Start again from the settings page.")
	} else if errors.Is(err, errNotThisBrowser) && unbound != nil {
		s.refuse(ctx, "callback", RefusedNotThisBrowser, unbound.starter(), unbound.IntegrationID, cp.BrowserSecret != "")
		return nil, errNotThisBrowser
	} else if err != nil {
		return nil, fmt.Errorf("callback: %w", err)
	}
	pv, err := s.Provider(st.ProviderID)
	if err != nil {
		return nil, err
	}
	if !now.Before(st.ExpiresAt) {
		return nil, Errorf(EINVALID, "Signing in to %s took longer than %s. Start again from the settings page.", pv.Name, s.stateTTL())
	}
	if err := s.checkStarter(ctx, "callback", st.starter(), st.IntegrationID, now); err != nil {
		return nil, err
	}
	if cp.Error != "" {
		if cp.Error == "access_denied" {
			return nil, Errorf(EINVALID, "Access was declined at %s. Nothing changed; connect again when you are ready to approve.", pv.Name)
		}
		msg := fmt.Sprintf("%s refused the authorization (%s)", pv.Name, sanitize(cp.Error, 64))
		if cp.ErrorDescription != "" {
			msg += ": " + sanitize(cp.ErrorDescription, 200)
		}
		return nil, Errorf(EINVALID, "%s. Nothing changed.", msg)
	}
	if cp.Code == "" {
		return nil, Errorf(EINVALID, "%s sent the browser back without an authorization code. Start again from the settings page.", pv.Name)
	}
	grant, err := s.OAuth.Exchange(ctx, st.ProviderID, cp.Code, st.CodeVerifier)
	if err != nil {
		s.logger().Warn("oauth exchange failed", "workspace", st.WorkspaceID, "integration", st.IntegrationID, "provider", st.ProviderID, "code", ErrorCode(err), "err", err)
		if ErrorCode(err) == EINTERNAL {
			return nil, Errorf(EUNAVAILABLE, "Could not finish signing in to %s. Nothing changed; try again.", pv.Name)
		}
		return nil, &Error{Code: ErrorCode(err), Message: fmt.Sprintf("Could not finish signing in to %s: %s Nothing changed.", pv.Name, ErrorMessage(err))}
	}

	if st.Intent == IntentConnect {
		if err := s.checkOneCRM(ctx, st.WorkspaceID, pv); err != nil {
			s.revokeOrphan(st.ProviderID, &grant.Tokens)
			return nil, err
		}
	}
	now = s.now()
	missing := MissingScopes(pv.Scopes, grant.GrantedScopes)
	tokens := grant.Tokens
	ev, err := s.commit(ctx, Change{
		WorkspaceID:   st.WorkspaceID,
		IntegrationID: st.IntegrationID,
		Tokens:        &tokens,
		At:            now,
		Apply: func(cur *Integration) (*Integration, EventKind, error) {
			return applyGrant(cur, st, pv, grant, missing, now)
		},
		// One CRM per workspace, decided in the commit's transaction.
		SoleInCategory: pv.Category.Exclusive(),
		SoleMessage:    func(other *Integration) string { return s.oneCRMMessage(other, pv) },
	})
	if err != nil {
		// The provider issued tokens nobody will use: revoke them.
		s.revokeOrphan(st.ProviderID, &tokens)
		if ErrorCode(err) == ENOTFOUND {
			return nil, Errorf(ECONFLICT, "This integration no longer exists. Nothing changed.")
		}
		return nil, err
	}
	s.audit(ctx, st.starter(), "oauthCallback", st.IntegrationID,
		fmt.Sprintf("%s as %s, generation %d, revision %d", ev.Kind, accountLabel(grant.Account), ev.Integration.Generation, ev.Revision))
	return &CallbackResult{Integration: ev.Integration, Event: ev, Provider: pv, ReturnTo: st.ReturnTo}, nil
}

// applyGrant is the state change of a completed authorization. It is pure:
// the store may run it twice.
func applyGrant(cur *Integration, st *AuthState, pv *Provider, g *Grant, missing []string, now time.Time) (*Integration, EventKind, error) {
	if cur.Generation != st.Generation {
		return nil, "", Errorf(ECONFLICT, "%s was connected or disconnected elsewhere while you were signing in. Nothing changed; start again from the settings page.", pv.Name)
	}
	next := cur
	kind := EventConnected
	switch st.Intent {
	case IntentConnect:
		if cur.Status != StatusDisconnected {
			return nil, "", Errorf(ECONFLICT, "%s was connected elsewhere while you were signing in. Nothing changed.", pv.Name)
		}
		// A new connection: new generation, fresh sync checkpoint.
		next.Generation++
		next.SyncCheckpoint = ""
		next.LastSyncedAt = nil
		t := now
		next.ConnectedAt = &t
		closeAccountPeriod(next, now)
		next.AccountHistory = append(next.AccountHistory, AccountPeriod{Account: g.Account, From: now})
	case IntentReconnect:
		if cur.Status == StatusDisconnected {
			return nil, "", Errorf(ECONFLICT, "%s was disconnected while you were signing in. Nothing changed; connect it again.", pv.Name)
		}
		// Same connection, new credentials: the generation and its sync
		// checkpoint stay.
		kind = EventReconnected
		if cur.Account == nil || cur.Account.ID != g.Account.ID {
			// Another account: what follows is attributed to it. The
			// history keeps who it was before.
			kind = EventAccountChanged
			closeAccountPeriod(next, now)
			next.AccountHistory = append(next.AccountHistory, AccountPeriod{Account: g.Account, From: now})
		}
	default:
		return nil, "", fmt.Errorf("callback: unknown intent %q", st.Intent)
	}
	acct := g.Account
	next.Account = &acct
	next.GrantedScopes = append([]string(nil), g.GrantedScopes...)
	next.MissingScopes = missing
	if len(missing) > 0 {
		next.Status = StatusError
		next.StatusReason = ReasonMissingScopes
		next.StatusMessage = fmt.Sprintf("Signed in as %s, but %s did not grant: %s. Have that admin re-elevate their permissions, or reconnect as an admin who still has them.",
			accountLabel(g.Account), pv.Name, strings.Join(missing, ", "))
	} else {
		next.Status = StatusConnected
		next.StatusReason = ReasonAuthorized
		next.StatusMessage = ""
	}
	return next, kind, nil
}

func closeAccountPeriod(in *Integration, now time.Time) {
	for k := range in.AccountHistory {
		if in.AccountHistory[k].Until == nil {
			t := now
			in.AccountHistory[k].Until = &t
		}
	}
}

func accountLabel(a Account) string {
	switch {
	case a.Email != "":
		return a.Email
	case a.Name != "":
		return a.Name
	}
	return a.ID
}

// sanitize keeps provider-supplied text printable and short before it is
// shown to a person.
func sanitize(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// revokeOrphan revokes tokens that were issued but could not be committed.
// Best effort, in the background; Wait waits for it.
func (s *Service) revokeOrphan(providerID string, t *TokenSet) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.OAuth.Revoke(ctx, providerID, t); err != nil {
			s.logger().Warn("revoking unused grant failed", "provider", providerID, "err", err)
		}
	}()
}

// Wait waits for background revocations started by the service.
func (s *Service) Wait() { s.bg.Wait() }

// ---- disconnecting and configuring ----

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
	ev, err := s.commit(ctx, Change{
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

// ConfigureInput sets some of an integration's settings.
type ConfigureInput struct {
	ID               string
	Settings         []SettingInput
	ExpectedRevision uint64
}

// Configure validates settings against the provider's definitions and
// stores them. Keys not given keep their values. With ExpectedRevision it
// fails with ECONFLICT if the integration changed since.
func (s *Service) Configure(ctx context.Context, in ConfigureInput) (*Integration, error) {
	// Who may configure depends only on what never changes about the
	// integration (identity.go), so it is checked without a read of the
	// store once the integration has been seen.
	p, providerID, err := s.manageableID(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	pv, err := s.Provider(providerID)
	if err != nil {
		return nil, err
	}
	// Validate before the transaction so a bad key fails without a write
	// (and without a batch rolled back for it). Whether the input is
	// valid does not depend on the current values.
	if _, err := pv.ApplySettings(nil, in.Settings); err != nil {
		return nil, err
	}
	ev, err := s.commit(ctx, Change{
		WorkspaceID:      p.WorkspaceID,
		IntegrationID:    in.ID,
		ExpectedRevision: in.ExpectedRevision,
		Apply: func(c *Integration) (*Integration, EventKind, error) {
			if c.Status == StatusDisconnected {
				return nil, "", Errorf(ECONFLICT, "This integration is disconnected; connect it before configuring it.")
			}
			next, err := pv.ApplySettings(c.SettingValues, in.Settings)
			if err != nil {
				return nil, "", err
			}
			if maps.Equal(next, c.SettingValues) {
				return nil, "", nil
			}
			c.SettingValues = next
			return c, EventConfigured, nil
		},
		Audit: func(ev *Event) *AuditEntry {
			keys := make([]string, len(in.Settings))
			for i, st := range in.Settings {
				keys[i] = st.Key
			}
			return auditEntry(p, ev.At, "configureIntegration", in.ID, fmt.Sprintf("settings %s, revision %d", strings.Join(keys, " "), ev.Revision))
		},
	})
	if err != nil {
		return nil, err
	}
	if ev == nil {
		return s.Store.FindIntegrationByID(ctx, p.WorkspaceID, in.ID)
	}
	return ev.Integration, nil
}

// ---- events ----

// SubscribeNotify streams the viewer's workspace's events after
// afterRevision (nil: live only), optionally of one category, calling
// notify (SubscribeRequest.Notify) after each. Other users' personal
// integrations are never sent. With notify set the subscription also has
// EndByCall: the caller ends it with Subscription.End.
func (s *Service) SubscribeNotify(ctx context.Context, afterRevision *uint64, category *Category, notify func()) (*Subscription, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	uid := p.UserID
	return s.Broker.Subscribe(ctx, SubscribeRequest{
		WorkspaceID:   p.WorkspaceID,
		AfterRevision: afterRevision,
		Match: func(ev *Event) bool {
			in := ev.Integration
			if category != nil && in.Category != *category {
				return false
			}
			return in.OwnerUserID == "" || in.OwnerUserID == uid
		},
		Notify:    notify,
		EndByCall: notify != nil,
	})
}

// ---- background work ----

// TeardownRetryLimit is how long a teardown keeps retrying a provider that
// does not answer before it deletes the tokens anyway.
const TeardownRetryLimit = 24 * time.Hour

func (s *Service) kickTeardowns() {
	select {
	case s.kickChan() <- struct{}{}:
	default:
	}
}

// Run does the service's background work until ctx ends: teardown jobs
// (woken at once by a disconnect, and checked every interval) and the sweep
// of expired authorization states.
func (s *Service) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastSweep := time.Time{}
	for {
		s.RunDueTeardowns(ctx)
		if now := s.now(); now.Sub(lastSweep) > time.Minute {
			if n, err := s.Store.DeleteExpiredAuthStates(ctx, now); err != nil {
				s.logger().Error("sweeping expired authorization states", "err", err)
			} else if n > 0 {
				s.logger().Debug("swept expired authorization states", "count", n)
			}
			lastSweep = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kickChan():
		}
	}
}

// RunDueTeardowns runs every teardown job that is due, one at a time.
func (s *Service) RunDueTeardowns(ctx context.Context) {
	for ctx.Err() == nil {
		jobs, err := s.Store.DueTeardowns(ctx, s.now(), 32)
		if err != nil {
			s.logger().Error("listing teardown jobs", "err", err)
			return
		}
		if len(jobs) == 0 {
			return
		}
		for _, j := range jobs {
			s.runTeardown(ctx, j)
		}
		if len(jobs) < 32 {
			return
		}
	}
}

func (s *Service) runTeardown(ctx context.Context, j *TeardownJob) {
	log := s.logger().With("workspace", j.WorkspaceID, "integration", j.IntegrationID, "generation", j.Generation, "job", j.ID)
	tokens, err := s.Store.FindTokens(ctx, j.WorkspaceID, j.IntegrationID, j.Generation)
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.OAuth.Revoke(rctx, j.ProviderID, tokens)
		cancel()
		if ErrorCode(err) == EUNAVAILABLE || errors.Is(err, context.DeadlineExceeded) {
			if s.now().Sub(j.CreatedAt) < TeardownRetryLimit && ctx.Err() == nil {
				next := s.now().Add(backoff(j.Attempts))
				log.Warn("revocation failed; will retry", "attempt", j.Attempts+1, "next", next, "err", err)
				if err := s.Store.RescheduleTeardown(ctx, j.ID, next, ErrorMessage(err)); err != nil {
					log.Error("rescheduling teardown", "err", err)
				}
				return
			}
			log.Error("revocation kept failing; deleting the tokens without it", "err", err)
		} else if err != nil {
			log.Warn("provider refused revocation; deleting the tokens anyway", "err", err)
		}
	} else if ErrorCode(err) != ENOTFOUND {
		log.Error("reading tokens for teardown", "err", err)
		return
	}
	if err := s.Store.CompleteTeardown(ctx, j.ID); err != nil {
		log.Error("completing teardown", "err", err)
		return
	}
	log.Info("teardown complete")
}

// backoff is 1s, 2s, 4s, … capped at 10 minutes.
func backoff(attempts int) time.Duration {
	if attempts > 10 {
		return 10 * time.Minute
	}
	d := time.Second << attempts
	if d > 10*time.Minute {
		d = 10 * time.Minute
	}
	return d
}

// ---- tokens and workspaces ----

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

// NewID returns a random identifier with a prefix, e.g. "int_5kq…".
func NewID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
