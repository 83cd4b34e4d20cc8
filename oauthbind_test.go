package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// The OAuth flow is bound to the browser that opens the start link
// (docs/security-oauth.md): a callback URL replayed by any other client is
// refused, changes nothing and does not spoil the flow for its browser.
func TestOAuthCallbackNeedsTheBrowserThatStartedIt(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	d := c.must(`mutation { connectIntegration(input: {provider: "sandbox", loginHint: "ada@sandbox.test"}) { authorizationUrl expiresAt integration { id } } }`, nil)
	authURL, id := str(d, "connectIntegration.authorizationUrl"), str(d, "connectIntegration.integration.id")
	if !strings.HasPrefix(authURL, m.URL+"/oauth/start/") {
		t.Errorf("authorizationUrl %q; want a start link under %s/oauth/start/", authURL, m.URL)
	}

	// The start link sets the flow's cookie, then sends the browser on.
	victim := oauthBrowser()
	resp, err := victim.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, m.URL+"/sandbox/authorize?") {
		t.Errorf("start link: got %d to %q; want 302 to the sandbox's authorization page", resp.StatusCode, loc)
	}
	wantOAuthHeaders(t, "start link", resp.Header)
	ck := &http.Cookie{Name: "none"}
	if cookies := resp.Cookies(); len(cookies) != 1 {
		t.Errorf("start link set %d cookies; want 1", len(cookies))
	} else {
		ck = cookies[0]
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/oauth/" || ck.MaxAge <= 0 || ck.MaxAge > 601 || ck.Value == "" {
		t.Errorf("cookie %s; want HttpOnly, SameSite=Lax, Path=/oauth/, a Max-Age within the flow's 10 minutes", ck)
	}
	if strings.Contains(authURL, ck.Value) {
		t.Errorf("the start link %q carries the cookie's value", authURL)
	}
	// Opening the link again (a person retrying, a link preview) changes
	// nothing: the same flow, the same cookie.
	cb := callbackURL(t, victim, authURL)
	if ck.Value != "" && strings.Contains(cb, ck.Value) {
		t.Errorf("the callback URL %q carries the cookie's value", cb)
	}
	before := integration(t, c, id)

	// Replayed by other clients: no cookie, or another value in it.
	wrong := oauthBrowser()
	u, _ := url.Parse(m.URL + "/oauth/")
	wrong.Jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: strings.Repeat("A", len(ck.Value)), Path: "/oauth/"}})
	for name, hc := range map[string]*http.Client{"no cookie": {Timeout: 10 * time.Second}, "another cookie": wrong} {
		status, body := fetch(t, hc, cb)
		if status != http.StatusForbidden || !strings.Contains(body, "not started in this browser") || !strings.Contains(body, `data-code="FORBIDDEN"`) {
			t.Errorf("%s: got %d %s; want 403 FORBIDDEN saying it was not started in this browser", name, status, body)
		}
		expect(t, name+": integration unchanged", integration(t, c, id), before)
	}

	// The browser that started the flow finishes it: the refusals did not
	// use up its state.
	resp, err = victim.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback in the starting browser: got %d %s; want 200", resp.StatusCode, body)
	}
	wantOAuthHeaders(t, "callback", resp.Header)
	if got := resp.Cookies(); len(got) != 1 || got[0].Name != ck.Name || got[0].MaxAge >= 0 {
		t.Errorf("callback cookies %v; want %s cleared", got, ck.Name)
	}
	in := integration(t, c, id)
	expect(t, "after the callback", []any{in["status"], str(in, "account.email")}, []any{"CONNECTED", "ada@sandbox.test"})

	// The start link died with its flow.
	if status, body := fetch(t, oauthBrowser(), authURL); status != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Errorf("start link after the flow: got %d %s; want 400 saying it was used", status, body)
	}
	wantMetric(t, m, `switchboard_oauth_refusals_total{reason="not_this_browser",step="callback"} 2`)
}

// A flow dies with the API token that started it.
func TestOAuthFlowEndsWithItsToken(t *testing.T) {
	m := mustStart(t, "")
	admin := newClient(t, m, m.DemoToken)
	d := admin.must(`mutation { createApiToken(input: {name: "automation"}) { secret token { id } } }`, nil)
	auto := newClient(t, m, str(d, "createApiToken.secret"))
	tokenID := str(d, "createApiToken.token.id")

	// Two flows: one walked up to the provider's redirect, one not opened.
	d = auto.must(`mutation { connectIntegration(input: {provider: "sandbox", loginHint: "ada@sandbox.test"}) { authorizationUrl integration { id } } }`, nil)
	id := str(d, "connectIntegration.integration.id")
	browser := oauthBrowser()
	cb := callbackURL(t, browser, str(d, "connectIntegration.authorizationUrl"))
	d = auto.must(`mutation { connectIntegration(input: {provider: "sandbox-mail", loginHint: "ada@sandbox.test"}) { authorizationUrl } }`, nil)
	unopened := str(d, "connectIntegration.authorizationUrl")
	before := integration(t, admin, id)

	admin.must(`mutation($id: ID!) { revokeApiToken(input: {id: $id}) { id } }`, map[string]any{"id": tokenID})

	if status, body := fetch(t, browser, cb); status != http.StatusForbidden || !strings.Contains(body, "API token that started this sign-in was revoked") {
		t.Errorf("callback: got %d %s; want 403 saying the token was revoked", status, body)
	}
	expect(t, "integration unchanged", integration(t, admin, id), before)
	if status, body := fetch(t, oauthBrowser(), unopened); status != http.StatusForbidden || !strings.Contains(body, "was revoked") {
		t.Errorf("start link: got %d %s; want 403 saying the token was revoked", status, body)
	}
	// The refusal is audited, once: the flow is over.
	d = admin.must(`{ auditLog(first: 5) { entries { action target tokenId detail } } }`, nil)
	expect(t, "newest audit entry", get(d, "auditLog.entries").([]any)[0],
		map[string]any{"action": "oauthCallbackRefused", "target": id, "tokenId": tokenID, "detail": switchboard.RefusedTokenRevoked})
	if status, body := fetch(t, browser, cb); status != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Errorf("callback again: got %d %s; want 400, the flow is over", status, body)
	}
	wantMetric(t, m, `switchboard_oauth_refusals_total{reason="token_revoked",step="callback"} 1`)
	wantMetric(t, m, `switchboard_oauth_refusals_total{reason="token_revoked",step="start"} 1`)
}

// A token never creates a token that outlives it or holds a scope it lacks.
func TestTokenCannotOutliveOrExceedItsCreator(t *testing.T) {
	m := mustStart(t, "")
	admin := newClient(t, m, m.DemoToken)
	const create = `mutation($in: CreateApiTokenInput!) { createApiToken(input: $in) { secret token { scopes expiresAt } } }`
	at := func(d time.Duration) string {
		return time.Now().Add(d).UTC().Truncate(time.Second).Format(time.RFC3339)
	}
	parentExpiry := at(time.Hour)
	d := admin.must(create, map[string]any{"in": map[string]any{"name": "short", "scopes": []string{"tokens:admin", "integrations:read"}, "expiresAt": parentExpiry}})
	parent := newClient(t, m, str(d, "createApiToken.secret"))

	// Without expiresAt or scopes: the parent's expiry, and the default
	// scopes it holds.
	d = parent.must(create, map[string]any{"in": map[string]any{"name": "child"}})
	expect(t, "child of an expiring token", []any{get(d, "createApiToken.token.expiresAt"), get(d, "createApiToken.token.scopes")},
		[]any{parentExpiry, []any{"integrations:read"}})
	// Within the parent's lifetime and scopes: as asked.
	shorter := at(30 * time.Minute)
	d = parent.must(create, map[string]any{"in": map[string]any{"name": "shorter", "scopes": []string{"integrations:read"}, "expiresAt": shorter}})
	expect(t, "shorter child", get(d, "createApiToken.token.expiresAt"), shorter)

	for _, tt := range []struct {
		name string
		in   map[string]any
		code string
		says string
	}{
		{"outlives", map[string]any{"name": "long", "expiresAt": at(2 * time.Hour)}, switchboard.EFORBIDDEN, "cannot create one that outlives it"},
		{"a scope it lacks", map[string]any{"name": "w", "scopes": []string{"integrations:write"}}, switchboard.EFORBIDDEN, "lacks itself"},
		{"in the past", map[string]any{"name": "past", "expiresAt": at(-time.Minute)}, switchboard.EINVALID, "in the future"},
	} {
		e := parent.fails(tt.code, create, map[string]any{"in": tt.in})
		if !strings.Contains(e.Message, tt.says) {
			t.Errorf("%s: got %q; want it to say %q", tt.name, e.Message, tt.says)
		}
	}
	// A token that never expires may create one that never expires.
	d = admin.must(create, map[string]any{"in": map[string]any{"name": "forever"}})
	expect(t, "child of a token that never expires", get(d, "createApiToken.token.expiresAt"), nil)
}

// wantOAuthHeaders checks the headers of every /oauth/ answer.
func wantOAuthHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("%s: Content-Security-Policy %q; want frame-ancestors 'none'", what, csp)
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s %q; want %q", what, k, got, v)
		}
	}
}

func wantMetric(t *testing.T, m *Main, line string) {
	t.Helper()
	status, body := fetch(t, http.DefaultClient, m.URL+"/metrics")
	if status != http.StatusOK || !strings.Contains(body, "\n"+line+"\n") {
		t.Errorf("/metrics lacks %q", line)
	}
}
