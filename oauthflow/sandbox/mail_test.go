package sandbox

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

const (
	testMailClientID = "switchboard-test-mail"
	testMailSecret   = "mail-s3cret"
)

// mailEnv is a sandbox with both clients registered, keeping its state in
// a file, and a Registry with both catalogue entries.
type mailEnv struct {
	*testEnv
	state   string
	current atomic.Pointer[Server] // what the server serves; replaced by a restart
}

// restart replaces the sandbox with a new one reading the same state file.
func (e *mailEnv) restart(t *testing.T) {
	t.Helper()
	e.sb = e.newSandbox(t)
	e.current.Store(e.sb)
}

func newMailEnv(t *testing.T) *mailEnv {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &mailEnv{state: filepath.Join(t.TempDir(), "sandbox.json")}
	e.testEnv = &testEnv{
		srv:      srv,
		callback: srv.URL + "/oauth/callback",
		browser: &http.Client{
			Timeout:       5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	e.restart(t)
	mux.Handle("/sandbox/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.current.Load().ServeHTTP(w, r) }))
	mail, ok := e.sb.MailProvider()
	if !ok {
		t.Fatal("MailProvider: got none; want the mail client's entry")
	}
	e.reg = newRegistry(t, e.callback, e.sb.Provider(), mail)
	return e
}

func (e *mailEnv) newSandbox(t *testing.T) *Server {
	t.Helper()
	sb, err := New(Config{
		BaseURL: e.srv.URL + "/sandbox", ClientID: testClientID, ClientSecret: testSecret,
		MailClientID: testMailClientID, MailClientSecret: testMailSecret,
		RedirectURIs: []string{e.callback}, StateFile: e.state,
	})
	if err != nil {
		t.Fatalf("New: got %v; want nil", err)
	}
	return sb
}

// connectAs runs the whole flow for provider as email.
func (e *mailEnv) connectAs(t *testing.T, provider, email string) *switchboard.Grant {
	t.Helper()
	authURL, verifier, err := e.reg.AuthCodeURL(provider, "st", email)
	if err != nil {
		t.Fatalf("AuthCodeURL: got %v; want nil", err)
	}
	resp, err := e.browser.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	code := e.callbackParams(t, resp).Get("code")
	g, err := e.reg.Exchange(context.Background(), provider, code, verifier)
	if err != nil {
		t.Fatalf("Exchange %s: got %v; want nil", provider, err)
	}
	return g
}

// postAs posts a form to the sandbox endpoint with a client's credentials.
func (e *mailEnv) postAs(t *testing.T, endpoint, clientID, secret string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/sandbox/"+endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := e.browser.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSandboxMailClient(t *testing.T) {
	e := newMailEnv(t)
	mail, _ := e.sb.MailProvider()
	if mail.ID != "sandbox-mail" || mail.Category != switchboard.CategoryEmailCalendar || mail.TokenURL != e.sb.Provider().TokenURL {
		t.Errorf("mail entry: got %s %s %s; want sandbox-mail, EMAIL_CALENDAR, the CRM's token URL", mail.ID, mail.Category, mail.TokenURL)
	}

	g := e.connectAs(t, "sandbox-mail", "ada@sandbox.test")
	if want := []string{ScopeMailRead, ScopeCalendarRead}; !slices.Equal(g.GrantedScopes, want) {
		t.Errorf("ada's mail scopes: got %v; want %v", g.GrantedScopes, want)
	}
	if g.Account.Email != "ada@sandbox.test" {
		t.Errorf("account: got %+v; want ada", g.Account)
	}
	if got := e.connectAs(t, "sandbox-mail", "limited@sandbox.test").GrantedScopes; !slices.Equal(got, []string{ScopeMailRead}) {
		t.Errorf("limited's mail scopes: got %v; want only mail.read", got)
	}
	crm := e.connectAs(t, "sandbox", "ada@sandbox.test")
	if want := []string{ScopeContactsRead, ScopeDealsRead}; !slices.Equal(crm.GrantedScopes, want) {
		t.Errorf("ada's CRM scopes: got %v; want %v", crm.GrantedScopes, want)
	}

	// Each client asks only for its own product's scopes.
	authURL, _, _ := e.reg.AuthCodeURL("sandbox-mail", "st", "ada@sandbox.test")
	u, _ := url.Parse(authURL)
	q := u.Query()
	q.Set("scope", ScopeContactsRead)
	resp, err := e.browser.Get(e.srv.URL + "/sandbox/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got := e.callbackParams(t, resp).Get("error"); got != "invalid_scope" {
		t.Errorf("mail client asking contacts.read: got %q; want invalid_scope", got)
	}

	// The chooser names the product the application signs in to.
	q.Del("scope")
	q.Del("login_hint")
	resp, err = e.browser.Get(e.srv.URL + "/sandbox/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Sign in to Sandbox Mail") || !strings.Contains(string(page), "mail.read, calendar.read") {
		t.Errorf("mail chooser: got no %q with its scopes", "Sign in to Sandbox Mail")
	}

	// The console lists grants of both products.
	resp, err = e.browser.Get(e.srv.URL + "/sandbox/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"<td>Sandbox Mail</td>", "<td>Sandbox CRM</td>"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("console: got no %q", want)
		}
	}

	// A mail refresh token works for the mail client only: the CRM client
	// presenting it gets invalid_grant and the grant stays whole.
	if status, body := e.postAs(t, "token", testClientID, testSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {g.Tokens.RefreshToken}}); status != http.StatusBadRequest || !strings.Contains(body, "invalid_grant") {
		t.Errorf("CRM client refreshing a mail token: got %d %s; want 400 invalid_grant", status, body)
	}
	// Nor can it revoke the mail grant (answered like an unknown token).
	if status, _ := e.postAs(t, "revoke", testClientID, testSecret, url.Values{"token": {g.Tokens.RefreshToken}}); status != http.StatusOK {
		t.Errorf("CRM client revoking a mail token: got %d; want 200", status)
	}
	next, err := e.reg.Refresh(context.Background(), "sandbox-mail", &g.Tokens)
	if err != nil {
		t.Fatalf("mail refresh after the CRM client's attempts: got %v; want nil", err)
	}

	// Grants keep their client across a restart of the sandbox.
	e.restart(t)
	if n := len(e.sb.Grants()); n != 3 {
		t.Fatalf("grants after restart: got %d; want 3", n)
	}
	if status, _ := e.postAs(t, "token", testClientID, testSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next.RefreshToken}}); status != http.StatusBadRequest {
		t.Errorf("CRM client refreshing a mail token after restart: got %d; want 400", status)
	}
	if _, err := e.reg.Refresh(context.Background(), "sandbox-mail", next); err != nil {
		t.Errorf("mail refresh after restart: got %v; want nil", err)
	}
	if _, err := e.reg.Refresh(context.Background(), "sandbox", &crm.Tokens); err != nil {
		t.Errorf("CRM refresh after restart: got %v; want nil", err)
	}
}

func TestSandboxCodeBoundToClient(t *testing.T) {
	e := newMailEnv(t)
	authURL, verifier, err := e.reg.AuthCodeURL("sandbox-mail", "st", "grace@sandbox.test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	code := e.callbackParams(t, resp).Get("code")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {e.callback}}
	if status, body := e.postAs(t, "token", testClientID, testSecret, form); status != http.StatusBadRequest || !strings.Contains(body, "another client") {
		t.Errorf("CRM client redeeming a mail code: got %d %s; want 400 invalid_grant", status, body)
	}
	if n := len(e.sb.Grants()); n != 0 {
		t.Errorf("grants: got %d; want none", n)
	}
}

func TestNewSandboxMailValidation(t *testing.T) {
	base := Config{BaseURL: "http://x/sandbox", ClientID: "c", ClientSecret: "s", RedirectURIs: []string{"http://x/cb"}}
	for _, change := range []func(*Config){
		func(c *Config) { c.MailClientID = "m" },
		func(c *Config) { c.MailClientSecret = "m" },
		func(c *Config) { c.MailClientID, c.MailClientSecret = "c", "m" },
	} {
		cfg := base
		change(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): got nil; want an error", cfg)
		}
	}
	sb, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sb.MailProvider(); ok {
		t.Error("MailProvider without a mail client: got one; want none")
	}
}
