package switchboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// Grant is what a completed authorization yields.
type Grant struct {
	Tokens        TokenSet
	Account       Account
	GrantedScopes []string
}

// OAuth talks to providers' authorization servers. Implementations must be
// safe for concurrent use and use HTTP clients with timeouts.
//
// Errors: an *Error with EUNAVAILABLE means the provider could not be
// reached or answered 429/5xx, and a retry may succeed; an *Error with
// EINVALID carries the provider's refusal in words a person can act on;
// ENOTFOUND means the provider is not configured. An error from a call that
// reached, or tried to reach, the provider is a ClassifiedFailure, which
// says what the failure means (ProviderFailureOf).
type OAuth interface {
	// AuthCodeURL returns the provider's authorization URL for state, with
	// a fresh PKCE (S256) challenge, and the verifier to keep with the
	// state. loginHint may be empty.
	AuthCodeURL(providerID, state, loginHint string) (url, verifier string, err error)
	// Exchange trades an authorization code for tokens and looks up the
	// account they belong to.
	Exchange(ctx context.Context, providerID, code, verifier string) (*Grant, error)
	// Revoke revokes t at the provider (RFC 7009): the refresh token if
	// there is one, else the access token. A provider without a revocation
	// endpoint succeeds at once.
	Revoke(ctx context.Context, providerID string, t *TokenSet) error
	// Refresh trades t's refresh token for new tokens. The result keeps
	// t's refresh token when the provider does not rotate it. A refusal
	// (FailureGrantRefused: revoked or expired) is EINVALID; a provider
	// that is down is EUNAVAILABLE.
	Refresh(ctx context.Context, providerID string, t *TokenSet) (*TokenSet, error)
}

// Catalogue lists the providers this deployment knows. Available and
// UnavailableReason reflect configuration only (e.g. missing credentials);
// plan rules are applied per workspace by the Service.
type Catalogue interface {
	Providers() []*Provider
	Provider(id string) (*Provider, bool)
}

// FailureKind is what a failed call to a provider means for the
// connection. The OAuth layer decides it once, where the provider's answer
// arrives; the domain acts on the kind and never reads provider error
// codes.
type FailureKind int8

const (
	// FailureTransient: the provider could not be reached, did not answer
	// in time, answered 429 or 5xx, or gave an answer that could not be
	// read. A retry may succeed. The error's code is EUNAVAILABLE (or, for
	// a failure before any request, whatever that failure was).
	FailureTransient FailureKind = iota
	// FailureGrantRefused: the provider says the grant itself is no longer
	// valid (OAuth invalid_grant): revoked, expired, or already used, which
	// is also how a rotating provider answers a refresh token presented a
	// second time. A reconnect fixes it. EINVALID.
	FailureGrantRefused
	// FailureClientRefused: the provider refused the deployment's client
	// credentials (invalid_client, unauthorized_client). A reconnect
	// cannot fix it; the providers file must. EINVALID.
	FailureClientRefused
	// FailureRefused: any other refusal (another OAuth error code, a 4xx
	// without one, or a request the OAuth layer could not make, such as a
	// refresh without a refresh token). Acted on as a refused grant, but
	// it says nothing about a refresh token presented twice. EINVALID.
	FailureRefused
)

// ProviderFailure is the classification of a failed OAuth call.
type ProviderFailure struct {
	Kind FailureKind
	// Answered: an HTTP answer arrived, so the provider saw the request
	// and did not act on it (a refused or throttled refresh rotated
	// nothing). False when no answer arrived (network error, timeout):
	// the provider may or may not have acted.
	Answered bool
	// RetryAfter is the provider's Retry-After, or 0.
	RetryAfter time.Duration
	// Code is the OAuth error code the provider answered, or "", to be
	// quoted in messages; what it means is Kind.
	Code string
}

// ClassifiedFailure is implemented by the errors an OAuth implementation
// returns for a call that reached, or tried to reach, a provider.
type ClassifiedFailure interface {
	error
	ProviderFailure() ProviderFailure
}

// ProviderFailureOf returns the classification of err, an error returned
// by an OAuth method: the ClassifiedFailure in its chain, or, for an error
// that carries none, FailureRefused when its code is EINVALID and
// FailureTransient (not answered) otherwise.
func ProviderFailureOf(err error) ProviderFailure {
	var cf ClassifiedFailure
	if errors.As(err, &cf) {
		return cf.ProviderFailure()
	}
	if ErrorCode(err) == EINVALID {
		return ProviderFailure{Kind: FailureRefused}
	}
	return ProviderFailure{Kind: FailureTransient}
}

// Why a start link or a callback with a genuine state is refused (metric
// and log labels; the person sees the error's message).
const (
	// RefusedNotThisBrowser: the callback lacks the cookie the start link
	// set, or carries another value: it did not come from the browser that
	// started the flow.
	RefusedNotThisBrowser = "not_this_browser"
	// RefusedTokenRevoked: the API token that started the flow was revoked
	// or deleted since.
	RefusedTokenRevoked = "token_revoked"
	// RefusedTokenExpired: the API token that started the flow expired.
	RefusedTokenExpired = "token_expired"
)

// errNotThisBrowser is the refusal of a callback that did not come from
// the browser that opened the start link.
var errNotThisBrowser = Errorf(EFORBIDDEN, "This sign-in was not started in this browser, so it cannot finish here. Nothing changed. Open the sign-in link from the settings page (or the one your automation handed you) in this browser, and sign in again.")

// browserBound reports whether secret is the one the state's start link put
// in the browser, in constant time. A state without a binding (stored
// before start links existed) is never bound.
func browserBound(st *AuthState, secret string) bool {
	if len(st.BrowserBinding) != sha256.Size || secret == "" {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], st.BrowserBinding) == 1
}

func (s *Service) startURL(id string) string {
	if s.StartURL != nil {
		return s.StartURL(id)
	}
	return "/oauth/start/" + id
}

// BeginAuthorization opens a start link: it returns what the browser needs
// to continue (the provider's URL and the secret to keep in a cookie), or
// an error for the person at the browser. The link works until its flow
// completes or expires, so a person may open it again (and link previews
// that fetch it spoil nothing); it is refused once the API token that
// started the flow is revoked or expired.
func (s *Service) BeginAuthorization(ctx context.Context, id string) (*AuthStart, error) {
	if id == "" || len(id) > 100 {
		return nil, Errorf(EINVALID, "This sign-in link is unknown or was already used. Start again from the settings page.")
	}
	start, err := s.Store.FindAuthStart(ctx, id)
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(EINVALID, "This sign-in link is unknown or was already used. Start again from the settings page.")
	} else if err != nil {
		return nil, fmt.Errorf("start authorization: %w", err)
	}
	now := s.now()
	if !now.Before(start.ExpiresAt) {
		return nil, Errorf(EINVALID, "This sign-in link expired (links last %s). Start again from the settings page.", s.stateTTL())
	}
	if err := s.checkStarter(ctx, "start", &Principal{WorkspaceID: start.WorkspaceID, TokenID: start.TokenID}, start.IntegrationID, now); err != nil {
		return nil, err
	}
	return start, nil
}

// checkStarter refuses a flow whose API token has been revoked, deleted or
// has expired since it started it. Flows started in-process (no token)
// have nothing to check.
func (s *Service) checkStarter(ctx context.Context, step string, who *Principal, integrationID string, now time.Time) error {
	if who.TokenID == "" {
		return nil
	}
	t, err := s.Store.FindAPITokenByID(ctx, who.WorkspaceID, who.TokenID)
	reason := ""
	switch {
	case ErrorCode(err) == ENOTFOUND || err == nil && t.RevokedAt != nil:
		reason = RefusedTokenRevoked
	case err != nil:
		return fmt.Errorf("%s: %w", step, err)
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		reason = RefusedTokenExpired
	default:
		return nil
	}
	s.refuse(ctx, step, reason, who, integrationID, false)
	what := "was revoked"
	if reason == RefusedTokenExpired {
		what = "has expired"
	}
	return Errorf(EFORBIDDEN, "The API token that started this sign-in %s, and the sign-in ended with it. Nothing changed. Start again with a current token.", what)
}

// refuse records a refused start link or callback: a log line, the metric
// and, when the flow ended with it (its token is gone), an audit entry in
// the flow's workspace. A callback refused for lacking the browser's cookie
// is not audited: the flow is still pending, and anyone holding a callback
// URL could otherwise fill the workspace's bounded audit log.
func (s *Service) refuse(ctx context.Context, step, reason string, who *Principal, integrationID string, hadCookie bool) {
	args := []any{"step", step, "reason", reason, "workspace", who.WorkspaceID, "integration", integrationID, "token", who.TokenID}
	if reason == RefusedNotThisBrowser {
		args = append(args, "cookie", hadCookie)
	}
	s.Log().Warn("oauth flow refused", args...)
	if s.AuthRefused != nil {
		s.AuthRefused(step, reason)
	}
	if reason != RefusedNotThisBrowser && step == "callback" {
		s.audit(ctx, who, "oauthCallbackRefused", integrationID, reason)
	}
}

// starter is who started the authorization, for checks and the audit log.
func (st *AuthState) starter() *Principal {
	return &Principal{WorkspaceID: st.WorkspaceID, UserID: st.UserID, TokenID: st.TokenID, Role: st.Role}
}
