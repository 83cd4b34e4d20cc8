package oauthflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// errorTexts is every text an error chain can print: the error, and each
// cause reachable by Unwrap, formatted with %v and %+v.
func errorTexts(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		out = append(out, e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		}
	}
	walk(err)
	return out
}

func assertNoToken(t *testing.T, err error, token string) {
	t.Helper()
	for _, s := range errorTexts(err) {
		if strings.Contains(s, token) {
			t.Fatalf("the access token appears in an error text: %s", s)
		}
	}
}

// hubspotLike answers GET /oauth/v1/access-tokens/{token} the way HubSpot
// does: the token's metadata, or 404 for a token it does not know.
func hubspotLike(t *testing.T, known string, sawAuth *bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		if r.Header.Get("Authorization") != "" {
			*sawAuth = true
		}
		tok, ok := strings.CutPrefix(r.URL.Path, "/oauth/v1/access-tokens/")
		if !ok || r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if tok != known {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"status":"error","message":"Token %s not found","correlationId":"c0ffee","category":"OBJECT_NOT_FOUND"}`, tok)
			return
		}
		fmt.Fprintf(w, `{"token":%q,"user":"ada@corp.test","hub_domain":"acme.hubspot.com","scopes":["oauth","crm.objects.contacts.read"],"hub_id":4711,"app_id":9,"expires_in":1799,"user_id":123456,"token_type":"access"}`, tok)
	}))
}

func hubspotFor(t *testing.T, base string, client *http.Client) (*Registry, *ProviderConfig) {
	t.Helper()
	var p ProviderConfig
	for _, b := range BuiltinProviders() {
		if b.ID == "hubspot" {
			p = b
		}
	}
	p.ClientID, p.ClientSecret = "cid", "secret"
	p.UserinfoURL = strings.Replace(p.UserinfoURL, "https://api.hubapi.com", base, 1)
	reg := mustRegistry(t, "http://127.0.0.1/oauth/callback", client, p)
	return reg, reg.providers["hubspot"].cfg
}

func TestHubSpotIdentityTokenInPath(t *testing.T) {
	const token = "CJSP5qf1KhICAQEYs-gDIIGOBii1hQIyGQAf3xBKEgsYjYMJVvlHEz9tFHAwSq1TQAM40s0D"
	sawAuth := false
	srv := hubspotLike(t, token, &sawAuth)
	defer srv.Close()
	reg, cfg := hubspotFor(t, srv.URL, &http.Client{Timeout: 5 * time.Second})
	ctx := context.Background()

	acct, err := reg.userinfo(ctx, cfg, token)
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if want := (switchboard.Account{ID: "123456", Name: "ada@corp.test", Email: "ada@corp.test"}); acct != want {
		t.Errorf("account: got %+v; want %+v", acct, want)
	}
	if sawAuth {
		t.Errorf("the token was sent in an Authorization header as well as in the path")
	}

	// An unknown token: HubSpot's 404 echoes the token; nothing of it may
	// reach an error.
	const other = "CNeverIssued-token-0123456789"
	_, err = reg.userinfo(ctx, cfg, other)
	if switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Fatalf("unknown token: got %v; want INVALID_INPUT", err)
	}
	assertNoToken(t, err, other)

	// Unreachable: net/http's *url.Error would print the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	reg2, cfg2 := hubspotFor(t, dead, &http.Client{Timeout: 5 * time.Second})
	_, err = reg2.userinfo(ctx, cfg2, token)
	if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("unreachable: got %v; want UNAVAILABLE", err)
	}
	assertNoToken(t, err, token)
	var ue interface{ Timeout() bool }
	if !errors.As(err, &ue) {
		t.Errorf("the cause is no longer reachable for retry decisions: %v", err)
	}

	// Too slow: a client timeout's error names the URL too.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer hang.Close()
	reg3, cfg3 := hubspotFor(t, hang.URL, &http.Client{Timeout: 50 * time.Millisecond})
	_, err = reg3.userinfo(ctx, cfg3, token)
	if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("timeout: got %v; want UNAVAILABLE", err)
	}
	assertNoToken(t, err, token)
}

func TestTokenPlaceholderOnlyInPath(t *testing.T) {
	base := ProviderConfig{ID: "acme", Name: "Acme", Category: switchboard.CategoryCRM, AuthURL: "https://a.example/authorize", TokenURL: "https://a.example/token"}
	for _, u := range []string{"https://a.example/me?token={token}", "https://{token}.a.example/me"} {
		p := base
		p.UserinfoURL = u
		if err := normalize(&p); err == nil || !strings.Contains(err.Error(), "userinfoUrl") {
			t.Errorf("userinfoUrl %s: got %v; want it refused", u, err)
		}
	}
	p := base
	p.UserinfoURL = "https://a.example/tokens/{token}/info"
	if err := normalize(&p); err != nil {
		t.Errorf("placeholder in the path: %v", err)
	}
	ps, err := ParseProviders([]byte("providers:\n  - id: acme\n    name: Acme\n    category: CRM\n    authUrl: https://a.example/authorize\n    tokenUrl: https://a.example/token\n    userinfoUrl: https://a.example/v1/access-tokens/{token}\n    revokeStyle: bearer\n    revokeUrl: https://a.example/revoke\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if got := ps[len(ps)-1]; got.UserinfoURL != "https://a.example/v1/access-tokens/{token}" || got.RevokeStyle != RevokeStyleBearer {
		t.Errorf("custom provider: got %+v", got)
	}
}

// Slack answers refusals as HTTP 200 {"ok":false}: identity lookups and
// revocations read them.
func TestSlackOkFalse(t *testing.T) {
	answer := `{"ok":false,"error":"invalid_auth"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	var p ProviderConfig
	for _, b := range BuiltinProviders() {
		if b.ID == "slack" {
			p = b
		}
	}
	p.ClientID, p.ClientSecret = "cid", "secret"
	p.UserinfoURL, p.RevokeURL = srv.URL+"/api/auth.test", srv.URL+"/api/auth.revoke"
	reg := mustRegistry(t, "http://127.0.0.1/oauth/callback", &http.Client{Timeout: 5 * time.Second}, p)
	ctx := context.Background()
	_, err := reg.userinfo(ctx, reg.providers["slack"].cfg, "xoxb-1")
	var pf *providerError
	if switchboard.ErrorCode(err) != switchboard.EINVALID || !asFailure(err, &pf) || pf.OAuthCode() != "invalid_auth" {
		t.Fatalf("auth.test ok:false: got %v; want a refusal with code invalid_auth", err)
	}
	tokens := &switchboard.TokenSet{AccessToken: "xoxb-1", RefreshToken: "xoxe-1"}
	// A token Slack no longer accepts is as good as revoked.
	if err := reg.Revoke(ctx, "slack", tokens); err != nil {
		t.Errorf("auth.revoke of an unusable token: %v", err)
	}
	answer = `{"ok":false,"error":"ratelimited"}`
	if err := reg.Revoke(ctx, "slack", tokens); switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Errorf("auth.revoke ratelimited: got %v; want UNAVAILABLE (retry)", err)
	}
	answer = `{"ok":false,"error":"not_allowed_token_type"}`
	if err := reg.Revoke(ctx, "slack", tokens); switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Errorf("auth.revoke refused: got %v; want INVALID_INPUT", err)
	}
}
