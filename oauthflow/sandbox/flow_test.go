package sandbox

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/switchboard"
)

const (
	testClientID = "switchboard-test"
	testSecret   = "s3cret/with+odd=chars"
)

// testEnv is a sandbox on a real HTTP server and a Registry pointed at it.
type testEnv struct {
	srv      *httptest.Server
	sb       *Server
	hooks    *Testing // the sandbox's fault hooks
	reg      *oauthflow.Registry
	callback string
	browser  *http.Client
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	callback := srv.URL + "/oauth/callback"
	hooks := new(Testing)
	sb, err := New(Config{
		BaseURL:      srv.URL + "/sandbox",
		ClientID:     testClientID,
		ClientSecret: testSecret,
		RedirectURIs: []string{callback, srv.URL + "/other/callback"},
		Testing:      hooks,
	})
	if err != nil {
		t.Fatalf("New: got %v; want nil", err)
	}
	mux.Handle("/sandbox/", sb)
	reg := newRegistry(t, callback, CRMProvider(srv.URL+"/sandbox", testClientID, testSecret))
	return &testEnv{
		srv: srv, sb: sb, hooks: hooks, reg: reg, callback: callback,
		browser: &http.Client{
			Timeout:       5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// newRegistry is a Registry of the providers given, sending the browser
// back to redirect.
func newRegistry(t *testing.T, redirect string, ps ...oauthflow.ProviderConfig) *oauthflow.Registry {
	t.Helper()
	reg, err := oauthflow.NewRegistry(oauthflow.Config{RedirectURL: redirect, Providers: ps})
	if err != nil {
		t.Fatalf("NewRegistry: got %v; want nil", err)
	}
	return reg
}

// wantCode fails t unless err carries the domain code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := switchboard.ErrorCode(err); got != code {
		t.Fatalf("error code: got %q (%v); want %q", got, err, code)
	}
}

// callbackParams follows an authorization response and returns the query
// sent to the redirect URI.
func (e *testEnv) callbackParams(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("authorize status: got %d; want 302 (body %s)", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: got %v; want a URL", err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != e.callback {
		t.Fatalf("redirect target: got %q; want %q", got, e.callback)
	}
	return loc.Query()
}

// authorize runs the browser part of the flow with login_hint and returns
// the code and the verifier.
func (e *testEnv) authorize(t *testing.T, reg *oauthflow.Registry, email string) (code, verifier string) {
	t.Helper()
	authURL, verifier, err := reg.AuthCodeURL("sandbox", "state-123", email)
	if err != nil {
		t.Fatalf("AuthCodeURL: got %v; want nil", err)
	}
	resp, err := e.browser.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	q := e.callbackParams(t, resp)
	if got := q.Get("state"); got != "state-123" {
		t.Fatalf("state: got %q; want %q", got, "state-123")
	}
	if q.Get("code") == "" {
		t.Fatalf("code: got none; want one (query %v)", q)
	}
	return q.Get("code"), verifier
}

func (e *testEnv) connect(t *testing.T, email string) *switchboard.Grant {
	t.Helper()
	code, verifier := e.authorize(t, e.reg, email)
	g, err := e.reg.Exchange(context.Background(), "sandbox", code, verifier)
	if err != nil {
		t.Fatalf("Exchange: got %v; want nil", err)
	}
	return g
}

func (e *testEnv) userinfoStatus(t *testing.T, access string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/sandbox/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := e.browser.Do(req)
	if err != nil {
		t.Fatalf("GET userinfo: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

func TestFullFlow(t *testing.T) {
	e := newTestEnv(t)
	authURL, verifier, err := e.reg.AuthCodeURL("sandbox", "st", "ada@sandbox.test")
	if err != nil {
		t.Fatalf("AuthCodeURL: got %v; want nil", err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	for k, want := range map[string]string{
		"client_id":             testClientID,
		"redirect_uri":          e.callback,
		"response_type":         "code",
		"scope":                 "contacts.read deals.read",
		"state":                 "st",
		"code_challenge_method": "S256",
		"code_challenge":        oauth2.S256ChallengeFromVerifier(verifier),
		"login_hint":            "ada@sandbox.test",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorize %s: got %q; want %q", k, got, want)
		}
	}

	before := time.Now()
	g := e.connect(t, "ada@sandbox.test")
	want := switchboard.Account{ID: "sbx-1001-ada", Name: "Ada Lovelace", Email: "ada@sandbox.test"}
	if g.Account != want {
		t.Errorf("account: got %+v; want %+v", g.Account, want)
	}
	if got, want := g.GrantedScopes, []string{"contacts.read", "deals.read"}; !slices.Equal(got, want) {
		t.Errorf("granted scopes: got %v; want %v", got, want)
	}
	if g.Tokens.AccessToken == "" || g.Tokens.RefreshToken == "" || g.Tokens.AccessToken == g.Tokens.RefreshToken {
		t.Errorf("tokens: got access %d chars, refresh %d chars; want two distinct tokens", len(g.Tokens.AccessToken), len(g.Tokens.RefreshToken))
	}
	if got := len(g.Tokens.AccessToken); got != 43 {
		t.Errorf("access token length: got %d; want 43 (32 bytes base64url)", got)
	}
	if g.Tokens.TokenType != "Bearer" {
		t.Errorf("token type: got %q; want %q", g.Tokens.TokenType, "Bearer")
	}
	if exp := g.Tokens.Expiry; exp.Before(before.Add(14*time.Minute)) || exp.After(time.Now().Add(16*time.Minute)) {
		t.Errorf("expiry: got %v; want about 15 minutes from now", exp)
	}
	if got := e.sb.Grants(); len(got) != 1 || got[0].Email != "ada@sandbox.test" {
		t.Errorf("grants: got %+v; want one for ada", got)
	}
	if status, _ := e.userinfoStatus(t, g.Tokens.AccessToken); status != http.StatusOK {
		t.Errorf("userinfo status: got %d; want 200", status)
	}
	_ = verifier
}

var (
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
)

// chooserForm fetches the account chooser and returns its form action and
// hidden fields.
func (e *testEnv) chooserForm(t *testing.T) (string, url.Values, string) {
	t.Helper()
	authURL, verifier, err := e.reg.AuthCodeURL("sandbox", "chooser-state", "")
	if err != nil {
		t.Fatalf("AuthCodeURL: got %v; want nil", err)
	}
	resp, err := e.browser.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chooser status: got %d; want 200", resp.StatusCode)
	}
	page := string(body)
	for _, a := range Accounts() {
		if !strings.Contains(page, a.Email) || !strings.Contains(page, "Continue as "+a.Name) {
			t.Errorf("chooser page: got no button for %s; want one", a.Email)
		}
	}
	if !strings.Contains(page, `name="deny"`) {
		t.Errorf("chooser page: got no Deny button; want one")
	}
	m := actionRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("chooser page: got no POST form; want one")
	}
	form := url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(page, -1) {
		form.Set(h[1], html.UnescapeString(h[2]))
	}
	return e.srv.URL + html.UnescapeString(m[1]), form, verifier
}

func TestChooserPage(t *testing.T) {
	e := newTestEnv(t)
	action, form, verifier := e.chooserForm(t)
	form.Set("account", "grace@sandbox.test")
	resp, err := e.browser.PostForm(action, form)
	if err != nil {
		t.Fatalf("POST chooser: %v", err)
	}
	q := e.callbackParams(t, resp)
	if got := q.Get("state"); got != "chooser-state" {
		t.Errorf("state: got %q; want %q", got, "chooser-state")
	}
	g, err := e.reg.Exchange(context.Background(), "sandbox", q.Get("code"), verifier)
	if err != nil {
		t.Fatalf("Exchange: got %v; want nil", err)
	}
	if got, want := g.Account.Email, "grace@sandbox.test"; got != want {
		t.Errorf("account: got %q; want %q", got, want)
	}
}

func TestChooserDeny(t *testing.T) {
	e := newTestEnv(t)
	action, form, _ := e.chooserForm(t)
	form.Set("deny", "1")
	resp, err := e.browser.PostForm(action, form)
	if err != nil {
		t.Fatalf("POST chooser: %v", err)
	}
	q := e.callbackParams(t, resp)
	if got := q.Get("error"); got != "access_denied" {
		t.Errorf("error: got %q; want %q", got, "access_denied")
	}
	if got := q.Get("state"); got != "chooser-state" {
		t.Errorf("state: got %q; want %q", got, "chooser-state")
	}
	if q.Get("code") != "" {
		t.Errorf("code: got one; want none")
	}
}

func TestExchangeRefusals(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()

	t.Run("wrong verifier", func(t *testing.T) {
		code, _ := e.authorize(t, e.reg, "ada@sandbox.test")
		_, err := e.reg.Exchange(ctx, "sandbox", code, oauth2.GenerateVerifier())
		wantCode(t, err, switchboard.EINVALID)
		msg := switchboard.ErrorMessage(err)
		for _, want := range []string{"Sandbox CRM", "invalid_grant"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message: got %q; want it to contain %q", msg, want)
			}
		}
		if strings.Contains(err.Error(), code) {
			t.Errorf("error text: got %q; want no authorization code in it", err)
		}
	})

	t.Run("replayed code", func(t *testing.T) {
		code, verifier := e.authorize(t, e.reg, "ada@sandbox.test")
		g, err := e.reg.Exchange(ctx, "sandbox", code, verifier)
		if err != nil {
			t.Fatalf("first Exchange: got %v; want nil", err)
		}
		_, err = e.reg.Exchange(ctx, "sandbox", code, verifier)
		wantCode(t, err, switchboard.EINVALID)
		// RFC 6749 §4.1.2: the replay revokes what the code issued.
		if status, _ := e.userinfoStatus(t, g.Tokens.AccessToken); status != http.StatusUnauthorized {
			t.Errorf("userinfo after replay: got %d; want 401", status)
		}
	})

	t.Run("wrong redirect_uri", func(t *testing.T) {
		other := newRegistry(t, e.srv.URL+"/other/callback", CRMProvider(e.srv.URL+"/sandbox", testClientID, testSecret))
		code, verifier := e.authorize(t, e.reg, "ada@sandbox.test")
		_, err := other.Exchange(ctx, "sandbox", code, verifier)
		wantCode(t, err, switchboard.EINVALID)
	})

	t.Run("wrong client secret", func(t *testing.T) {
		bad := newRegistry(t, e.callback, CRMProvider(e.srv.URL+"/sandbox", testClientID, "wrong"))
		code, verifier := e.authorize(t, e.reg, "ada@sandbox.test")
		_, err := bad.Exchange(ctx, "sandbox", code, verifier)
		wantCode(t, err, switchboard.EINVALID)
		if msg := switchboard.ErrorMessage(err); !strings.Contains(msg, "invalid_client") || !strings.Contains(msg, "providers file") {
			t.Errorf("message: got %q; want invalid_client and a hint about the providers file", msg)
		}
	})

	t.Run("client secret in the form", func(t *testing.T) {
		p := CRMProvider(e.srv.URL+"/sandbox", testClientID, testSecret)
		p.AuthStyle = oauthflow.AuthStyleParams
		reg := newRegistry(t, e.callback, p)
		code, verifier := e.authorize(t, reg, "grace@sandbox.test")
		if _, err := reg.Exchange(ctx, "sandbox", code, verifier); err != nil {
			t.Errorf("Exchange: got %v; want nil", err)
		}
	})
}

func TestLimitedAccountLacksScopes(t *testing.T) {
	e := newTestEnv(t)
	g := e.connect(t, "limited@sandbox.test")
	if got, want := g.GrantedScopes, []string{"contacts.read"}; !slices.Equal(got, want) {
		t.Errorf("granted scopes: got %v; want %v", got, want)
	}
	p, _ := e.reg.Provider("sandbox")
	if got, want := switchboard.MissingScopes(p.Scopes, g.GrantedScopes), []string{"deals.read"}; !slices.Equal(got, want) {
		t.Errorf("missing scopes: got %v; want %v", got, want)
	}
}

func TestRefreshRotatesAndDetectsReuse(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	g := e.connect(t, "ada@sandbox.test")
	first := g.Tokens

	second, err := e.reg.Refresh(ctx, "sandbox", &first)
	if err != nil {
		t.Fatalf("Refresh: got %v; want nil", err)
	}
	if second.RefreshToken == first.RefreshToken || second.RefreshToken == "" {
		t.Errorf("refresh token: got the same or none; want a rotated one")
	}
	if second.AccessToken == first.AccessToken {
		t.Errorf("access token: got the same; want a new one")
	}
	if got, want := second.Scopes, []string{"contacts.read", "deals.read"}; !slices.Equal(got, want) {
		t.Errorf("scopes: got %v; want %v", got, want)
	}

	third, err := e.reg.Refresh(ctx, "sandbox", second)
	if err != nil {
		t.Fatalf("second Refresh: got %v; want nil", err)
	}

	// Reusing a rotated refresh token is invalid_grant and revokes the grant.
	_, err = e.reg.Refresh(ctx, "sandbox", &first)
	wantCode(t, err, switchboard.EINVALID)
	if msg := switchboard.ErrorMessage(err); !strings.Contains(msg, "invalid_grant") || !strings.Contains(msg, "reconnect") {
		t.Errorf("message: got %q; want invalid_grant and a reconnect hint", msg)
	}
	if strings.Contains(err.Error(), first.RefreshToken) {
		t.Errorf("error text: got %q; want no token in it", err)
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("cause: got %v; want an *oauth2.RetrieveError with invalid_grant", err)
	}
	_, err = e.reg.Refresh(ctx, "sandbox", third)
	wantCode(t, err, switchboard.EINVALID)
	if got := e.sb.Grants(); len(got) != 0 {
		t.Errorf("grants after reuse: got %d; want 0", len(got))
	}
	if status, _ := e.userinfoStatus(t, third.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("userinfo after reuse: got %d; want 401", status)
	}
}

func TestRevokeThenRefresh(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	g := e.connect(t, "grace@sandbox.test")
	if err := e.reg.Revoke(ctx, "sandbox", &g.Tokens); err != nil {
		t.Fatalf("Revoke: got %v; want nil", err)
	}
	if got := e.hooks.Calls("revoke"); got != 1 {
		t.Errorf("revoke calls: got %d; want 1", got)
	}
	_, err := e.reg.Refresh(ctx, "sandbox", &g.Tokens)
	wantCode(t, err, switchboard.EINVALID)
	status, wwwAuth := e.userinfoStatus(t, g.Tokens.AccessToken)
	if status != http.StatusUnauthorized || !strings.Contains(wwwAuth, `error="invalid_token"`) {
		t.Errorf("userinfo after revoke: got %d %q; want 401 with error=\"invalid_token\"", status, wwwAuth)
	}
	// Revoking again (unknown token) still succeeds, per RFC 7009.
	if err := e.reg.Revoke(ctx, "sandbox", &g.Tokens); err != nil {
		t.Errorf("second Revoke: got %v; want nil", err)
	}
}

func TestRevokeAccessTokenOnly(t *testing.T) {
	e := newTestEnv(t)
	g := e.connect(t, "ada@sandbox.test")
	if err := e.reg.Revoke(context.Background(), "sandbox", &switchboard.TokenSet{AccessToken: g.Tokens.AccessToken}); err != nil {
		t.Fatalf("Revoke: got %v; want nil", err)
	}
	if got := len(e.sb.Grants()); got != 0 {
		t.Errorf("grants: got %d; want 0", got)
	}
}

func TestFaults(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	g := e.connect(t, "ada@sandbox.test")

	e.hooks.InjectFault("token", http.StatusTooManyRequests, 1)
	_, err := e.reg.Refresh(ctx, "sandbox", &g.Tokens)
	wantCode(t, err, switchboard.EUNAVAILABLE)
	// The fault answered before the refresh token was looked at.
	next, err := e.reg.Refresh(ctx, "sandbox", &g.Tokens)
	if err != nil {
		t.Fatalf("Refresh after 429: got %v; want nil", err)
	}

	e.hooks.InjectFault("token", http.StatusBadGateway, 1)
	_, err = e.reg.Refresh(ctx, "sandbox", next)
	wantCode(t, err, switchboard.EUNAVAILABLE)

	e.hooks.InjectFault("revoke", http.StatusServiceUnavailable, 1)
	err = e.reg.Revoke(ctx, "sandbox", next)
	wantCode(t, err, switchboard.EUNAVAILABLE)
	if got := len(e.sb.Grants()); got != 1 {
		t.Fatalf("grants after failed revoke: got %d; want 1", got)
	}
	if err := e.reg.Revoke(ctx, "sandbox", next); err != nil {
		t.Fatalf("Revoke after 503: got %v; want nil", err)
	}
	if got := len(e.sb.Grants()); got != 0 {
		t.Errorf("grants after revoke: got %d; want 0", got)
	}
	if got := e.hooks.Calls("revoke"); got != 2 {
		t.Errorf("revoke calls: got %d; want 2", got)
	}

	// A userinfo outage during the exchange is transient too.
	e.hooks.InjectFault("userinfo", http.StatusServiceUnavailable, 1)
	code, verifier := e.authorize(t, e.reg, "ada@sandbox.test")
	_, err = e.reg.Exchange(ctx, "sandbox", code, verifier)
	wantCode(t, err, switchboard.EUNAVAILABLE)

	// A revocation refused with 400 is the provider's refusal.
	e.hooks.InjectFault("revoke", http.StatusBadRequest, 1)
	err = e.reg.Revoke(ctx, "sandbox", &switchboard.TokenSet{RefreshToken: "whatever"})
	wantCode(t, err, switchboard.EINVALID)
}

func TestHoldRevocations(t *testing.T) {
	e := newTestEnv(t)
	g := e.connect(t, "ada@sandbox.test")

	release := e.hooks.HoldRevocations()
	done := make(chan error, 1)
	go func() { done <- e.reg.Revoke(context.Background(), "sandbox", &g.Tokens) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.hooks.Calls("revoke") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("revoke calls: got 0; want 1 within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Revoke returned %v while held; want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	if got := len(e.sb.Grants()); got != 1 {
		t.Errorf("grants while held: got %d; want 1", got)
	}
	release()
	release() // idempotent
	if err := <-done; err != nil {
		t.Fatalf("Revoke after release: got %v; want nil", err)
	}
	if got := len(e.sb.Grants()); got != 0 {
		t.Errorf("grants after release: got %d; want 0", got)
	}

	// A held revocation whose caller gives up is transient.
	g = e.connect(t, "grace@sandbox.test")
	release = e.hooks.HoldRevocations()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := e.reg.Revoke(ctx, "sandbox", &g.Tokens)
	wantCode(t, err, switchboard.EUNAVAILABLE)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(err, DeadlineExceeded): got false (%v); want true", err)
	}
}

// TestConcurrentFlows hammers the sandbox and the registry; run with -race.
func TestConcurrentFlows(t *testing.T) {
	e := newTestEnv(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			email := []string{"ada@sandbox.test", "grace@sandbox.test", "limited@sandbox.test"}[i%3]
			authURL, verifier, err := e.reg.AuthCodeURL("sandbox", "s", email)
			if err != nil {
				errs <- err
				return
			}
			resp, err := e.browser.Get(authURL)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			g, err := e.reg.Exchange(context.Background(), "sandbox", loc.Query().Get("code"), verifier)
			if err != nil {
				errs <- err
				return
			}
			ts := &g.Tokens
			for j := 0; j < 5; j++ {
				if ts, err = e.reg.Refresh(context.Background(), "sandbox", ts); err != nil {
					errs <- err
					return
				}
				_ = e.sb.Grants()
			}
			if err := e.reg.Revoke(context.Background(), "sandbox", ts); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent flow: got %v; want nil", err)
	}
	if got := len(e.sb.Grants()); got != 0 {
		t.Errorf("grants: got %d; want 0", got)
	}
}
