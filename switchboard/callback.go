package switchboard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

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
		s.Log().Warn("oauth exchange failed", "workspace", st.WorkspaceID, "integration", st.IntegrationID, "provider", st.ProviderID, "code", ErrorCode(err), "err", err)
		if ErrorCode(err) == EINTERNAL {
			return nil, Errorf(EUNAVAILABLE, "Could not finish signing in to %s. Nothing changed; try again.", pv.Name)
		}
		return nil, &Error{Code: ErrorCode(err), Message: fmt.Sprintf("Could not finish signing in to %s: %s Nothing changed.", pv.Name, ErrorMessage(err))}
	}

	if st.Intent == IntentConnect {
		if err := s.checkOneCRM(ctx, st.WorkspaceID, pv); err != nil {
			s.RevokeOrphan(st.ProviderID, &grant.Tokens)
			return nil, err
		}
	}
	now = s.now()
	missing := MissingScopes(pv.Scopes, grant.GrantedScopes)
	tokens := grant.Tokens
	ev, err := s.Commit(ctx, Change{
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
		s.RevokeOrphan(st.ProviderID, &tokens)
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
