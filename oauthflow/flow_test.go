package oauthflow

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/bont/switchboard/switchboard"
)

func mustRegistry(t *testing.T, redirect string, client *http.Client, ps ...ProviderConfig) *Registry {
	t.Helper()
	reg, err := NewRegistry(Config{RedirectURL: redirect, HTTPClient: client, Providers: ps})
	if err != nil {
		t.Fatalf("NewRegistry: got %v; want nil", err)
	}
	return reg
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := switchboard.ErrorCode(err); got != code {
		t.Fatalf("error code: got %q (%v); want %q", got, err, code)
	}
}

func TestTokenEndpointTimeout(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	p := ProviderConfig{
		ID: "slow", Name: "Slow CRM", Category: switchboard.CategoryCRM, ClientID: "c", ClientSecret: "s",
		AuthURL: srv.URL + "/authorize", TokenURL: srv.URL + "/token",
	}
	reg := mustRegistry(t, "http://127.0.0.1:8080/oauth/callback", &http.Client{Timeout: 100 * time.Millisecond}, p)
	start := time.Now()
	_, err := reg.Exchange(context.Background(), "slow", "code", oauth2.GenerateVerifier())
	wantCode(t, err, switchboard.EUNAVAILABLE)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Exchange took %v; want about the client timeout", took)
	}
	_, err = reg.Refresh(context.Background(), "slow", &switchboard.TokenSet{RefreshToken: "r"})
	wantCode(t, err, switchboard.EUNAVAILABLE)
}

func TestUnreachableProvider(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there now
	p := ProviderConfig{
		ID: "gone", Name: "Gone CRM", Category: switchboard.CategoryCRM, ClientID: "c", ClientSecret: "s",
		AuthURL: base + "/authorize", TokenURL: base + "/token", RevokeURL: base + "/revoke",
	}
	reg := mustRegistry(t, "http://127.0.0.1:8080/oauth/callback", nil, p)
	_, err := reg.Refresh(context.Background(), "gone", &switchboard.TokenSet{RefreshToken: "r"})
	wantCode(t, err, switchboard.EUNAVAILABLE)
	err = reg.Revoke(context.Background(), "gone", &switchboard.TokenSet{RefreshToken: "r"})
	wantCode(t, err, switchboard.EUNAVAILABLE)
}

// TestProviderAnswers checks the parts of a token answer real providers
// vary on: comma-separated scopes, extra fields, nested numeric ids, a
// refresh answer without a refresh token.
func TestProviderAnswers(t *testing.T) {
	var mu sync.Mutex
	tokenBody := `{"access_token":"at1","token_type":"bearer","refresh_token":"rt1","expires_in":3600,"scope":"deals:read,contacts:read","api_domain":"https://acme.example","number":5}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/token":
			mu.Lock()
			defer mu.Unlock()
			_, _ = io.WriteString(w, tokenBody)
		case "/me":
			if r.Header.Get("Authorization") != "Bearer at1" && r.Header.Get("Authorization") != "Bearer at2" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, `{"data":{"id":12345678901,"name":"Pat","email":"pat@acme.example"}}`)
		}
	}))
	defer srv.Close()
	p := ProviderConfig{
		ID: "acme", Name: "Acme CRM", Category: switchboard.CategoryCRM, ClientID: "c", ClientSecret: "s",
		AuthURL: srv.URL + "/authorize", TokenURL: srv.URL + "/token", UserinfoURL: srv.URL + "/me",
		Identity: IdentityFields{ID: "data.id", Name: "data.name", Email: "data.email"},
		Scopes:   []string{"contacts:read", "deals:read"},
	}
	reg := mustRegistry(t, "http://127.0.0.1:8080/oauth/callback", nil, p)
	g, err := reg.Exchange(context.Background(), "acme", "code", oauth2.GenerateVerifier())
	if err != nil {
		t.Fatalf("Exchange: got %v; want nil", err)
	}
	if want := (switchboard.Account{ID: "12345678901", Name: "Pat", Email: "pat@acme.example"}); g.Account != want {
		t.Errorf("account: got %+v; want %+v", g.Account, want)
	}
	if got, want := g.GrantedScopes, []string{"deals:read", "contacts:read"}; !slices.Equal(got, want) {
		t.Errorf("granted scopes: got %v; want %v", got, want)
	}
	if got := g.Tokens.Extra["api_domain"]; got != "https://acme.example" {
		t.Errorf("extra api_domain: got %q; want %q", got, "https://acme.example")
	}

	mu.Lock()
	tokenBody = `{"access_token":"at2","token_type":"bearer","expires_in":3600}`
	mu.Unlock()
	next, err := reg.Refresh(context.Background(), "acme", &g.Tokens)
	if err != nil {
		t.Fatalf("Refresh: got %v; want nil", err)
	}
	if next.RefreshToken != "rt1" || next.AccessToken != "at2" {
		t.Errorf("refreshed tokens: got access %q refresh %q; want at2 and the kept rt1", next.AccessToken, next.RefreshToken)
	}
	if !slices.Equal(next.Scopes, g.Tokens.Scopes) || next.Extra["api_domain"] != "https://acme.example" {
		t.Errorf("refreshed scopes/extra: got %v %v; want them kept", next.Scopes, next.Extra)
	}

	// No scope in the answer: granted as requested (RFC 6749 §5.1).
	mu.Lock()
	tokenBody = `{"access_token":"at1","token_type":"bearer"}`
	mu.Unlock()
	g, err = reg.Exchange(context.Background(), "acme", "code", oauth2.GenerateVerifier())
	if err != nil {
		t.Fatalf("Exchange: got %v; want nil", err)
	}
	if got, want := g.GrantedScopes, []string{"contacts:read", "deals:read"}; !slices.Equal(got, want) {
		t.Errorf("granted scopes without scope field: got %v; want %v", got, want)
	}
	if !g.Tokens.Expiry.IsZero() {
		t.Errorf("expiry without expires_in: got %v; want zero", g.Tokens.Expiry)
	}

	// An OAuth error inside a 200 answer (Slack does this) is a refusal.
	mu.Lock()
	tokenBody = `{"ok":false,"error":"invalid_code"}`
	mu.Unlock()
	_, err = reg.Exchange(context.Background(), "acme", "code", oauth2.GenerateVerifier())
	wantCode(t, err, switchboard.EINVALID)

	// An answer without an access token cannot be used.
	mu.Lock()
	tokenBody = `{"token_type":"bearer"}`
	mu.Unlock()
	_, err = reg.Exchange(context.Background(), "acme", "code", oauth2.GenerateVerifier())
	wantCode(t, err, switchboard.EUNAVAILABLE)
}

func TestParseScopes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a b", []string{"a", "b"}},
		{"a,b", []string{"a", "b"}},
		{" a, b  a ", []string{"a", "b"}},
		{"", []string{}},
	} {
		if got := ParseScopes(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("ParseScopes(%q): got %v; want %v", tc.in, got, tc.want)
		}
	}
}
