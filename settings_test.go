package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// redeem posts a sign-in code the way the settings page does.
func redeem(t *testing.T, m *Main, code, origin string) (int, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest("POST", m.URL+"/settings/signin", strings.NewReader(`{"code":`+strconvQuote(code)+`}`))
	req.Header.Set("Content-Type", "application/json")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func signinCode(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Path != "/settings/signin" {
		t.Fatalf("sign-in link: got %q; want /settings/signin?code=…", link)
	}
	return u.Query().Get("code")
}

func TestSettingsSigninLink(t *testing.T) {
	m := mustStart(t, "")
	if strings.Contains(m.SigninURL, m.DemoToken) {
		t.Fatalf("sign-in link %q carries the API token", m.SigninURL)
	}
	code := signinCode(t, m.SigninURL)

	// The page itself loads with the code in its URL, and is not cached.
	resp, err := http.Get(m.SigninURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	expect(t, "page status", resp.StatusCode, 200)
	expect(t, "cache", resp.Header.Get("Cache-Control"), "no-store")
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") || !strings.Contains(string(page), `/settings/assets/app.js`) {
		t.Errorf("page: missing its script or CSP")
	}

	// Another origin cannot redeem it (and does not use it up).
	status, body := redeem(t, m, code, "http://evil.example")
	expect(t, "foreign origin", status, http.StatusForbidden)
	expect(t, "foreign origin code", body["code"], "FORBIDDEN")
	status, _ = redeem(t, m, code, "")
	expect(t, "no origin", status, http.StatusForbidden)

	status, body = redeem(t, m, code, m.URL)
	expect(t, "redeem", status, 200)
	expect(t, "token", body["token"], m.DemoToken)

	// Once only.
	status, body = redeem(t, m, code, m.URL)
	expect(t, "second redeem", status, http.StatusBadRequest)
	expect(t, "code", body["code"], "INVALID_CODE")
	status, _ = redeem(t, m, "made-up", m.URL)
	expect(t, "unknown code", status, http.StatusBadRequest)

	// A fresh link works while the first one is spent.
	status, body = redeem(t, m, signinCode(t, m.NewSigninURL()), m.URL)
	expect(t, "fresh link", status, 200)
	expect(t, "fresh token", body["token"], m.DemoToken)
}

func TestSettingsSigninLinkExpires(t *testing.T) {
	m := mustStart(t, "")
	now := time.Now()
	m.signin.SetClock(func() time.Time { return now })
	code := signinCode(t, m.NewSigninURL())
	now = now.Add(m.signin.TTL())
	status, body := redeem(t, m, code, m.URL)
	expect(t, "expired", status, http.StatusBadRequest)
	expect(t, "code", body["code"], "INVALID_CODE")
}

func TestSettingsWithoutDevModeHasNoSigninLink(t *testing.T) {
	m := mustStart(t, "", func(m *Main) {
		m.Config.Dev = false
		t.Setenv("SWITCHBOARD_SECRET_KEY", "k1:"+strings.Repeat("A", 43)+"=")
	})
	expect(t, "link", m.SigninURL, "")
	status, _ := redeem(t, m, "anything", m.URL)
	expect(t, "redeem", status, http.StatusNotFound)
	resp, err := http.Get(m.URL + "/settings")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect(t, "page", resp.StatusCode, 200)
}

// A plan without a category says so, even for providers that are not
// configured either: the settings page shows that note for the section.
func TestProvidersNamePlanBeforeConfiguration(t *testing.T) {
	m := mustStart(t, "")
	ctx := ctxAs(DemoUserID)
	if err := m.store.CreateWorkspace(ctx, &switchboard.Workspace{ID: "ws_base", Name: "Base", Plan: switchboard.PlanBase, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tok, err := m.service.CreateAPIToken(ctx, &switchboard.APIToken{WorkspaceID: "ws_base", UserID: "usr_b", Name: "b", Role: switchboard.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, m, tok)
	d := c.must(`{ providers(category: CRM) { id available unavailableReason } }`, nil)
	ps := d["providers"].([]any)
	if len(ps) < 2 {
		t.Fatalf("providers: got %d; want the sandbox and the built-in CRMs", len(ps))
	}
	for _, p := range ps {
		p := p.(map[string]any)
		want := "CRM integrations are part of the pure and funky plans; this workspace is on the base plan."
		if p["available"] != false || p["unavailableReason"] != want {
			t.Errorf("%s: got %v %q; want unavailable, %q", p["id"], p["available"], p["unavailableReason"], want)
		}
	}
}
