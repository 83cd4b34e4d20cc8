package oauthflow

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// lookalike is an httptest server answering like one provider's token and
// identity endpoints: the shape of the token response (expires_in or not,
// scope separator, rotation, extra fields) and of the account answer.
type lookalike struct {
	token    func(grant string, n int) map[string]any
	userinfo map[string]any
	// refusal is the body and status of a refused refresh.
	refusalStatus int
	refusal       map[string]any
}

func TestBuiltinProvidersAgainstLookalikes(t *testing.T) {
	std := func(extra map[string]any) func(string, int) map[string]any {
		return func(grant string, n int) map[string]any {
			m := map[string]any{"access_token": "at-" + grant + string(rune('0'+n)), "token_type": "bearer", "refresh_token": "rt-1", "expires_in": 3600}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
	}
	rotating := func(extra map[string]any) func(string, int) map[string]any {
		return func(grant string, n int) map[string]any {
			m := std(extra)(grant, n)
			m["refresh_token"] = "rt-" + string(rune('1'+n))
			return m
		}
	}
	invalidGrant := map[string]any{"error": "invalid_grant", "error_description": "expired or revoked"}
	cases := map[string]struct {
		lk           lookalike
		wantExpiry   bool
		wantRotation bool
		wantExtra    [2]string
		wantAccount  switchboard.Account
	}{
		"hubspot": {lk: lookalike{token: func(g string, n int) map[string]any {
			// 30-minute access tokens, no scope field.
			m := std(nil)(g, n)
			m["expires_in"] = 1800
			return m
		}, userinfo: map[string]any{"token": "echoed", "user": "ada@corp.test", "hub_domain": "acme.hubspot.com", "hub_id": 4711, "app_id": 9, "expires_in": 1700,
			"user_id": 123456, "token_type": "access", "scopes": []string{"oauth", "crm.objects.contacts.read", "crm.objects.deals.read"}},
			refusalStatus: 400, refusal: map[string]any{"status": "BAD_REFRESH_TOKEN", "error": "invalid_grant", "message": "missing or unknown refresh token"}},
			wantExpiry: true, wantAccount: switchboard.Account{ID: "123456", Name: "ada@corp.test", Email: "ada@corp.test"}},
		"salesforce": {lk: lookalike{token: func(g string, n int) map[string]any {
			// No expires_in; instance_url; scope space-separated.
			return map[string]any{"access_token": "00D!x" + string(rune('0'+n)), "token_type": "Bearer", "refresh_token": "5Aep", "instance_url": "https://eu42.my.salesforce.com",
				"id": "https://login.salesforce.com/id/00D/005", "issued_at": "1700000000000", "scope": "api refresh_token", "signature": "sig"}
		}, userinfo: map[string]any{"user_id": "005xx", "name": "Ada", "email": "ada@corp.test", "sub": "https://login.salesforce.com/id/00D/005xx"},
			refusalStatus: 400, refusal: map[string]any{"error": "invalid_grant", "error_description": "expired access/refresh token"}},
			wantExtra: [2]string{"instance_url", "https://eu42.my.salesforce.com"}, wantAccount: switchboard.Account{ID: "005xx", Name: "Ada", Email: "ada@corp.test"}},
		"pipedrive": {lk: lookalike{token: std(map[string]any{"scope": "base,contacts:read,deals:read", "api_domain": "https://acme.pipedrive.com"}),
			userinfo:      map[string]any{"success": true, "data": map[string]any{"id": 42, "name": "Ada", "email": "ada@corp.test"}},
			refusalStatus: 400, refusal: invalidGrant},
			wantExpiry: true, wantExtra: [2]string{"api_domain", "https://acme.pipedrive.com"}, wantAccount: switchboard.Account{ID: "42", Name: "Ada", Email: "ada@corp.test"}},
		"google": {lk: lookalike{token: std(map[string]any{"scope": "openid https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/calendar.readonly https://www.googleapis.com/auth/userinfo.email", "id_token": "x.y.z"}),
			userinfo:      map[string]any{"sub": "1098", "name": "Ada", "email": "ada@gmail.test"},
			refusalStatus: 400, refusal: map[string]any{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}},
			wantExpiry: true, wantAccount: switchboard.Account{ID: "1098", Name: "Ada", Email: "ada@gmail.test"}},
		"microsoft": {lk: lookalike{token: rotating(map[string]any{"scope": "Mail.Read Calendars.Read User.Read openid profile email", "ext_expires_in": 3600}),
			userinfo:      map[string]any{"id": "87d3", "displayName": "Ada", "mail": "ada@corp.test"},
			refusalStatus: 400, refusal: map[string]any{"error": "invalid_grant", "error_description": "AADSTS70008: The refresh token has expired", "error_codes": []int{70008}}},
			wantExpiry: true, wantRotation: true, wantAccount: switchboard.Account{ID: "87d3", Name: "Ada", Email: "ada@corp.test"}},
		"teams": {lk: lookalike{token: rotating(map[string]any{"scope": "ChannelMessage.Send Team.ReadBasic.All User.Read openid profile"}),
			userinfo:      map[string]any{"id": "87d3", "displayName": "Ada", "mail": "ada@corp.test"},
			refusalStatus: 400, refusal: map[string]any{"error": "invalid_grant", "error_description": "AADSTS50173"}},
			wantExpiry: true, wantRotation: true, wantAccount: switchboard.Account{ID: "87d3", Name: "Ada", Email: "ada@corp.test"}},
		"slack": {lk: lookalike{token: rotating(map[string]any{"ok": true, "scope": "chat:write,channels:read", "expires_in": 43200, "team": map[string]any{"id": "T1", "name": "Acme"}}),
			userinfo: map[string]any{"ok": true, "team_id": "T1", "team": "Acme", "user_id": "U9"},
			// Slack refuses with HTTP 200.
			refusalStatus: 200, refusal: map[string]any{"ok": false, "error": "invalid_refresh_token"}},
			wantExpiry: true, wantRotation: true, wantAccount: switchboard.Account{ID: "T1", Name: "Acme"}},
	}
	builtins := map[string]ProviderConfig{}
	for _, p := range BuiltinProviders() {
		builtins[p.ID] = p
	}
	for id, tc := range cases {
		t.Run(id, func(t *testing.T) {
			p := builtins[id]
			refused := false
			n := 0
			var mu sync.Mutex
			issued := map[string]bool{} // access tokens handed out
			var revoked []string        // what the revocation endpoint was given
			userinfoPath, revokePath := pathOf(p.UserinfoURL), pathOf(p.RevokeURL)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.URL.Path == "/token":
					_ = r.ParseForm()
					if refused && r.PostForm.Get("grant_type") == "refresh_token" {
						w.WriteHeader(tc.lk.refusalStatus)
						_ = json.NewEncoder(w).Encode(tc.lk.refusal)
						return
					}
					n++
					tok := tc.lk.token(r.PostForm.Get("grant_type")[:1], n)
					issued[tok["access_token"].(string)] = true
					_ = json.NewEncoder(w).Encode(tok)
				case strings.Contains(userinfoPath, TokenPlaceholder) && strings.HasPrefix(r.URL.Path, strings.TrimSuffix(userinfoPath, TokenPlaceholder)):
					// HubSpot: the token is the last path segment, and an
					// unknown one is a 404.
					prefix := strings.TrimSuffix(userinfoPath, TokenPlaceholder)
					tok, ok := strings.CutPrefix(r.URL.Path, prefix)
					if !ok || r.Method != http.MethodGet || !issued[tok] {
						w.WriteHeader(404)
						_, _ = w.Write([]byte(`{"status":"error","message":"Token not found","category":"OBJECT_NOT_FOUND"}`))
						return
					}
					_ = json.NewEncoder(w).Encode(tc.lk.userinfo)
				case r.URL.Path == userinfoPath:
					if !issued[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
						w.WriteHeader(401)
						return
					}
					_ = json.NewEncoder(w).Encode(tc.lk.userinfo)
				case r.URL.Path == revokePath && r.Method == http.MethodPost:
					if p.RevokeStyle == RevokeStyleBearer {
						// Slack's auth.revoke: the access token itself.
						revoked = append(revoked, "bearer:"+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
						_, _ = w.Write([]byte(`{"ok":true,"revoked":true}`))
						return
					}
					_ = r.ParseForm()
					revoked = append(revoked, r.PostForm.Get("token_type_hint")+":"+r.PostForm.Get("token"))
				default:
					w.WriteHeader(404)
				}
			}))
			defer srv.Close()
			p.ClientID, p.ClientSecret = "cid", "secret"
			p.AuthURL, p.TokenURL = srv.URL+"/authorize", srv.URL+"/token"
			// The look-alike serves the documented paths.
			if p.UserinfoURL != "" {
				p.UserinfoURL = srv.URL + userinfoPath
			}
			if p.RevokeURL != "" {
				p.RevokeURL = srv.URL + revokePath
			}
			reg := mustRegistry(t, "http://127.0.0.1/oauth/callback", &http.Client{Timeout: 5 * time.Second}, p)
			ctx := context.Background()
			g, err := reg.Exchange(ctx, id, "code", "verifier")
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if g.Account != tc.wantAccount {
				t.Errorf("account: got %+v; want %+v", g.Account, tc.wantAccount)
			}
			if got := switchboard.MissingScopes(p.Scopes, g.GrantedScopes); len(got) > 0 {
				t.Errorf("missing scopes %v from a full grant %v", got, g.GrantedScopes)
			}
			if g.Tokens.Expiry.IsZero() == tc.wantExpiry {
				t.Errorf("expiry %v; want set=%v", g.Tokens.Expiry, tc.wantExpiry)
			}
			next, err := reg.Refresh(ctx, id, &g.Tokens)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if rotated := next.RefreshToken != g.Tokens.RefreshToken; rotated != tc.wantRotation {
				t.Errorf("rotation: got %v; want %v", rotated, tc.wantRotation)
			}
			if next.RefreshToken == "" || next.AccessToken == g.Tokens.AccessToken {
				t.Errorf("refresh kept no refresh token or the same access token")
			}
			if k := tc.wantExtra[0]; k != "" && next.Extra[k] != tc.wantExtra[1] {
				t.Errorf("extra %s: got %q; want %q", k, next.Extra[k], tc.wantExtra[1])
			}
			if err := reg.Revoke(ctx, id, next); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			mu.Lock()
			var want []string
			switch {
			case p.RevokeURL == "":
			case p.RevokeStyle == RevokeStyleBearer:
				want = []string{"bearer:" + next.AccessToken}
			default:
				want = []string{"refresh_token:" + next.RefreshToken}
			}
			if fmt.Sprint(revoked) != fmt.Sprint(want) {
				t.Errorf("revocation endpoint got %v; want %v", revoked, want)
			}
			refused = true
			mu.Unlock()
			_, err = reg.Refresh(ctx, id, next)
			if switchboard.ErrorCode(err) != switchboard.EINVALID {
				t.Fatalf("refused refresh: got %v; want INVALID_INPUT (reconnect)", err)
			}
			var pf *providerError
			if !asFailure(err, &pf) || pf.OAuthCode() == "" {
				t.Errorf("refused refresh carries no OAuth code: %v", err)
			}
		})
	}
}

// pathOf is the path of a built-in endpoint, with TokenPlaceholder kept.
func pathOf(u string) string {
	if u == "" {
		return ""
	}
	rest := u[strings.Index(u, "://")+3:]
	if i := strings.Index(rest, "/"); i >= 0 {
		return rest[i:]
	}
	return "/"
}

func asFailure(err error, pf **providerError) bool {
	f, ok := err.(*providerError)
	if ok {
		*pf = f
	}
	return ok
}

func TestRetryAfterIsRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "42")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":"rate_limited"}`))
	}))
	defer srv.Close()
	p := ProviderConfig{ID: "acme", Name: "Acme", Category: switchboard.CategoryCRM, ClientID: "c", ClientSecret: "s",
		AuthURL: srv.URL + "/a", TokenURL: srv.URL + "/t"}
	reg := mustRegistry(t, "http://127.0.0.1/cb", &http.Client{Timeout: 5 * time.Second}, p)
	_, err := reg.Refresh(context.Background(), "acme", &switchboard.TokenSet{RefreshToken: "r"})
	if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("got %v; want UNAVAILABLE", err)
	}
	var pf *providerError
	if !asFailure(err, &pf) || pf.RetryAfter() != 42*time.Second || pf.HTTPStatus() != 429 {
		t.Errorf("got %+v; want Retry-After 42s and status 429", pf)
	}
	if d := parseRetryAfter(time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat), time.Now()); d < 88*time.Second || d > 90*time.Second {
		t.Errorf("HTTP-date Retry-After: got %v; want about 90s", d)
	}
}
