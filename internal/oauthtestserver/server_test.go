package oauthtestserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	RunIfChild()
	os.Exit(m.Run())
}

const redirect = "http://127.0.0.1:9/oauth/callback"

type harness struct {
	t    *testing.T
	srv  *Server
	url  string
	conf *oauth2.Config
	// browser follows no redirect: the authorization answer is read from
	// the Location header.
	browser *http.Client
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv, err := New(Config{ClientID: "acme-client", ClientSecret: "acme secret/+", RedirectURI: redirect, AccessTokenTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &harness{
		t: t, srv: srv, url: hs.URL,
		conf: &oauth2.Config{
			ClientID: "acme-client", ClientSecret: "acme secret/+", RedirectURL: redirect,
			Scopes:   []string{"contacts.read", "deals.read"},
			Endpoint: oauth2.Endpoint{AuthURL: hs.URL + "/authorize", TokenURL: hs.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader},
		},
		browser: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// authorize opens the authorization URL and returns the redirect's query.
func (h *harness) authorize(u string) url.Values {
	h.t.Helper()
	resp, err := h.browser.Get(u)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("authorize: got %d; want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		h.t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
		h.t.Fatalf("redirected to %q; want %q", got, redirect)
	}
	return loc.Query()
}

// connect runs the authorization code flow with PKCE as the account
// email names ("" for the default).
func (h *harness) connect(email string) *oauth2.Token {
	h.t.Helper()
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if email != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", email))
	}
	q := h.authorize(h.conf.AuthCodeURL("state-1", opts...))
	if q.Get("state") != "state-1" || q.Get("code") == "" {
		h.t.Fatalf("authorization answer %v; want a code and state-1", q)
	}
	tok, err := h.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		h.t.Fatalf("exchange: %v", err)
	}
	return tok
}

func (h *harness) refresh(refreshToken string) (*oauth2.Token, error) {
	return h.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: refreshToken}).Token()
}

func (h *harness) userinfo(access string) (int, User) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.url+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var u User
	_ = json.NewDecoder(resp.Body).Decode(&u)
	return resp.StatusCode, u
}

func oauthCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func TestAuthorizationCodeWithPKCEAndStrictRotation(t *testing.T) {
	h := newHarness(t)
	first := h.connect("grace@acme.test")
	if first.TokenType != "Bearer" || first.RefreshToken == "" || first.AccessToken == "" {
		t.Fatalf("token %+v; want a bearer access token and a refresh token", first)
	}
	if left := time.Until(first.Expiry); left < 25*time.Second || left > 31*time.Second {
		t.Errorf("access token lives %v; want the configured 30s", left)
	}
	if s, _ := first.Extra("scope").(string); s != "contacts.read deals.read" {
		t.Errorf("scope %q; want the requested scopes", s)
	}
	if status, u := h.userinfo(first.AccessToken); status != http.StatusOK || u != DefaultUsers[1] {
		t.Errorf("userinfo: got %d %+v; want 200 %+v", status, u, DefaultUsers[1])
	}

	second, err := h.refresh(first.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh answered refresh token %q; want a new one", second.RefreshToken)
	}
	if status, _ := h.userinfo(first.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("userinfo with the replaced access token: got %d; want 401", status)
	}
	if _, err := h.refresh(first.RefreshToken); oauthCode(err) != "invalid_grant" {
		t.Fatalf("reusing a rotated refresh token: got %v; want invalid_grant", err)
	}
	third, err := h.refresh(second.RefreshToken)
	if err != nil {
		t.Fatalf("refresh with the newest refresh token after a reuse: %v", err)
	}

	// RFC 7009: the revoked refresh token and its access token stop working.
	form := url.Values{"token": {third.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ := http.NewRequest(http.MethodPost, h.url+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(h.conf.ClientID), url.QueryEscape(h.conf.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: got %d; want 200", resp.StatusCode)
	}
	if _, err := h.refresh(third.RefreshToken); oauthCode(err) != "invalid_grant" {
		t.Errorf("refresh after revocation: got %v; want invalid_grant", err)
	}
	if status, _ := h.userinfo(third.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("userinfo after revocation: got %d; want 401", status)
	}

	log := h.srv.Calls()
	var got []string
	for _, c := range log.Calls {
		got = append(got, c.Endpoint+" "+c.GrantType+" "+c.Error)
	}
	want := []string{
		"token authorization_code ",
		"token refresh_token ",
		"token refresh_token invalid_grant",
		"token refresh_token ",
		"revoke  ",
		"token refresh_token invalid_grant",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("calls: got %q; want %q", got, want)
	}
	c := log.Calls
	if c[1].Presented != c[0].IssuedRefresh || c[2].Presented != c[0].IssuedRefresh || c[3].Presented != c[1].IssuedRefresh {
		t.Errorf("fingerprints do not follow the rotation: %+v", c)
	}
	if c[0].Presented != "" || c[0].User != "grace@acme.test" || c[0].ExpiresAt.Sub(c[0].At) != 30*time.Second {
		t.Errorf("exchange call %+v; want no presented token, grace and a 30s access token", c[0])
	}
	if c[1].Presented != Fingerprint(first.RefreshToken) {
		t.Errorf("presented fingerprint %q; want Fingerprint of the refresh token", c[1].Presented)
	}
	for _, call := range c {
		for _, tok := range []string{first.RefreshToken, first.AccessToken, second.RefreshToken} {
			if b, _ := json.Marshal(call); strings.Contains(string(b), tok) {
				t.Fatalf("the call log holds a token: %s", b)
			}
		}
	}
}

func TestRevokeAllRefusesEveryGrant(t *testing.T) {
	h := newHarness(t)
	ada := h.connect("")
	grace := h.connect("grace@acme.test")
	if n := h.srv.RevokeAll(); n != 2 {
		t.Errorf("revoked %d grants; want 2", n)
	}
	for _, tok := range []*oauth2.Token{ada, grace} {
		if _, err := h.refresh(tok.RefreshToken); oauthCode(err) != "invalid_grant" {
			t.Errorf("refresh after revoke-all: got %v; want invalid_grant", err)
		}
		if status, _ := h.userinfo(tok.AccessToken); status != http.StatusUnauthorized {
			t.Errorf("userinfo after revoke-all: got %d; want 401", status)
		}
	}
	// A new authorization is a new grant.
	fresh := h.connect("")
	if _, err := h.refresh(fresh.RefreshToken); err != nil {
		t.Errorf("refresh of a grant made after revoke-all: %v", err)
	}
}

func TestAuthorizationRefusals(t *testing.T) {
	h := newHarness(t)
	verifier := oauth2.GenerateVerifier()

	// An unregistered redirect URI gets an error page, never a redirect.
	bad := *h.conf
	bad.RedirectURL = "http://127.0.0.1:9/elsewhere"
	resp, err := h.browser.Get(bad.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("unregistered redirect URI: got %d to %q; want 400 without a redirect", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Without an S256 challenge there is no code: go-oauth2 answers 400
	// before it knows where to redirect.
	for name, u := range map[string]string{
		"without PKCE":      h.conf.AuthCodeURL("s"),
		"a plain challenge": h.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("code_challenge_method", "plain"), oauth2.SetAuthURLParam("code_challenge", verifier)),
	} {
		resp, err := h.browser.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("authorization with %s: got %d to %q; want 400", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if q := h.authorize(h.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "nobody@acme.test"))); q.Get("error") != "access_denied" {
		t.Errorf("unknown account: got %v; want access_denied", q)
	}

	q := h.authorize(h.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	if _, err := h.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); oauthCode(err) != "invalid_grant" {
		t.Errorf("exchange with the wrong verifier: got %v; want invalid_grant", err)
	}
	q = h.authorize(h.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	wrong := *h.conf
	wrong.ClientSecret = "not the secret"
	if _, err := wrong.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_client" {
		t.Errorf("exchange with the wrong secret: got %v; want invalid_client", err)
	}
}

// The server as a child process: what the gateway's black-box test runs.
func TestProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(exe, Config{ClientID: "c", ClientSecret: "s", RedirectURI: redirect, AccessTokenTTL: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if p.PID() == os.Getpid() {
		t.Fatalf("the server runs in the test's own process")
	}
	log, err := p.Calls(context.Background())
	if err != nil || len(log.Calls) != 0 || log.Now.IsZero() {
		t.Fatalf("calls of a new server: got %+v, %v; want none", log, err)
	}
	if n, err := p.RevokeAll(context.Background()); err != nil || n != 0 {
		t.Fatalf("revoke-all on a new server: got %d, %v; want 0", n, err)
	}
	p.Stop()
	if p.cmd.ProcessState == nil {
		t.Fatalf("the process is still running after Stop")
	}
	if _, err := http.Get(p.URL + "/admin/calls"); err == nil {
		t.Errorf("the server still answers after Stop")
	}
}
