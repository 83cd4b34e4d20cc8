package sandbox

import (
	"testing"

	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/switchboard"
)

// TestCatalogue: the sandbox's CRM entry in a registry beside a provider
// without credentials.
func TestCatalogue(t *testing.T) {
	bare := oauthflow.ProviderConfig{
		ID: "bare", Name: "Bare CRM", Category: switchboard.CategoryCRM,
		AuthURL: "https://auth.acme.example/authorize", TokenURL: "https://auth.acme.example/token",
		Scopes: []string{"contacts.read"},
	}
	reg := newRegistry(t, "http://127.0.0.1:8080/oauth/callback",
		CRMProvider("http://127.0.0.1:8080/sandbox", "c", "s"), bare)

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
	if !ok || cfg.RefreshMargin != oauthflow.DefaultRefreshMargin || cfg.Identity.ID != "sub" || cfg.AuthStyle != oauthflow.AuthStyleHeader {
		t.Errorf("Config(bare): got %+v; want defaults filled in", cfg)
	}
}
