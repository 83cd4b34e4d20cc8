// Package sandbox is the OAuth 2.0 authorization server dev mode serves
// under /sandbox/: a real provider with demo accounts, for a person to
// click through and for tests to drive. It hands oauthflow the catalogue
// entries of its two products; oauthflow never imports it.
package sandbox

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bont/switchboard/oauthflow"
)

// Sandbox lifetimes and limits.
const (
	DefaultAccessTokenTTL = 15 * time.Minute
	codeTTL               = time.Minute
	maxForm               = 64 << 10
	// keepRotated bounds how many used refresh tokens a grant
	// remembers for reuse detection.
	keepRotated = 64
)

// Config configures a Server.
type Config struct {
	// BaseURL is where the sandbox is served, without a trailing slash
	// (e.g. http://127.0.0.1:8080/sandbox). Its path is the prefix the
	// handler strips, so it may be mounted with or without
	// http.StripPrefix.
	BaseURL string
	// ClientID and ClientSecret register the CRM client (Sandbox CRM,
	// contacts.read and deals.read).
	ClientID     string
	ClientSecret string
	// MailClientID and MailClientSecret register the mail client (Sandbox
	// Mail, mail.read and calendar.read); empty leaves it unregistered.
	MailClientID     string
	MailClientSecret string
	// RedirectURIs are the registered redirect URIs, matched exactly.
	RedirectURIs []string
	// AccessTokenTTL defaults to DefaultAccessTokenTTL.
	AccessTokenTTL time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// StateFile, when set, keeps grants and tokens (as hashes) across
	// restarts; see state.go.
	StateFile string
	// OnGrantChange, when set, is called after grants are revoked or their
	// access tokens expired (console or Go API), as a provider's
	// deauthorization webhook would be, so the gateway can look at once.
	OnGrantChange func()
	// Testing, when set, lets a test inject faults, hold revocations and
	// count calls (faults.go). Production leaves it nil.
	Testing *Testing
}

// Server is a small OAuth 2.0 authorization server with demo accounts:
// authorization code with PKCE S256 (required), rotating refresh tokens
// with reuse detection, RFC 7009 revocation and a userinfo endpoint, plus a
// console page to revoke grants and expire tokens, and, when built with a
// Testing, injected faults. Everything lives in memory, and in
// Config.StateFile when set. It is safe for concurrent use.
//
// Paths below BaseURL: GET/POST /authorize, POST /token, POST /revoke,
// GET /userinfo, GET / (console), POST /console/revoke, POST
// /console/expire.
type Server struct {
	cfg      Config
	basePath string
	origin   string
	clients  []*clientReg // the CRM client first

	mu     sync.Mutex
	codes  map[string]*authCode   // by token hash
	grants map[string]*grant      // by grant id
	access map[string]*accessTok  // by token hash
	rtoks  map[string]*refreshTok // by token hash
	seq    int
}

// clientReg is a client registration: which product it signs in to and
// the scopes it may ask for. Codes, grants and tokens are bound to the
// client they were issued to.
type clientReg struct {
	id, secret string
	product    string
	scopes     []string
}

// New builds a sandbox.
func New(cfg Config) (*Server, error) {
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if err := oauthflow.CheckURL(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("oauthflow: sandbox base URL: %w", err)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, fmt.Errorf("oauthflow: sandbox needs a client id and secret")
	}
	if (cfg.MailClientID == "") != (cfg.MailClientSecret == "") {
		return nil, fmt.Errorf("oauthflow: sandbox mail client needs both an id and a secret")
	}
	if cfg.MailClientID != "" && cfg.MailClientID == cfg.ClientID {
		return nil, fmt.Errorf("oauthflow: sandbox mail client needs an id of its own")
	}
	if len(cfg.RedirectURIs) == 0 {
		return nil, fmt.Errorf("oauthflow: sandbox needs at least one redirect URI")
	}
	for _, u := range cfg.RedirectURIs {
		if err := oauthflow.CheckURL(u); err != nil {
			return nil, fmt.Errorf("oauthflow: sandbox redirect URI: %w", err)
		}
	}
	cfg.RedirectURIs = slices.Clone(cfg.RedirectURIs)
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u, _ := url.Parse(cfg.BaseURL)
	s := &Server{
		cfg:      cfg,
		basePath: strings.TrimRight(u.Path, "/"),
		origin:   u.Scheme + "://" + u.Host,
		codes:    map[string]*authCode{},
		grants:   map[string]*grant{},
		access:   map[string]*accessTok{},
		rtoks:    map[string]*refreshTok{},
		clients:  []*clientReg{{id: cfg.ClientID, secret: cfg.ClientSecret, product: CRMName, scopes: crmScopes}},
	}
	if cfg.MailClientID != "" {
		s.clients = append(s.clients, &clientReg{id: cfg.MailClientID, secret: cfg.MailClientSecret, product: MailName, scopes: mailScopes})
	}
	if err := s.loadState(); err != nil {
		return nil, err
	}
	return s, nil
}

// client returns the registration with that id, or nil. Every registration
// is compared, in constant time, so the answer's timing does not tell which
// ids exist.
func (s *Server) client(id string) *clientReg {
	var found *clientReg
	for _, c := range s.clients {
		if subtle.ConstantTimeCompare([]byte(id), []byte(c.id)) == 1 {
			found = c
		}
	}
	return found
}

// clientByID maps a persisted client id to its registration; an empty id
// (state written before the sandbox had two clients) is the CRM client.
func (s *Server) clientByID(id string) *clientReg {
	if id == "" {
		return s.clients[0]
	}
	for _, c := range s.clients {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == s.basePath || (s.basePath != "" && strings.HasPrefix(p, s.basePath+"/")) {
		p = strings.TrimPrefix(p, s.basePath)
	}
	if p == "" {
		p = "/"
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	switch p {
	case "/authorize":
		if !s.cfg.Testing.intercept(w, "authorize") {
			return
		}
		s.authorize(w, r)
	case "/token":
		if !s.cfg.Testing.intercept(w, "token") {
			return
		}
		s.token(w, r)
	case "/revoke":
		if !s.cfg.Testing.intercept(w, "revoke") {
			return
		}
		s.revoke(w, r)
	case "/userinfo":
		if !s.cfg.Testing.intercept(w, "userinfo") {
			return
		}
		s.userinfo(w, r)
	case "/":
		s.console(w, r)
	case "/console/revoke", "/console/expire":
		s.consoleAction(w, r, strings.TrimPrefix(p, "/console/"))
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
