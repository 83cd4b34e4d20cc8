package oauthflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/bont/switchboard/switchboard"
)

// maxProviderBody bounds what is read from a provider's answer.
const maxProviderBody = 1 << 20

// AuthCodeURL returns the provider's authorization URL for state with a
// fresh PKCE S256 challenge, and the verifier to keep with the state.
func (r *Registry) AuthCodeURL(providerID, state, loginHint string) (string, string, error) {
	e, err := r.lookup(providerID)
	if err != nil {
		return "", "", err
	}
	if state == "" {
		return "", "", switchboard.Errorf(switchboard.EINVALID, "An authorization needs a state.")
	}
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	for k, v := range e.cfg.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if loginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	return e.oauth2.AuthCodeURL(state, opts...), verifier, nil
}

// Exchange trades an authorization code for tokens and looks up the
// account. Granted scopes come from the token response's scope field
// (space- or comma-separated); without one they are the requested scopes
// (RFC 6749 §5.1).
func (r *Registry) Exchange(ctx context.Context, providerID, code, verifier string) (*switchboard.Grant, error) {
	e, err := r.lookup(providerID)
	if err != nil {
		return nil, err
	}
	if code == "" || verifier == "" {
		return nil, switchboard.Errorf(switchboard.EINVALID, "%s sent no authorization code.", e.cfg.Name)
	}
	tok, err := e.oauth2.Exchange(r.clientCtx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, classify(ctx, e.cfg, "exchange the authorization code", err, code, verifier)
	}
	ts := tokenSet(e.cfg, tok, nil)
	acct, err := r.userinfo(ctx, e.cfg, tok.AccessToken)
	if err != nil {
		return nil, err
	}
	return &switchboard.Grant{Tokens: *ts, Account: acct, GrantedScopes: ts.Scopes}, nil
}

// Refresh trades t's refresh token for new tokens. The answer keeps a
// rotated refresh token, or t's when the provider sent none; scopes and
// extra fields not in the answer are kept from t. Errors follow the OAuth
// contract: invalid_grant (revoked, expired or reused refresh token) is
// EINVALID, which means the integration needs a reconnect; EUNAVAILABLE is
// worth retrying. t is not modified.
func (r *Registry) Refresh(ctx context.Context, providerID string, t *switchboard.TokenSet) (*switchboard.TokenSet, error) {
	e, err := r.lookup(providerID)
	if err != nil {
		return nil, err
	}
	if t == nil || t.RefreshToken == "" {
		return nil, switchboard.Errorf(switchboard.EINVALID, "%s gave no refresh token; reconnect to sign in again.", e.cfg.Name)
	}
	// A token without an access token is never valid, so the source always
	// asks the token endpoint.
	src := e.oauth2.TokenSource(r.clientCtx(ctx), &oauth2.Token{RefreshToken: t.RefreshToken})
	tok, err := src.Token()
	if err != nil {
		return nil, classify(ctx, e.cfg, "refresh the access token", err, t.RefreshToken, t.AccessToken)
	}
	return tokenSet(e.cfg, tok, t), nil
}

// Revoke revokes t at the provider per RFC 7009: the refresh token if there
// is one (which revokes the grant at most providers), else the access
// token. Without a revocation endpoint, or without tokens, it succeeds at
// once. A provider whose credentials were removed from the providers file
// cannot authenticate a revocation: EINVALID. 2xx is success; 429, 5xx and
// network failures are EUNAVAILABLE; other answers EINVALID.
func (r *Registry) Revoke(ctx context.Context, providerID string, t *switchboard.TokenSet) error {
	if e, ok := r.providers[providerID]; ok && e.cfg.RevokeURL == "" {
		return nil
	}
	e, err := r.lookup(providerID)
	if err != nil {
		return err
	}
	cfg := e.cfg
	if t == nil {
		return nil
	}
	if cfg.RevokeStyle == RevokeStyleBearer {
		return r.revokeBearer(ctx, cfg, t)
	}
	form := url.Values{}
	switch {
	case t.RefreshToken != "":
		form.Set("token", t.RefreshToken)
		form.Set("token_type_hint", "refresh_token")
	case t.AccessToken != "":
		form.Set("token", t.AccessToken)
		form.Set("token_type_hint", "access_token")
	default:
		return nil
	}
	if cfg.AuthStyle == AuthStyleParams {
		form.Set("client_id", cfg.ClientID)
		form.Set("client_secret", cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.RevokeURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("revoke at %s: %w", cfg.ID, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if cfg.AuthStyle != AuthStyleParams {
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return classify(ctx, cfg, "revoke access", err, t.RefreshToken, t.AccessToken)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	var oe struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &oe)
	return classify(ctx, cfg, "revoke access", &statusError{status: resp.StatusCode, code: oe.Error, description: oe.Description, header: resp.Header}, t.RefreshToken, t.AccessToken)
}

// revokeBearer revokes the access token by presenting it, as Slack's
// auth.revoke does: POST with Authorization: Bearer and no body. Slack
// answers HTTP 200 with {"ok":true,"revoked":true} or {"ok":false,
// "error":...}; a token Slack already treats as unusable (revoked,
// expired, unknown) counts as revoked, as RFC 7009 §2.2 has it.
func (r *Registry) revokeBearer(ctx context.Context, cfg *ProviderConfig, t *switchboard.TokenSet) error {
	const what = "revoke access"
	if t.AccessToken == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.RevokeURL, nil)
	if err != nil {
		return fmt.Errorf("revoke at %s: the revocation URL %s cannot be requested", cfg.ID, cfg.RevokeURL)
	}
	req.Header.Set("Authorization", "Bearer "+t.AccessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return classify(ctx, cfg, what, err, t.RefreshToken, t.AccessToken)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return classify(ctx, cfg, what, &statusError{status: resp.StatusCode, header: resp.Header}, t.RefreshToken, t.AccessToken)
	}
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		return classify(ctx, cfg, what, errMalformed, t.RefreshToken, t.AccessToken)
	}
	code, failed := slackFailure(doc)
	switch {
	case !failed:
		return nil
	case code == "invalid_auth" || code == "token_revoked" || code == "token_expired" || code == "account_inactive" || code == "not_authed":
		return nil
	case code == "ratelimited" || code == "internal_error" || code == "fatal_error" || code == "service_unavailable" || code == "request_timeout":
		return classify(ctx, cfg, what, &statusError{status: http.StatusServiceUnavailable, code: code, header: resp.Header}, t.RefreshToken, t.AccessToken)
	}
	return classify(ctx, cfg, what, &statusError{status: resp.StatusCode, code: code, header: resp.Header}, t.RefreshToken, t.AccessToken)
}

func (r *Registry) clientCtx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, r.client)
}

// TokenPlaceholder in a userinfo URL is replaced by the access token
// (path-escaped), for providers whose identity endpoint takes the token in
// the path (HubSpot's GET /oauth/v1/access-tokens/{token}). Such a request
// carries no Authorization header, and its URL never appears in an error.
const TokenPlaceholder = "{token}"

// userinfo asks the provider who the access token belongs to. Without a
// userinfo endpoint the account is unknown (zero).
func (r *Registry) userinfo(ctx context.Context, cfg *ProviderConfig, accessToken string) (switchboard.Account, error) {
	if cfg.UserinfoURL == "" {
		return switchboard.Account{}, nil
	}
	const what = "look up the signed-in account"
	target, inPath := cfg.UserinfoURL, strings.Contains(cfg.UserinfoURL, TokenPlaceholder)
	if inPath {
		target = strings.ReplaceAll(target, TokenPlaceholder, url.PathEscape(accessToken))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		// Not wrapped: a URL error would print the URL, token and all.
		return switchboard.Account{}, fmt.Errorf("userinfo at %s: the userinfo URL %s cannot be requested", cfg.ID, cfg.UserinfoURL)
	}
	if !inPath {
		req.Header.Set("Authorization", "Bearer "+accessToken)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		// net/http's *url.Error names the URL it requested (or was
		// redirected to): name the configured one instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = cfg.UserinfoURL
		}
		return switchboard.Account{}, classify(ctx, cfg, what, err, accessToken)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		return switchboard.Account{}, classify(ctx, cfg, what, err, accessToken)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return switchboard.Account{}, classify(ctx, cfg, what, &statusError{status: resp.StatusCode, header: resp.Header}, accessToken)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return switchboard.Account{}, classify(ctx, cfg, what, errMalformed, accessToken)
	}
	if code, failed := slackFailure(doc); failed {
		// Slack answers a refusal as HTTP 200 {"ok":false,"error":...}.
		return switchboard.Account{}, classify(ctx, cfg, what, &statusError{status: resp.StatusCode, code: code, header: resp.Header}, accessToken)
	}
	acct := switchboard.Account{
		ID:    field(doc, cfg.Identity.ID),
		Name:  field(doc, cfg.Identity.Name),
		Email: field(doc, cfg.Identity.Email),
	}
	if acct.ID == "" {
		return switchboard.Account{}, switchboard.Errorf(switchboard.EINVALID,
			"%s's account answer has no %q field; check identity.id for %s in the providers file.", cfg.Name, cfg.Identity.ID, cfg.ID)
	}
	return acct, nil
}

// slackFailure reports whether doc is a Slack Web API failure
// ({"ok":false,"error":"invalid_auth"}), with its error code.
func slackFailure(doc map[string]any) (string, bool) {
	ok, present := doc["ok"].(bool)
	if !present || ok {
		return "", false
	}
	code, _ := doc["error"].(string)
	if code == "" {
		code = "not_ok"
	}
	return code, true
}

// field returns the string or number at a dotted path in doc, or "".
func field(doc map[string]any, path string) string {
	var cur any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[k]
	}
	switch v := cur.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// tokenSet converts tok; prev, when set, supplies what a refresh answer
// left out.
func tokenSet(cfg *ProviderConfig, tok *oauth2.Token, prev *switchboard.TokenSet) *switchboard.TokenSet {
	ts := &switchboard.TokenSet{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.TokenType,
		Expiry:       tok.Expiry,
	}
	if prev != nil {
		if ts.RefreshToken == "" {
			ts.RefreshToken = prev.RefreshToken
		}
		ts.Scopes = append([]string(nil), prev.Scopes...)
		ts.Extra = maps.Clone(prev.Extra)
	} else {
		ts.Scopes = cfg.RequestedScopes()
	}
	if s, ok := tok.Extra("scope").(string); ok {
		ts.Scopes = ParseScopes(s)
	}
	for _, k := range cfg.ExtraFields {
		if v, ok := tok.Extra(k).(string); ok && v != "" {
			if ts.Extra == nil {
				ts.Extra = make(map[string]string)
			}
			ts.Extra[k] = v
		}
	}
	return ts
}

// ParseScopes splits a scope list separated by spaces (RFC 6749) or commas
// (Slack, Pipedrive), dropping empty entries and duplicates.
func ParseScopes(s string) []string {
	out := []string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// statusError is a non-2xx answer from an endpoint other than the token
// endpoint.
type statusError struct {
	status      int
	code        string
	description string
	header      http.Header
}

func (e *statusError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("HTTP %d: %s", e.status, e.code)
	}
	return fmt.Sprintf("HTTP %d", e.status)
}

var errMalformed = errors.New("malformed answer")

// providerError is a classified provider failure. Its text is the
// *switchboard.Error's; the cause (an *oauth2.RetrieveError, a network
// error, a context error) stays reachable through errors.As and errors.Is
// for logs and retry decisions without ever being printed with it, since a
// provider's raw answer may echo what was sent.
type providerError struct {
	err     *switchboard.Error
	cause   error
	failure switchboard.ProviderFailure
}

// failed returns the classified failure: kind decided by classify, whether
// and how the provider answered read from cause.
func failed(err *switchboard.Error, cause error, kind switchboard.FailureKind) *providerError {
	e := &providerError{err: err, cause: cause}
	e.failure = switchboard.ProviderFailure{Kind: kind, Answered: e.HTTPStatus() != 0, RetryAfter: e.RetryAfter(), Code: e.OAuthCode()}
	return e
}

func (e *providerError) Error() string   { return e.err.Error() }
func (e *providerError) Unwrap() []error { return []error{e.err, e.cause} }

// ProviderFailure is what the failure means for the connection.
func (e *providerError) ProviderFailure() switchboard.ProviderFailure { return e.failure }

var _ switchboard.ClassifiedFailure = (*providerError)(nil)

// HTTPStatus is the provider's answer's status, 0 when none arrived.
func (e *providerError) HTTPStatus() int {
	var re *oauth2.RetrieveError
	var se *statusError
	switch {
	case errors.As(e.cause, &re) && re.Response != nil:
		return re.Response.StatusCode
	case errors.As(e.cause, &se):
		return se.status
	}
	return 0
}

// OAuthCode is the OAuth error code the provider answered, or "".
func (e *providerError) OAuthCode() string {
	var re *oauth2.RetrieveError
	var se *statusError
	switch {
	case errors.As(e.cause, &re):
		return re.ErrorCode
	case errors.As(e.cause, &se):
		return se.code
	}
	return ""
}

// RetryAfter is the provider's Retry-After (seconds or an HTTP date), or 0.
func (e *providerError) RetryAfter() time.Duration {
	var re *oauth2.RetrieveError
	var se *statusError
	var h http.Header
	switch {
	case errors.As(e.cause, &re) && re.Response != nil:
		h = re.Response.Header
	case errors.As(e.cause, &se):
		h = se.header
	}
	return parseRetryAfter(h.Get("Retry-After"), time.Now())
}

// parseRetryAfter reads an RFC 9110 Retry-After value, capped at an hour
// so a confused provider cannot park a connection for days.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Hour)
}

// classify turns a failure talking to cfg into EUNAVAILABLE (network,
// timeout, 429, 5xx, unreadable answers: a retry may succeed) or EINVALID
// (the provider refused: 4xx or an OAuth error code). secrets are removed
// from anything the provider said that ends up in the message.
func classify(ctx context.Context, cfg *ProviderConfig, what string, err error, secrets ...string) error {
	unavailable := func(format string, args ...any) error {
		msg := fmt.Sprintf("%s could not %s: ", cfg.Name, what) + fmt.Sprintf(format, args...) + " Try again shortly."
		return failed(&switchboard.Error{Code: switchboard.EUNAVAILABLE, Message: redact(msg, secrets)}, err, switchboard.FailureTransient)
	}
	refused := func(status int, code, desc string) error {
		msg := fmt.Sprintf("%s refused to %s", cfg.Name, what)
		if code != "" {
			msg += fmt.Sprintf(" (%s", code)
			if desc != "" {
				msg += ": " + desc
			}
			msg += ")"
		} else {
			msg += fmt.Sprintf(" (HTTP %d)", status)
		}
		msg += "." + hint(code)
		return failed(&switchboard.Error{Code: switchboard.EINVALID, Message: redact(msg, secrets)}, err, refusal(code))
	}

	var re *oauth2.RetrieveError
	var se *statusError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if status == http.StatusTooManyRequests || status >= 500 || (status >= 200 && status < 300 && re.ErrorCode == "temporarily_unavailable") {
			return unavailable("it answered HTTP %d.", status)
		}
		if re.ErrorCode == "" && (status < 400 || status >= 500) {
			return unavailable("it gave an answer that is not an OAuth response (HTTP %d).", status)
		}
		return refused(status, re.ErrorCode, re.ErrorDescription)
	case errors.As(err, &se):
		if se.status == http.StatusTooManyRequests || se.status >= 500 {
			return unavailable("it answered HTTP %d.", se.status)
		}
		return refused(se.status, se.code, se.description)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// The caller gave up; keep the context error for errors.Is.
		return failed(switchboard.Errorf(switchboard.EUNAVAILABLE, "%s: the request to %s was cancelled.", cfg.Name, what), err, switchboard.FailureTransient)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return unavailable("it did not answer in time.")
	case errors.Is(err, errMalformed):
		return unavailable("it gave an answer that could not be read.")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return unavailable("it could not be reached (%v).", ue.Err)
	}
	if strings.HasPrefix(err.Error(), "oauth2: ") {
		// x/oauth2's own errors for unreadable or incomplete answers
		// ("server response missing access_token", "cannot parse json").
		return unavailable("it gave an answer that could not be read.")
	}
	return unavailable("%v.", err)
}

// refusal is what a refusal with the OAuth error code means for the
// connection (RFC 6749 §5.2).
func refusal(code string) switchboard.FailureKind {
	switch code {
	case "invalid_grant":
		return switchboard.FailureGrantRefused
	case "invalid_client", "unauthorized_client":
		return switchboard.FailureClientRefused
	}
	return switchboard.FailureRefused
}

// hint adds what a person can do about common OAuth error codes.
func hint(code string) string {
	switch code {
	case "invalid_grant":
		return " The sign-in is no longer valid (revoked, expired or already used); reconnect to sign in again."
	case "invalid_client", "unauthorized_client":
		return " The client credentials in the providers file are wrong or were rotated; update them."
	case "invalid_scope":
		return " The provider does not accept the requested scopes; check the scopes in the providers file."
	case "access_denied":
		return " Access was denied at the provider."
	}
	return ""
}

func redact(msg string, secrets []string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}
