package oauthflow

import (
	"net/url"
	"strings"
	"testing"

	"github.com/bont/switchboard/switchboard"
)

func validProvider() ProviderConfig {
	return ProviderConfig{
		ID: "acme", Name: "Acme CRM", Category: switchboard.CategoryCRM,
		ClientID: "id", ClientSecret: "secret",
		AuthURL: "https://auth.acme.example/authorize", TokenURL: "https://auth.acme.example/token",
		Scopes: []string{"contacts.read"},
	}
}

func TestNewRegistryValidation(t *testing.T) {
	const redirect = "http://127.0.0.1:8080/oauth/callback"
	with := func(f func(*ProviderConfig)) []ProviderConfig {
		p := validProvider()
		f(&p)
		return []ProviderConfig{p}
	}
	for _, tc := range []struct {
		name      string
		redirect  string
		providers []ProviderConfig
		want      string // substring of the error; "" means no error
	}{
		{"valid", redirect, with(func(*ProviderConfig) {}), ""},
		{"no credentials is allowed", redirect, with(func(p *ProviderConfig) { p.ClientID, p.ClientSecret = "", "" }), ""},
		{"duplicate id", redirect, append(with(func(*ProviderConfig) {}), validProvider()), "acme is configured twice"},
		{"bad id", redirect, with(func(p *ProviderConfig) { p.ID = "Acme CRM" }), "lowercase"},
		{"empty id", redirect, with(func(p *ProviderConfig) { p.ID = "" }), "provider #1"},
		{"no name", redirect, with(func(p *ProviderConfig) { p.Name = " " }), "name is missing"},
		{"unknown category", redirect, with(func(p *ProviderConfig) { p.Category = "SPORTS" }), `category "SPORTS"`},
		{"auth URL scheme", redirect, with(func(p *ProviderConfig) { p.AuthURL = "ftp://x/authorize" }), "authUrl"},
		{"token URL missing", redirect, with(func(p *ProviderConfig) { p.TokenURL = "" }), "tokenUrl: missing"},
		{"relative revoke URL", redirect, with(func(p *ProviderConfig) { p.RevokeURL = "/revoke" }), "revokeUrl"},
		{"userinfo without host", redirect, with(func(p *ProviderConfig) { p.UserinfoURL = "https://" }), "userinfoUrl"},
		{"half credentials", redirect, with(func(p *ProviderConfig) { p.ClientSecret = "" }), "together"},
		{"auth style", redirect, with(func(p *ProviderConfig) { p.AuthStyle = "cookie" }), `authStyle "cookie"`},
		{"scope with space", redirect, with(func(p *ProviderConfig) { p.Scopes = []string{"a b"} }), "scope"},
		{"negative margin", redirect, with(func(p *ProviderConfig) { p.RefreshMargin = -1 }), "refreshMargin"},
		{"enum without options", redirect, with(func(p *ProviderConfig) {
			p.SettingDefinitions = []switchboard.SettingDefinition{{Key: "k", Label: "K", Type: switchboard.SettingEnum}}
		}), "without options"},
		{"bad default", redirect, with(func(p *ProviderConfig) {
			p.SettingDefinitions = []switchboard.SettingDefinition{{Key: "n", Label: "N", Type: switchboard.SettingInteger, Default: "0", Min: 1, Max: 5}}
		}), `default "0"`},
		{"duplicate setting", redirect, with(func(p *ProviderConfig) {
			d := switchboard.SettingDefinition{Key: "b", Label: "B", Type: switchboard.SettingBoolean, Default: "true"}
			p.SettingDefinitions = []switchboard.SettingDefinition{d, d}
		}), "defined twice"},
		{"missing redirect", "", with(func(*ProviderConfig) {}), "redirect URL"},
		{"relative redirect", "/oauth/callback", with(func(*ProviderConfig) {}), "redirect URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRegistry(Config{RedirectURL: tc.redirect, Providers: tc.providers})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("NewRegistry: got %v; want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("NewRegistry: got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAuthCodeURLExtras(t *testing.T) {
	p := validProvider()
	p.OptionalScopes = []string{"offline_access", "contacts.read"}
	p.AuthParams = map[string]string{"access_type": "offline"}
	reg := mustRegistry(t, "http://127.0.0.1:8080/oauth/callback", nil, p)
	raw, v1, err := reg.AuthCodeURL("acme", "st", "")
	if err != nil {
		t.Fatalf("AuthCodeURL: got %v; want nil", err)
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	if got, want := q.Get("scope"), "contacts.read offline_access"; got != want {
		t.Errorf("scope: got %q; want %q", got, want)
	}
	if got := q.Get("access_type"); got != "offline" {
		t.Errorf("access_type: got %q; want offline", got)
	}
	if q.Has("login_hint") {
		t.Errorf("login_hint: got %q; want none", q.Get("login_hint"))
	}
	_, v2, _ := reg.AuthCodeURL("acme", "st", "")
	if v1 == v2 || len(v1) < 43 {
		t.Errorf("verifiers: got %q and %q; want fresh ones of at least 43 characters", v1, v2)
	}
}
