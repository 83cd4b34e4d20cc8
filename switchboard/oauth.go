package switchboard

import (
	"context"
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
// EINVALID carries the provider's refusal (e.g. invalid_grant) in words a
// person can act on; ENOTFOUND means the provider is not configured.
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
	// (invalid_grant: revoked or expired) is EINVALID; a provider that is
	// down is EUNAVAILABLE.
	Refresh(ctx context.Context, providerID string, t *TokenSet) (*TokenSet, error)
}

// Catalogue lists the providers this deployment knows. Available and
// UnavailableReason reflect configuration only (e.g. missing credentials);
// plan rules are applied per workspace by the Service.
type Catalogue interface {
	Providers() []*Provider
	Provider(id string) (*Provider, bool)
}

// ProviderFailure is implemented by OAuth errors that carry what the
// provider answered, so the refresher can tell a refusal of the client
// (fix the providers file) from a refusal of the grant (reconnect), honour
// Retry-After, and know whether the provider saw the request at all.
type ProviderFailure interface {
	// HTTPStatus is the provider's HTTP status; 0 when no answer arrived
	// (network error, timeout), so the provider may or may not have acted.
	HTTPStatus() int
	// OAuthCode is the OAuth error code answered (invalid_grant, ...) or "".
	OAuthCode() string
	// RetryAfter is the provider's Retry-After, or 0.
	RetryAfter() time.Duration
}
