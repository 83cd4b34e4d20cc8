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

func TestCatalogue(t *testing.T) {
	bare := validProvider()
	bare.ID, bare.Name, bare.ClientID, bare.ClientSecret = "bare", "Bare CRM", "", ""
	reg := mustRegistry(t, "http://127.0.0.1:8080/oauth/callback", nil,
		SandboxProvider("http://127.0.0.1:8080/sandbox", "c", "s"), bare)

	ps := reg.Providers()
	if len(ps) != 2 || ps[0].ID != "sandbox" || ps[1].ID != "bare" {
		t.Fatalf("providers: got %v; want sandbox, bare in that order", ps)
	}
	if !ps[0].Available || ps[0].UnavailableReason != "" {
		t.Errorf("sandbox available: got %v %q; want true, no reason", ps[0].Available, ps[0].UnavailableReason)
	}
	want := "No OAuth credentials are configured for Bare CRM; add them to the providers file."
	if ps[1].Available || ps[1].UnavailableReason != want {
		t.Errorf("bare: got available=%v reason %q; want false, %q", ps[1].Available, ps[1].UnavailableReason, want)
	}
	if got := ps[0].SettingsLocation(); got != "Settings → Integrations → CRM" {
		t.Errorf("settings location: got %q; want the CRM location", got)
	}

	// Catalogue values are copies.
	ps[0].Scopes[0] = "mutated"
	ps[0].SettingDefinitions[2].Options[0] = "mutated"
	p, ok := reg.Provider("sandbox")
	if !ok || p.Scopes[0] != "contacts.read" || p.SettingDefinitions[2].Options[0] != "sales" {
		t.Errorf("provider after mutating a copy: got %+v; want it unchanged", p)
	}

	// Sandbox settings as the design gives them.
	for _, tc := range []struct{ key, value, want string }{
		{"sync_interval_minutes", "0030", "30"},
		{"sync_deals", "FALSE", "false"},
		{"pipeline", "renewals", "renewals"},
	} {
		d, ok := p.Definition(tc.key)
		if !ok {
			t.Errorf("definition %s: got none; want one", tc.key)
			continue
		}
		if got, err := d.Validate(tc.value); err != nil || got != tc.want {
			t.Errorf("Validate(%s=%q): got %q, %v; want %q", tc.key, tc.value, got, err, tc.want)
		}
	}
	if d, _ := p.Definition("sync_interval_minutes"); d.Default != "15" || d.Min != 5 || d.Max != 1440 {
		t.Errorf("sync_interval_minutes: got %+v; want default 15, 5..1440", d)
	}
	if _, err := p.ApplySettings(nil, []switchboard.SettingInput{{Key: "sync_interval_minutes", Value: "4"}}); switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Errorf("sync_interval_minutes=4: got %v; want EINVALID", err)
	}

	if _, ok := reg.Provider("nope"); ok {
		t.Errorf("Provider(nope): got found; want not found")
	}
	_, _, err := reg.AuthCodeURL("nope", "st", "")
	wantCode(t, err, switchboard.ENOTFOUND)
	_, _, err = reg.AuthCodeURL("bare", "st", "")
	wantCode(t, err, switchboard.EINVALID)
	if got := switchboard.ErrorMessage(err); got != want {
		t.Errorf("message: got %q; want %q", got, want)
	}
	_, _, err = reg.AuthCodeURL("sandbox", "", "")
	wantCode(t, err, switchboard.EINVALID)

	cfg, ok := reg.Config("bare")
	if !ok || cfg.RefreshMargin != DefaultRefreshMargin || cfg.Identity.ID != "sub" || cfg.AuthStyle != AuthStyleHeader {
		t.Errorf("Config(bare): got %+v; want defaults filled in", cfg)
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
