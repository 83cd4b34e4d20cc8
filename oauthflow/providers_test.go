package oauthflow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bont/switchboard/switchboard"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseProviders(t *testing.T) {
	const file = `
providers:
  - id: hubspot
    clientId: "1234"
    clientSecret: ${HUBSPOT_CLIENT_SECRET}
  - id: acme
    name: Acme CRM
    category: CRM
    clientId: acme-client
    clientSecret: ${ACME_SECRET}
    authUrl: https://auth.acme.example/authorize
    tokenUrl: https://auth.acme.example/token
    revokeUrl: https://auth.acme.example/revoke
    userinfoUrl: https://auth.acme.example/userinfo
    identity: { id: sub, name: name, email: email }
    scopes: [contacts.read, deals.read]
    refreshMargin: 5m
    settings:
      - { key: region, label: Region, type: ENUM, options: [eu, us], default: eu }
`
	ps, err := ParseProviders([]byte(file), env(map[string]string{
		"HUBSPOT_CLIENT_SECRET": "hs: secret # not a comment",
		"ACME_SECRET":           "$ACME${literal}",
	}))
	if err != nil {
		t.Fatalf("ParseProviders: got %v; want nil", err)
	}
	var ids []string
	byID := map[string]ProviderConfig{}
	for _, p := range ps {
		ids = append(ids, p.ID)
		byID[p.ID] = p
	}
	if got, want := strings.Join(ids, ","), "hubspot,salesforce,pipedrive,google,microsoft,slack,teams,acme"; got != want {
		t.Errorf("ids: got %s; want %s", got, want)
	}
	hs := byID["hubspot"]
	if hs.ClientID != "1234" || hs.ClientSecret != "hs: secret # not a comment" {
		t.Errorf("hubspot credentials: got %q %q; want 1234 and the secret verbatim", hs.ClientID, hs.ClientSecret)
	}
	if hs.TokenURL != "https://api.hubapi.com/oauth/v1/token" {
		t.Errorf("hubspot token URL: got %q; want the built-in", hs.TokenURL)
	}
	acme := byID["acme"]
	if acme.ClientSecret != "$ACME${literal}" {
		t.Errorf("acme secret: got %q; want the value as given by the environment", acme.ClientSecret)
	}
	if acme.Category != switchboard.CategoryCRM || acme.RevokeURL == "" || len(acme.Scopes) != 2 || acme.RefreshMargin.Minutes() != 5 {
		t.Errorf("acme: got %+v; want the file's fields", acme)
	}
	if len(acme.SettingDefinitions) != 1 || acme.SettingDefinitions[0].Options[1] != "us" {
		t.Errorf("acme settings: got %+v; want the region enum", acme.SettingDefinitions)
	}

	reg := mustRegistry(t, "http://127.0.0.1:8080/oauth/callback", nil, ps...)
	for _, p := range reg.Providers() {
		wantAvailable := p.ID == "hubspot" || p.ID == "acme"
		if p.Available != wantAvailable {
			t.Errorf("%s available: got %v; want %v", p.ID, p.Available, wantAvailable)
		}
	}
}

func TestParseProvidersErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"misspelt key", "providers:\n  - id: hubspot\n    clientSecrt: x\n", "line 3: field clientSecrt"},
		{"misspelt key after a comment and blank lines", "# providers\n\nproviders:\n\n  - id: hubspot\n    clientId: ${X}\n\n    clientSecrt: x\n", "line 8: field clientSecrt"},
		{"no id", "providers:\n  - clientId: x\n", "id is missing"},
		{"line of the entry", "providers:\n  - id: slack\n\n  # the next one is wrong\n  - id: acme\n    name: Acme\n    category: CRM\n", "line 5: providers[1] (acme)"},
		{"reserved id", "providers:\n  - id: sandbox\n", "reserved"},
		{"twice", "providers:\n  - id: slack\n  - id: slack\n", "twice"},
		{"custom without URLs", "providers:\n  - id: acme\n    name: Acme\n    category: CRM\n", "authUrl and tokenUrl"},
		{"bad category", "providers:\n  - id: acme\n    name: Acme\n    category: FOOD\n    authUrl: https://a.example/a\n    tokenUrl: https://a.example/t\n", "category"},
		{"bad margin", "providers:\n  - id: slack\n    refreshMargin: soon\n", "refreshMargin"},
		{"bad setting type", "providers:\n  - id: slack\n    settings: [{key: k, type: DATE}]\n", "DATE"},
		{"half credentials", "providers:\n  - id: slack\n    clientId: x\n", "together"},
		{"not yaml", "providers: [", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProviders([]byte(tc.file), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseProviders: got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadProviders(t *testing.T) {
	ps, err := LoadProviders("")
	if err != nil || len(ps) != len(BuiltinProviders()) {
		t.Fatalf("LoadProviders(\"\"): got %d, %v; want the built-ins", len(ps), err)
	}
	reg := mustRegistry(t, "http://127.0.0.1:8080/oauth/callback", nil, ps...)
	for _, p := range reg.Providers() {
		if p.Available {
			t.Errorf("%s: got available; want unavailable without credentials", p.ID)
		}
	}

	path := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(path, []byte("providers:\n  - id: google\n    clientId: g\n    clientSecret: ${SWITCHBOARD_TEST_GOOGLE_SECRET}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SWITCHBOARD_TEST_GOOGLE_SECRET", "from-env")
	ps, err = LoadProviders(path)
	if err != nil {
		t.Fatalf("LoadProviders: got %v; want nil", err)
	}
	for _, p := range ps {
		if p.ID == "google" && p.ClientSecret != "from-env" {
			t.Errorf("google secret: got %q; want %q", p.ClientSecret, "from-env")
		}
	}
	if _, err := LoadProviders(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Errorf("LoadProviders(missing): got nil; want an error")
	}

	// Built-ins are independent copies.
	a := BuiltinProviders()
	a[0].SettingDefinitions[0].Label = "mutated"
	if b := BuiltinProviders(); b[0].SettingDefinitions[0].Label == "mutated" {
		t.Errorf("BuiltinProviders: got shared setting definitions; want copies")
	}
}
