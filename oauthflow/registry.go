// Package oauthflow talks OAuth 2.0 to providers' authorization servers
// (authorize with PKCE S256, code exchange, refresh, RFC 7009 revocation,
// userinfo) and reads the providers file. The dev-mode authorization
// server is oauthflow/sandbox, which imports this package.
package oauthflow

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/bont/switchboard/switchboard"
)

// AuthStyle says how the client authenticates to the token and revocation
// endpoints.
type AuthStyle string

const (
	// AuthStyleHeader sends client_id and client_secret with HTTP Basic
	// authentication (RFC 6749 §2.3.1). It is the default.
	AuthStyleHeader AuthStyle = "header"
	// AuthStyleParams sends them as form parameters in the request body.
	AuthStyleParams AuthStyle = "params"
)

// RevokeStyle says how tokens are revoked at RevokeURL.
type RevokeStyle string

const (
	// RevokeStyleRFC7009 posts token (the refresh token when there is one)
	// and token_type_hint as a form, authenticated like the token
	// endpoint. It is the default.
	RevokeStyleRFC7009 RevokeStyle = "rfc7009"
	// RevokeStyleBearer presents the access token as a bearer token and
	// reads a Slack-style {"ok":...} answer (Slack's auth.revoke).
	RevokeStyleBearer RevokeStyle = "bearer"
)

// IdentityFields names the fields of the userinfo JSON answer that hold the
// account's id, display name and email. A dotted name ("data.id") walks
// into nested objects.
type IdentityFields struct {
	ID    string
	Name  string
	Email string
}

// Defaults applied by NewRegistry.
const (
	DefaultRefreshMargin = 2 * time.Minute
	DefaultHTTPTimeout   = 15 * time.Second
)

// defaultExtraFields are the token response fields kept in TokenSet.Extra
// when a provider names none.
var defaultExtraFields = []string{"instance_url", "api_domain"}

// ProviderConfig is everything Switchboard knows about one provider.
type ProviderConfig struct {
	ID       string
	Name     string
	Category switchboard.Category

	// ClientID and ClientSecret are the OAuth client's credentials. A
	// provider without them is listed but unavailable.
	ClientID     string
	ClientSecret string

	AuthURL   string
	TokenURL  string
	RevokeURL string // optional; without it Revoke succeeds at once
	// UserinfoURL is optional; without it the account is unknown. It is
	// requested with the access token as a bearer token, or, when it
	// contains TokenPlaceholder, with the token in its path instead.
	UserinfoURL string
	// RevokeStyle is how RevokeURL is called; empty means RFC 7009.
	RevokeStyle RevokeStyle

	// Identity names the userinfo fields; empty names default to sub, name
	// and email.
	Identity IdentityFields

	// Scopes are required: requested at authorize, and a grant lacking one
	// of them leaves the integration in ERROR with the scope named.
	Scopes []string
	// OptionalScopes are requested too but not required (openid,
	// offline_access, ...): providers often expand or omit them in the
	// granted scope list.
	OptionalScopes []string

	SettingDefinitions []switchboard.SettingDefinition

	// AuthStyle is how the client authenticates; empty means header.
	AuthStyle AuthStyle
	// AuthParams are extra authorization URL parameters, such as
	// access_type=offline for Google.
	AuthParams map[string]string
	// ExtraFields are token response fields kept in TokenSet.Extra (string
	// values only); nil means instance_url and api_domain.
	ExtraFields []string

	// RefreshMargin is how long before expiry a token should be refreshed;
	// zero means DefaultRefreshMargin. The refresher caps it at a fifth of
	// each token's lifetime and never refreshes a connection sooner than
	// its minimum gap after the last refresh (refresher.Refresher).
	RefreshMargin time.Duration
}

// Available reports whether the provider has credentials.
func (p *ProviderConfig) Available() bool { return p.ClientID != "" && p.ClientSecret != "" }

// UnavailableReason says why the provider cannot be connected, or "".
func (p *ProviderConfig) UnavailableReason() string {
	if p.Available() {
		return ""
	}
	return fmt.Sprintf("No OAuth credentials are configured for %s; add them to the providers file.", p.Name)
}

// RequestedScopes are the scopes sent at authorize: required then optional.
func (p *ProviderConfig) RequestedScopes() []string {
	out := slices.Clone(p.Scopes)
	for _, s := range p.OptionalScopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (p *ProviderConfig) clone() *ProviderConfig {
	c := *p
	c.Scopes = slices.Clone(p.Scopes)
	c.OptionalScopes = slices.Clone(p.OptionalScopes)
	c.ExtraFields = slices.Clone(p.ExtraFields)
	c.SettingDefinitions = make([]switchboard.SettingDefinition, len(p.SettingDefinitions))
	for i, d := range p.SettingDefinitions {
		d.Options = slices.Clone(d.Options)
		c.SettingDefinitions[i] = d
	}
	if p.AuthParams != nil {
		c.AuthParams = make(map[string]string, len(p.AuthParams))
		for k, v := range p.AuthParams {
			c.AuthParams[k] = v
		}
	}
	return &c
}

// Config configures a Registry.
type Config struct {
	// RedirectURL is the callback URL registered with every provider,
	// sent as redirect_uri exactly as given.
	RedirectURL string
	// HTTPClient talks to providers. Nil means a client with a
	// DefaultHTTPTimeout timeout; it must have a timeout.
	HTTPClient *http.Client
	Providers  []ProviderConfig
}

// Registry is the deployment's provider catalogue and OAuth client. Build
// one in main with NewRegistry; it is immutable and safe for concurrent use.
type Registry struct {
	redirectURL string
	client      *http.Client
	order       []string
	providers   map[string]*entry
}

type entry struct {
	cfg    *ProviderConfig
	oauth2 *oauth2.Config
}

var (
	_ switchboard.Catalogue = (*Registry)(nil)
	_ switchboard.OAuth     = (*Registry)(nil)
)

var providerIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// NewRegistry validates cfg and builds a Registry. Errors name the provider
// and the field at fault.
func NewRegistry(cfg Config) (*Registry, error) {
	if err := CheckURL(cfg.RedirectURL); err != nil {
		return nil, fmt.Errorf("oauthflow: redirect URL: %w", err)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	r := &Registry{redirectURL: cfg.RedirectURL, client: client, providers: make(map[string]*entry)}
	for i := range cfg.Providers {
		p := cfg.Providers[i].clone()
		if err := normalize(p); err != nil {
			name := p.ID
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return nil, fmt.Errorf("oauthflow: provider %s: %w", name, err)
		}
		if _, dup := r.providers[p.ID]; dup {
			return nil, fmt.Errorf("oauthflow: provider %s is configured twice", p.ID)
		}
		style := oauth2.AuthStyleInHeader
		if p.AuthStyle == AuthStyleParams {
			style = oauth2.AuthStyleInParams
		}
		r.providers[p.ID] = &entry{cfg: p, oauth2: &oauth2.Config{
			ClientID:     p.ClientID,
			ClientSecret: p.ClientSecret,
			Endpoint:     oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, AuthStyle: style},
			RedirectURL:  cfg.RedirectURL,
			Scopes:       p.RequestedScopes(),
		}}
		r.order = append(r.order, p.ID)
	}
	return r, nil
}

// normalize validates p and fills its defaults in place.
func normalize(p *ProviderConfig) error {
	if !providerIDPattern.MatchString(p.ID) {
		return fmt.Errorf("id %q must be lowercase letters, digits, - or _", p.ID)
	}
	if strings.TrimSpace(p.Name) == "" {
		return fmt.Errorf("name is missing")
	}
	if !p.Category.Valid() {
		return fmt.Errorf("category %q is not one of CRM, EMAIL_CALENDAR, MESSAGING, OTHER", p.Category)
	}
	if (p.ClientID == "") != (p.ClientSecret == "") {
		return fmt.Errorf("clientId and clientSecret must be given together")
	}
	for _, u := range []struct{ field, v string }{{"authUrl", p.AuthURL}, {"tokenUrl", p.TokenURL}} {
		if err := CheckURL(u.v); err != nil {
			return fmt.Errorf("%s: %w", u.field, err)
		}
	}
	for _, u := range []struct{ field, v string }{{"revokeUrl", p.RevokeURL}, {"userinfoUrl", p.UserinfoURL}} {
		if u.v == "" {
			continue
		}
		if err := CheckURL(u.v); err != nil {
			return fmt.Errorf("%s: %w", u.field, err)
		}
	}
	if strings.Contains(p.RevokeURL, TokenPlaceholder) {
		return fmt.Errorf("revokeUrl: the %s placeholder is only for userinfoUrl", TokenPlaceholder)
	}
	if strings.Contains(p.UserinfoURL, TokenPlaceholder) {
		u, err := url.Parse(strings.ReplaceAll(p.UserinfoURL, TokenPlaceholder, "TOKEN"))
		if err != nil || !strings.Contains(u.Path, "TOKEN") || strings.Contains(u.Host+u.RawQuery, "TOKEN") {
			return fmt.Errorf("userinfoUrl: the %s placeholder may appear only in the path", TokenPlaceholder)
		}
	}
	switch p.RevokeStyle {
	case "":
		p.RevokeStyle = RevokeStyleRFC7009
	case RevokeStyleRFC7009, RevokeStyleBearer:
	default:
		return fmt.Errorf("revokeStyle %q is not rfc7009 or bearer", p.RevokeStyle)
	}
	switch p.AuthStyle {
	case "":
		p.AuthStyle = AuthStyleHeader
	case AuthStyleHeader, AuthStyleParams:
	default:
		return fmt.Errorf("authStyle %q is not header or params", p.AuthStyle)
	}
	for _, s := range p.RequestedScopes() {
		if s == "" || strings.ContainsAny(s, " \t\n\",") {
			return fmt.Errorf("scope %q is empty or contains a space, comma or quote", s)
		}
	}
	if p.Identity.ID == "" {
		p.Identity.ID = "sub"
	}
	if p.Identity.Name == "" {
		p.Identity.Name = "name"
	}
	if p.Identity.Email == "" {
		p.Identity.Email = "email"
	}
	if p.ExtraFields == nil {
		p.ExtraFields = slices.Clone(defaultExtraFields)
	}
	if p.RefreshMargin < 0 {
		return fmt.Errorf("refreshMargin must not be negative")
	}
	if p.RefreshMargin == 0 {
		p.RefreshMargin = DefaultRefreshMargin
	}
	seen := map[string]bool{}
	for _, d := range p.SettingDefinitions {
		if d.Key == "" {
			return fmt.Errorf("a setting has no key")
		}
		if seen[d.Key] {
			return fmt.Errorf("setting %q is defined twice", d.Key)
		}
		seen[d.Key] = true
		if d.Type == switchboard.SettingEnum && len(d.Options) == 0 {
			return fmt.Errorf("setting %q is an ENUM without options", d.Key)
		}
		if _, err := d.Validate(d.Default); err != nil {
			return fmt.Errorf("setting %q: default %q is not a valid value: %s", d.Key, d.Default, switchboard.ErrorMessage(err))
		}
	}
	return nil
}

// CheckURL reports why s cannot be an OAuth endpoint or redirect URI: it
// must be an absolute http or https URL with a host, and no fragment or
// user info. It returns nil when s can.
func CheckURL(s string) error {
	if s == "" {
		return fmt.Errorf("missing")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("%q must be an http or https URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must not contain a fragment or user info", s)
	}
	return nil
}

// Providers lists the configured providers in configuration order. The
// values are copies.
func (r *Registry) Providers() []*switchboard.Provider {
	out := make([]*switchboard.Provider, 0, len(r.order))
	for _, id := range r.order {
		out = append(out, r.providers[id].provider())
	}
	return out
}

// Provider returns one provider, as a copy.
func (r *Registry) Provider(id string) (*switchboard.Provider, bool) {
	e, ok := r.providers[id]
	if !ok {
		return nil, false
	}
	return e.provider(), true
}

func (e *entry) provider() *switchboard.Provider {
	c := e.cfg.clone()
	return &switchboard.Provider{
		ID:                 c.ID,
		Name:               c.Name,
		Category:           c.Category,
		Available:          c.Available(),
		UnavailableReason:  c.UnavailableReason(),
		SettingDefinitions: c.SettingDefinitions,
		Scopes:             c.Scopes,
	}
}

// Config returns a copy of a provider's configuration with defaults filled
// in (RefreshMargin, Identity, AuthStyle, ExtraFields).
func (r *Registry) Config(providerID string) (*ProviderConfig, bool) {
	e, ok := r.providers[providerID]
	if !ok {
		return nil, false
	}
	return e.cfg.clone(), true
}

// HTTPClient returns the client used for every provider request.
func (r *Registry) HTTPClient() *http.Client { return r.client }

// lookup finds an available provider, or fails with ENOTFOUND (unknown) or
// EINVALID (no credentials).
func (r *Registry) lookup(providerID string) (*entry, error) {
	e, ok := r.providers[providerID]
	if !ok {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "Provider %q is not configured.", providerID)
	}
	if !e.cfg.Available() {
		return nil, switchboard.Errorf(switchboard.EINVALID, "%s", e.cfg.UnavailableReason())
	}
	return e, nil
}
