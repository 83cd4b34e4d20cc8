package sandbox

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/bont/switchboard/switchboard"
)

func TestSandboxAuthorizeErrors(t *testing.T) {
	e := newTestEnv(t)
	verifier := oauth2.GenerateVerifier()
	good := url.Values{
		"client_id":             {testClientID},
		"redirect_uri":          {e.callback},
		"response_type":         {"code"},
		"state":                 {"st"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
		"login_hint":            {"ada@sandbox.test"},
	}
	for _, tc := range []struct {
		name       string
		change     func(url.Values)
		wantStatus int
		wantError  string // the error sent to the redirect URI
	}{
		{"ok", func(url.Values) {}, http.StatusFound, ""},
		{"unknown client", func(v url.Values) { v.Set("client_id", "evil") }, http.StatusBadRequest, ""},
		{"unregistered redirect", func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") }, http.StatusBadRequest, ""},
		{"redirect prefix", func(v url.Values) { v.Set("redirect_uri", e.callback+"/x") }, http.StatusBadRequest, ""},
		{"token response type", func(v url.Values) { v.Set("response_type", "token") }, http.StatusFound, "unsupported_response_type"},
		{"no PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, http.StatusFound, "invalid_request"},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }, http.StatusFound, "invalid_request"},
		{"no state", func(v url.Values) { v.Del("state") }, http.StatusFound, "invalid_request"},
		{"unknown scope", func(v url.Values) { v.Set("scope", "contacts.write") }, http.StatusFound, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := url.Values{}
			for k, x := range good {
				v[k] = append([]string(nil), x...)
			}
			tc.change(v)
			resp, err := e.browser.Get(e.srv.URL + "/sandbox/authorize?" + v.Encode())
			if err != nil {
				t.Fatalf("GET authorize: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status: got %d; want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus != http.StatusFound {
				if loc := resp.Header.Get("Location"); loc != "" {
					t.Errorf("Location: got %q; want none", loc)
				}
				return
			}
			q := e.callbackParams(t, resp)
			if got := q.Get("error"); got != tc.wantError {
				t.Errorf("error: got %q; want %q", got, tc.wantError)
			}
			if tc.wantError != "" && q.Get("code") != "" {
				t.Errorf("code: got one; want none with an error")
			}
		})
	}
}

func TestSandboxTokenEndpoint(t *testing.T) {
	e := newTestEnv(t)
	post := func(form url.Values, user, pass string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/sandbox/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
		}
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatalf("POST token: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		name       string
		form       url.Values
		user, pass string
		wantStatus int
		wantError  string
	}{
		{"no client auth", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, "", "", 401, "invalid_client"},
		{"wrong secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, testClientID, "nope", 401, "invalid_client"},
		{"two auth methods", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_secret": {testSecret}}, testClientID, testSecret, 400, "invalid_request"},
		{"unknown refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, testClientID, testSecret, 400, "invalid_grant"},
		{"form auth", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {testClientID}, "client_secret": {testSecret}}, "", "", 400, "invalid_grant"},
		{"password grant", url.Values{"grant_type": {"password"}}, testClientID, testSecret, 400, "unsupported_grant_type"},
		{"code without verifier", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, testClientID, testSecret, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.form, tc.user, tc.pass)
			if status != tc.wantStatus || !strings.Contains(body, `"error":"`+tc.wantError+`"`) {
				t.Errorf("token: got %d %s; want %d with error %s", status, body, tc.wantStatus, tc.wantError)
			}
		})
	}

	// An oversized form is refused, not read.
	big := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("x", 100<<10)}}
	if status, _ := post(big, testClientID, testSecret); status != http.StatusBadRequest {
		t.Errorf("oversized form: got %d; want 400", status)
	}
}

func TestSandboxExpiryAndClock(t *testing.T) {
	e := newTestEnv(t)
	now := time.Now()
	var clock = now
	e.sb.mu.Lock()
	e.sb.cfg.Now = func() time.Time { return clock }
	e.sb.mu.Unlock()
	setClock := func(t time.Time) {
		e.sb.mu.Lock()
		clock = t
		e.sb.mu.Unlock()
	}

	// A code older than its short lifetime is refused.
	code, verifier := e.authorize(t, e.reg, "ada@sandbox.test")
	setClock(now.Add(2 * time.Minute))
	_, err := e.reg.Exchange(context.Background(), "sandbox", code, verifier)
	wantCode(t, err, switchboard.EINVALID)

	g := e.connect(t, "ada@sandbox.test")
	setClock(now.Add(2*time.Minute + 16*time.Minute))
	if status, _ := e.userinfoStatus(t, g.Tokens.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("userinfo after expiry: got %d; want 401", status)
	}
	// The refresh token outlives the access token.
	next, err := e.reg.Refresh(context.Background(), "sandbox", &g.Tokens)
	if err != nil {
		t.Fatalf("Refresh after expiry: got %v; want nil", err)
	}
	if status, _ := e.userinfoStatus(t, next.AccessToken); status != http.StatusOK {
		t.Errorf("userinfo with the refreshed token: got %d; want 200", status)
	}
}

func TestSandboxConsole(t *testing.T) {
	e := newTestEnv(t)
	ada := e.connect(t, "ada@sandbox.test")
	grace := e.connect(t, "grace@sandbox.test")

	resp, err := e.browser.Get(e.srv.URL + "/sandbox/")
	if err != nil {
		t.Fatalf("GET console: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	for _, want := range []string{"Ada Lovelace", "Grace Hopper", "Revoke access", "Expire access token", "contacts.read, deals.read"} {
		if !strings.Contains(page, want) {
			t.Errorf("console: got no %q; want it listed", want)
		}
	}
	if strings.Contains(page, ada.Tokens.AccessToken) || strings.Contains(page, ada.Tokens.RefreshToken) {
		t.Errorf("console: got a token in the page; want none")
	}

	grants := e.sb.Grants()
	if len(grants) != 2 {
		t.Fatalf("grants: got %d; want 2", len(grants))
	}
	action := func(path, grant, origin string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/sandbox/console/"+path, strings.NewReader(url.Values{"grant": {grant}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatalf("POST console: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if got := action("revoke", grants[0].ID, "https://evil.example"); got != http.StatusForbidden {
		t.Errorf("cross-site console post: got %d; want 403", got)
	}
	if got := action("expire", grants[0].ID, e.srv.URL); got != http.StatusSeeOther {
		t.Errorf("expire: got %d; want 303", got)
	}
	if status, _ := e.userinfoStatus(t, ada.Tokens.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("userinfo after expire: got %d; want 401", status)
	}
	if _, err := e.reg.Refresh(context.Background(), "sandbox", &ada.Tokens); err != nil {
		t.Errorf("Refresh after expire: got %v; want nil", err)
	}

	if got := action("revoke", grants[1].ID, ""); got != http.StatusSeeOther {
		t.Errorf("revoke: got %d; want 303", got)
	}
	_, err = e.reg.Refresh(context.Background(), "sandbox", &grace.Tokens)
	wantCode(t, err, switchboard.EINVALID)
	if got := e.sb.Grants(); len(got) != 1 || got[0].Email != "ada@sandbox.test" {
		t.Errorf("grants: got %+v; want only ada's", got)
	}
}

func TestSandboxAccountMethods(t *testing.T) {
	e := newTestEnv(t)
	a1 := e.connect(t, "ada@sandbox.test")
	a2 := e.connect(t, "ada@sandbox.test")
	g := e.connect(t, "grace@sandbox.test")

	if got := e.sb.ExpireAccessTokens("ada@sandbox.test"); got != 2 {
		t.Errorf("ExpireAccessTokens: got %d; want 2", got)
	}
	for _, tok := range []string{a1.Tokens.AccessToken, a2.Tokens.AccessToken} {
		if status, _ := e.userinfoStatus(t, tok); status != http.StatusUnauthorized {
			t.Errorf("userinfo after ExpireAccessTokens: got %d; want 401", status)
		}
	}
	if status, _ := e.userinfoStatus(t, g.Tokens.AccessToken); status != http.StatusOK {
		t.Errorf("grace's userinfo: got %d; want 200", status)
	}
	for _, gr := range e.sb.Grants() {
		if gr.Email == "ada@sandbox.test" && !gr.AccessExpiry.IsZero() {
			t.Errorf("ada's access expiry: got %v; want zero", gr.AccessExpiry)
		}
	}

	if got := e.sb.RevokeAccount("ADA@sandbox.test"); got != 2 {
		t.Errorf("RevokeAccount: got %d; want 2", got)
	}
	_, err := e.reg.Refresh(context.Background(), "sandbox", &a1.Tokens)
	wantCode(t, err, switchboard.EINVALID)
	if got := e.sb.Grants(); len(got) != 1 || got[0].Email != "grace@sandbox.test" {
		t.Errorf("grants: got %+v; want only grace's", got)
	}
}

func TestSandboxMountedWithStripPrefix(t *testing.T) {
	sb, err := New(Config{BaseURL: "http://127.0.0.1:8080/sandbox/", ClientID: "c", ClientSecret: "s", RedirectURIs: []string{"http://127.0.0.1:8080/oauth/callback"}})
	if err != nil {
		t.Fatalf("New: got %v; want nil", err)
	}
	h := http.StripPrefix("/sandbox", sb)
	for _, path := range []string{"/sandbox/", "/sandbox/userinfo"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		direct := httptest.NewRecorder()
		sb.ServeHTTP(direct, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != direct.Code || rec.Code == http.StatusNotFound {
			t.Errorf("%s: got %d stripped, %d direct; want the same, not 404", path, rec.Code, direct.Code)
		}
	}
	if p := sb.Provider(); p.TokenURL != "http://127.0.0.1:8080/sandbox/token" {
		t.Errorf("token URL: got %q; want no double slash", p.TokenURL)
	}
}

func TestNewSandboxValidation(t *testing.T) {
	for _, cfg := range []Config{
		{BaseURL: "", ClientID: "c", ClientSecret: "s", RedirectURIs: []string{"http://x/cb"}},
		{BaseURL: "http://x/sandbox", ClientSecret: "s", RedirectURIs: []string{"http://x/cb"}},
		{BaseURL: "http://x/sandbox", ClientID: "c", ClientSecret: "s"},
		{BaseURL: "http://x/sandbox", ClientID: "c", ClientSecret: "s", RedirectURIs: []string{"/cb"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): got nil; want an error", cfg)
		}
	}
}
