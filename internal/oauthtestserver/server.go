// Package oauthtestserver is a third-party OAuth 2.0 authorization server
// for black-box tests of the gateway: go-oauth2/oauth2's implementation of
// the authorization code grant with PKCE S256 and of refresh-token
// rotation, configured as a strict provider, so the gateway is tested
// against OAuth code it did not write.
//
// What it serves (paths under its base URL):
//
//	GET  /authorize          approves at once as the account login_hint names
//	                         (the first account without one); no login page
//	POST /token              authorization_code (PKCE S256 required) and
//	                         refresh_token; every refresh rotates the refresh
//	                         token and invalidates the old one at once, so a
//	                         reused refresh token gets invalid_grant
//	GET  /userinfo           {sub, name, email} of the bearer token's account
//	POST /revoke             RFC 7009 revocation of a refresh or access token
//	POST /admin/revoke-all   revokes every token issued so far: each later
//	                         refresh of those grants gets invalid_grant
//	GET  /admin/calls        the calls to /token and /revoke so far (CallLog)
//
// Calls to /token, /revoke and /admin/revoke-all are served one at a time,
// so rotation is strict even for concurrent requests and a revocation
// cannot interleave with a refresh. The state lives in memory.
//
// Tests run it as a separate process (Start, and RunIfChild in the test
// binary's TestMain), or in process with New and Handler.
package oauthtestserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/generates"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"
)

// Config configures a Server.
type Config struct {
	// ClientID and ClientSecret are the one registered client's
	// credentials, accepted with HTTP Basic or as form parameters.
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	// RedirectURI is the client's one registered redirect URI; an
	// authorization request must name it exactly.
	RedirectURI string `json:"redirectUri"`
	// AccessTokenTTL is the lifetime of every access token (expires_in).
	AccessTokenTTL time.Duration `json:"accessTokenTtl"`
	// Users are the accounts login_hint picks from, by email; empty means
	// DefaultUsers.
	Users []User `json:"users,omitempty"`
}

// User is an account at the server.
type User struct {
	ID    string `json:"sub"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// DefaultUsers are the accounts of a Config without Users.
var DefaultUsers = []User{
	{ID: "u-ada", Name: "Ada Lovelace", Email: "ada@acme.test"},
	{ID: "u-grace", Name: "Grace Hopper", Email: "grace@acme.test"},
}

// Call is one request to /token or /revoke. Tokens appear only as
// fingerprints (Fingerprint), which are enough to follow a chain of
// rotations and to see a token presented twice.
type Call struct {
	At       time.Time `json:"at"`
	Endpoint string    `json:"endpoint"` // "token" or "revoke"
	// GrantType of a token call: authorization_code or refresh_token.
	GrantType string `json:"grantType,omitempty"`
	// Presented is the refresh token of a refresh, or the token revoked.
	Presented string `json:"presented,omitempty"`
	Status    int    `json:"status"`
	Error     string `json:"error,omitempty"` // the OAuth error code answered
	// IssuedRefresh and ExpiresAt describe the tokens a successful token
	// call issued: its refresh token and when its access token expires.
	IssuedRefresh string    `json:"issuedRefresh,omitempty"`
	ExpiresAt     time.Time `json:"expiresAt,omitzero"`
	User          string    `json:"user,omitempty"` // the account's email
}

// CallLog is what GET /admin/calls answers.
type CallLog struct {
	// Now is the server's clock when the log was read, the same clock as
	// the calls' times.
	Now   time.Time `json:"now"`
	Calls []Call    `json:"calls"`
}

// Fingerprint is how a token appears in the call log.
func Fingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// Server is the authorization server. Its methods are safe for concurrent
// use.
type Server struct {
	cfg    Config
	oauth  *server.Server
	tokens *revocableStore

	// mu serialises the endpoints that issue or revoke tokens.
	mu    sync.Mutex
	logMu sync.Mutex
	calls []Call
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("oauthtestserver: a client id and secret are required")
	}
	if u, err := url.Parse(cfg.RedirectURI); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("oauthtestserver: redirect URI %q is not an absolute URL", cfg.RedirectURI)
	}
	if cfg.AccessTokenTTL < time.Second {
		return nil, errors.New("oauthtestserver: access tokens must live at least a second (expires_in counts seconds)")
	}
	if len(cfg.Users) == 0 {
		cfg.Users = DefaultUsers
	}
	mem, err := store.NewMemoryTokenStore()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, tokens: &revocableStore{TokenStore: mem, issued: map[string]bool{}}}

	m := manage.NewDefaultManager()
	m.MapTokenStorage(s.tokens)
	clients := store.NewClientStore()
	if err := clients.Set(cfg.ClientID, &models.Client{ID: cfg.ClientID, Secret: cfg.ClientSecret, Domain: cfg.RedirectURI}); err != nil {
		return nil, err
	}
	m.MapClientStorage(clients)
	m.MapAccessGenerate(generates.NewAccessGenerate())
	// Refresh tokens do not expire; rotation is what limits them.
	m.SetAuthorizeCodeTokenCfg(&manage.Config{AccessTokenExp: cfg.AccessTokenTTL, IsGenerateRefresh: true})
	m.SetRefreshTokenCfg(&manage.RefreshingConfig{
		AccessTokenExp:     cfg.AccessTokenTTL,
		IsGenerateRefresh:  true, // a new refresh token on every refresh
		IsRemoveAccess:     true, // the old access token stops working
		IsRemoveRefreshing: true, // the old refresh token is refused from now on
	})
	// A registered redirect URI is matched exactly (RFC 9700 §4.1.3), not
	// by go-oauth2's default host-suffix rule.
	m.SetValidateURIHandler(func(registered, redirect string) error {
		if redirect != registered {
			return oerrors.ErrInvalidRedirectURI
		}
		return nil
	})

	sc := server.NewConfig()
	sc.AllowedResponseTypes = []oauth2.ResponseType{oauth2.Code}
	sc.AllowedGrantTypes = []oauth2.GrantType{oauth2.AuthorizationCode, oauth2.Refreshing}
	sc.AllowedCodeChallengeMethods = []oauth2.CodeChallengeMethod{oauth2.CodeChallengeS256}
	sc.ForcePKCE = true
	srv := server.NewServer(sc, m)
	srv.SetClientInfoHandler(clientCredentials)
	srv.SetUserAuthorizationHandler(s.approve)
	s.oauth = srv
	return s, nil
}

// Handler serves the endpoints listed in the package documentation.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("GET /userinfo", s.userinfo)
	mux.HandleFunc("POST /revoke", s.revoke)
	mux.HandleFunc("POST /admin/revoke-all", s.revokeAll)
	mux.HandleFunc("GET /admin/calls", s.callLog)
	return mux
}

// Calls returns the calls to /token and /revoke so far, oldest first.
func (s *Server) Calls() CallLog {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return CallLog{Now: time.Now(), Calls: append([]Call(nil), s.calls...)}
}

// RevokeAll revokes every token issued so far, as a provider does when an
// admin removes the app: each later refresh of those grants gets
// invalid_grant and their access tokens stop working. Later
// authorizations start new grants that work. It returns how many live
// refresh tokens (grants) it revoked.
func (s *Server) RevokeAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens.revokeAll()
}

func (s *Server) record(c Call) {
	s.logMu.Lock()
	s.calls = append(s.calls, c)
	s.logMu.Unlock()
}

func (s *Server) user(email string) (User, bool) {
	if email == "" {
		return s.cfg.Users[0], true
	}
	for _, u := range s.cfg.Users {
		if strings.EqualFold(u.Email, email) {
			return u, true
		}
	}
	return User{}, false
}

func (s *Server) userByID(id string) (User, bool) {
	for _, u := range s.cfg.Users {
		if u.ID == id {
			return u, true
		}
	}
	return User{}, false
}

// authorize checks the client and its redirect URI before go-oauth2 sees
// the request: go-oauth2 redirects errors to whatever redirect_uri the
// request names, which must never happen for an unregistered one.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.cfg.ClientID || q.Get("redirect_uri") != s.cfg.RedirectURI {
		http.Error(w, "unknown client or unregistered redirect_uri", http.StatusBadRequest)
		return
	}
	if err := s.oauth.HandleAuthorizeRequest(w, r); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

// approve is go-oauth2's user authorization: the account login_hint names,
// approved without a page.
func (s *Server) approve(w http.ResponseWriter, r *http.Request) (string, error) {
	u, ok := s.user(r.FormValue("login_hint"))
	if !ok {
		return "", oerrors.ErrAccessDenied
	}
	return u.ID, nil
}

// clientCredentials reads the client's credentials from HTTP Basic
// (RFC 6749 §2.3.1: form-encoded, then Basic) or from the form body.
func clientCredentials(r *http.Request) (string, string, error) {
	if id, secret, ok := r.BasicAuth(); ok {
		uid, err1 := url.QueryUnescape(id)
		usecret, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return "", "", oerrors.ErrInvalidClient
		}
		return uid, usecret, nil
	}
	return server.ClientFormHandler(r)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{At: time.Now(), Endpoint: "token", GrantType: r.FormValue("grant_type"), Presented: Fingerprint(r.FormValue("refresh_token"))}
	rec := &recorder{header: http.Header{}}
	_ = s.oauth.HandleTokenRequest(rec, r)

	call.Status = rec.status
	var body struct {
		Error        string `json:"error"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int64  `json:"expires_in"`
		AccessToken  string `json:"access_token"`
	}
	_ = json.Unmarshal(rec.body.Bytes(), &body)
	call.Error = body.Error
	if body.AccessToken != "" {
		call.IssuedRefresh = Fingerprint(body.RefreshToken)
		call.ExpiresAt = call.At.Add(time.Duration(body.ExpiresIn) * time.Second)
		if ti, err := s.tokens.GetByAccess(r.Context(), body.AccessToken); err == nil && ti != nil {
			if u, ok := s.userByID(ti.GetUserID()); ok {
				call.User = u.Email
			}
		}
	}
	s.record(call)

	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body.Bytes())
}

// userinfo answers {sub, name, email} for a valid bearer token, and 401
// with RFC 6750's invalid_token otherwise.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	ti, err := s.oauth.ValidationBearerToken(r)
	if err != nil || ti == nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	u, ok := s.userByID(ti.GetUserID())
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// revoke is RFC 7009: an authenticated client revokes a refresh token (and
// the access token issued with it) or an access token. An unknown token is
// not an error (§2.2).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{At: time.Now(), Endpoint: "revoke"}
	defer func() { s.record(call) }()
	if err := r.ParseForm(); err != nil {
		call.Status, call.Error = http.StatusBadRequest, "invalid_request"
		writeJSON(w, call.Status, map[string]string{"error": call.Error})
		return
	}
	id, secret, err := clientCredentials(r)
	if err != nil || id != s.cfg.ClientID || secret != s.cfg.ClientSecret {
		call.Status, call.Error = http.StatusUnauthorized, "invalid_client"
		writeJSON(w, call.Status, map[string]string{"error": call.Error})
		return
	}
	tok := r.PostForm.Get("token")
	call.Presented = Fingerprint(tok)
	if tok == "" {
		call.Status, call.Error = http.StatusBadRequest, "invalid_request"
		writeJSON(w, call.Status, map[string]string{"error": call.Error})
		return
	}
	ctx := r.Context()
	if ti, err := s.tokens.GetByRefresh(ctx, tok); err == nil && ti != nil && ti.GetClientID() == id {
		_ = s.tokens.RemoveByRefresh(ctx, tok)
		_ = s.tokens.RemoveByAccess(ctx, ti.GetAccess())
	} else if ti, err := s.tokens.GetByAccess(ctx, tok); err == nil && ti != nil && ti.GetClientID() == id {
		_ = s.tokens.RemoveByAccess(ctx, tok)
	}
	call.Status = http.StatusOK
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revokeAll(w http.ResponseWriter, r *http.Request) {
	n := s.RevokeAll()
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (s *Server) callLog(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Calls())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// recorder keeps go-oauth2's token answer so it can be logged before it is
// sent.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// revocableStore is go-oauth2's in-memory token store, remembering every
// access and refresh token it stored so that revokeAll can remove them.
// A removed refresh token is unknown to the store, which go-oauth2 answers
// with invalid_grant.
type revocableStore struct {
	oauth2.TokenStore
	mu     sync.Mutex
	issued map[string]bool // token → is a refresh token
}

func (s *revocableStore) Create(ctx context.Context, info oauth2.TokenInfo) error {
	if err := s.TokenStore.Create(ctx, info); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := info.GetAccess(); a != "" {
		s.issued[a] = false
	}
	if rt := info.GetRefresh(); rt != "" {
		s.issued[rt] = true
	}
	return nil
}

func (s *revocableStore) revokeAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := context.Background()
	n := 0
	for tok, refresh := range s.issued {
		if refresh {
			if ti, err := s.TokenStore.GetByRefresh(ctx, tok); err == nil && ti != nil {
				n++
			}
			_ = s.TokenStore.RemoveByRefresh(ctx, tok)
		} else {
			_ = s.TokenStore.RemoveByAccess(ctx, tok)
		}
		delete(s.issued, tok)
	}
	return n
}
