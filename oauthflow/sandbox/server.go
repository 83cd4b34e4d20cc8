package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/switchboard"
)

// Sandbox scopes: the CRM client asks for contacts and deals, the mail
// client for mail and calendar.
const (
	ScopeContactsRead = "contacts.read"
	ScopeDealsRead    = "deals.read"
	ScopeMailRead     = "mail.read"
	ScopeCalendarRead = "calendar.read"
)

// The sandbox's two products, each a client registration of its own.
const (
	CRMName  = "Sandbox CRM"
	MailName = "Sandbox Mail"
)

var (
	crmScopes  = []string{ScopeContactsRead, ScopeDealsRead}
	mailScopes = []string{ScopeMailRead, ScopeCalendarRead}
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

// Account is a demo account of the sandbox provider.
type Account struct {
	Sub    string
	Name   string
	Email  string
	Scopes []string // what this account may grant
}

var accounts = []Account{
	{Sub: "sbx-1001-ada", Name: "Ada Lovelace", Email: "ada@sandbox.test", Scopes: []string{ScopeContactsRead, ScopeDealsRead, ScopeMailRead, ScopeCalendarRead}},
	{Sub: "sbx-1002-grace", Name: "Grace Hopper", Email: "grace@sandbox.test", Scopes: []string{ScopeContactsRead, ScopeDealsRead, ScopeMailRead, ScopeCalendarRead}},
	// Lin Ited models a user who lost scopes: deals and calendar.
	{Sub: "sbx-1003-limited", Name: "Lin Ited", Email: "limited@sandbox.test", Scopes: []string{ScopeContactsRead, ScopeMailRead}},
}

// Accounts lists the sandbox's demo accounts.
func Accounts() []Account {
	out := make([]Account, len(accounts))
	for i, a := range accounts {
		a.Scopes = slices.Clone(a.Scopes)
		out[i] = a
	}
	return out
}

func account(email string) *Account {
	for i := range accounts {
		if strings.EqualFold(accounts[i].Email, email) {
			return &accounts[i]
		}
	}
	return nil
}

// CRMProvider returns the catalogue entry for the CRM product of a
// sandbox served at baseURL (e.g. http://127.0.0.1:8080/sandbox).
func CRMProvider(baseURL, clientID, secret string) oauthflow.ProviderConfig {
	p := productEntry(baseURL, clientID, secret)
	p.ID, p.Name, p.Category = "sandbox", CRMName, switchboard.CategoryCRM
	p.Scopes = slices.Clone(crmScopes)
	p.SettingDefinitions = []switchboard.SettingDefinition{
		{Key: "sync_interval_minutes", Label: "Sync interval (minutes)", Type: switchboard.SettingInteger, Default: "15", Min: 5, Max: 1440},
		{Key: "sync_deals", Label: "Sync deals", Type: switchboard.SettingBoolean, Default: "true"},
		{Key: "pipeline", Label: "Pipeline", Type: switchboard.SettingEnum, Options: []string{"sales", "renewals", "all"}, Default: "sales"},
	}
	return p
}

// MailProvider returns the catalogue entry for the mail and calendar
// product of the same sandbox: a personal integration (EMAIL_CALENDAR) that
// each user connects for themselves. It has its own client registration.
func MailProvider(baseURL, clientID, secret string) oauthflow.ProviderConfig {
	p := productEntry(baseURL, clientID, secret)
	p.ID, p.Name, p.Category = "sandbox-mail", MailName, switchboard.CategoryEmailCalendar
	p.Scopes = slices.Clone(mailScopes)
	p.SettingDefinitions = []switchboard.SettingDefinition{
		{Key: "calendar_sync_days", Label: "Calendar sync window (days)", Type: switchboard.SettingInteger, Default: "30", Min: 1, Max: 365},
		{Key: "include_shared_calendars", Label: "Include shared calendars", Type: switchboard.SettingBoolean, Default: "false"},
	}
	return p
}

// productEntry is what every product of a sandbox shares: its
// endpoints, identity fields and client authentication.
func productEntry(baseURL, clientID, secret string) oauthflow.ProviderConfig {
	base := strings.TrimRight(baseURL, "/")
	return oauthflow.ProviderConfig{
		ClientID:     clientID,
		ClientSecret: secret,
		AuthURL:      base + "/authorize",
		TokenURL:     base + "/token",
		RevokeURL:    base + "/revoke",
		UserinfoURL:  base + "/userinfo",
		Identity:     oauthflow.IdentityFields{ID: "sub", Name: "name", Email: "email"},
		AuthStyle:    oauthflow.AuthStyleHeader,
	}
}

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
}

// Server is a small OAuth 2.0 authorization server with demo accounts:
// authorization code with PKCE S256 (required), rotating refresh tokens
// with reuse detection, RFC 7009 revocation and a userinfo endpoint, plus a
// console page to revoke grants and expire tokens, and fault injection for
// tests. Everything lives in memory, and in Config.StateFile when
// set. It is safe for concurrent use.
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
	faults map[string]*fault
	calls  map[string]int
	hold   chan struct{}
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

type authCode struct {
	client      *clientReg
	account     *Account
	scopes      []string
	redirectURI string
	challenge   string
	expires     time.Time
	used        bool
	grantID     string // set once exchanged
}

type grant struct {
	id        string
	client    *clientReg
	account   *Account
	scopes    []string
	created   time.Time
	refreshes int
	access    []string // token hashes
	rtoks     []string // token hashes, oldest first; the last is current
}

type accessTok struct {
	grantID string
	scopes  []string
	expires time.Time
}

type refreshTok struct {
	grantID string
	used    bool
}

type fault struct {
	status int
	times  int
}

// Grant describes an active grant, for the console and tests.
type Grant struct {
	ID           string
	Product      string // Sandbox CRM or Sandbox Mail
	Email        string
	Name         string
	Scopes       []string
	CreatedAt    time.Time
	Refreshes    int
	AccessExpiry time.Time // latest expiry of its access tokens; zero if none is live
}

var endpoints = []string{"authorize", "token", "revoke", "userinfo"}

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
		faults:   map[string]*fault{},
		calls:    map[string]int{},
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

// Provider returns the catalogue entry for this sandbox's CRM.
func (s *Server) Provider() oauthflow.ProviderConfig {
	return CRMProvider(s.cfg.BaseURL, s.cfg.ClientID, s.cfg.ClientSecret)
}

// MailProvider returns the catalogue entry for this sandbox's mail client;
// ok is false when none is registered.
func (s *Server) MailProvider() (p oauthflow.ProviderConfig, ok bool) {
	if s.cfg.MailClientID == "" {
		return oauthflow.ProviderConfig{}, false
	}
	return MailProvider(s.cfg.BaseURL, s.cfg.MailClientID, s.cfg.MailClientSecret), true
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
		if !s.count(w, "authorize") {
			return
		}
		s.authorize(w, r)
	case "/token":
		if !s.count(w, "token") {
			return
		}
		s.token(w, r)
	case "/revoke":
		if !s.count(w, "revoke") {
			return
		}
		s.revoke(w, r)
	case "/userinfo":
		if !s.count(w, "userinfo") {
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

// count records a call and answers an injected fault, returning false when
// it did.
func (s *Server) count(w http.ResponseWriter, endpoint string) bool {
	s.mu.Lock()
	s.calls[endpoint]++
	f := s.faults[endpoint]
	status := 0
	if f != nil && f.times > 0 {
		f.times--
		status = f.status
	}
	s.mu.Unlock()
	if status == 0 {
		return true
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	code := "temporarily_unavailable"
	if status < 500 && status != http.StatusTooManyRequests {
		code = "invalid_request"
	}
	writeOAuthError(w, status, code, "injected fault")
	return false
}

// InjectFault makes the next times requests to endpoint ("authorize",
// "token", "revoke" or "userinfo") answer status with an OAuth error body.
// It replaces an earlier fault for that endpoint; times 0 clears it.
func (s *Server) InjectFault(endpoint string, status, times int) {
	if !slices.Contains(endpoints, endpoint) {
		panic(fmt.Sprintf("oauthflow: sandbox has no endpoint %q", endpoint))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[endpoint] = &fault{status: status, times: times}
}

// HoldRevocations makes revocation requests wait (after being counted)
// until release is called or the request's context ends; a request whose
// context ends first revokes nothing. release may be called more than once.
func (s *Server) HoldRevocations() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
	ch := s.hold
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == ch {
				s.hold = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Calls returns how many requests endpoint has received, faults included.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// Grants lists the active grants, oldest first.
func (s *Server) Grants() []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	out := make([]Grant, 0, len(s.grants))
	for _, g := range s.grants {
		sg := Grant{ID: g.id, Product: g.client.product, Email: g.account.Email, Name: g.account.Name, Scopes: slices.Clone(g.scopes), CreatedAt: g.created, Refreshes: g.refreshes}
		for _, h := range g.access {
			if a := s.access[h]; a != nil && a.expires.After(now) && a.expires.After(sg.AccessExpiry) {
				sg.AccessExpiry = a.expires
			}
		}
		out = append(out, sg)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// RevokeAccount revokes every grant of the account with that email, as an
// admin revoking the app at the provider would, and returns how many.
func (s *Server) RevokeAccount(email string) int {
	defer s.grantsChanged()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, g := range s.grants {
		if strings.EqualFold(g.account.Email, email) {
			s.revokeGrantLocked(id)
			n++
		}
	}
	return n
}

// ExpireAccessTokens makes every access token of the account's grants
// expire now; refresh tokens keep working. It returns how many grants were
// touched.
func (s *Server) ExpireAccessTokens(email string) int {
	defer s.grantsChanged()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, g := range s.grants {
		if strings.EqualFold(g.account.Email, email) {
			s.expireGrantLocked(id)
			n++
		}
	}
	return n
}

func (s *Server) expireGrantLocked(id string) {
	g := s.grants[id]
	if g == nil {
		return
	}
	for _, h := range g.access {
		delete(s.access, h)
	}
	g.access = nil
	_ = s.saveLocked()
}

func (s *Server) revokeGrantLocked(id string) {
	g := s.grants[id]
	if g == nil {
		return
	}
	for _, h := range g.access {
		delete(s.access, h)
	}
	for _, h := range g.rtoks {
		delete(s.rtoks, h)
	}
	delete(s.grants, id)
	_ = s.saveLocked()
}

// sweepLocked drops expired codes and access tokens.
func (s *Server) sweepLocked(now time.Time) {
	for h, c := range s.codes {
		if now.After(c.expires) {
			delete(s.codes, h)
		}
	}
	for h, a := range s.access {
		if now.After(a.expires) {
			delete(s.access, h)
			if g := s.grants[a.grantID]; g != nil {
				g.access = slices.DeleteFunc(g.access, func(x string) bool { return x == h })
			}
		}
	}
}

// ---- /authorize

type authzRequest struct {
	clientID, redirectURI, responseType, state, challenge, method, loginHint string
	scopes                                                                   []string
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	var v url.Values
	switch r.Method {
	case http.MethodGet:
		v = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			s.errorPage(w, http.StatusBadRequest, "The form could not be read.")
			return
		}
		v = r.PostForm
	default:
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "Use GET or POST.")
		return
	}
	req := authzRequest{
		clientID: v.Get("client_id"), redirectURI: v.Get("redirect_uri"), responseType: v.Get("response_type"),
		state: v.Get("state"), challenge: v.Get("code_challenge"), method: v.Get("code_challenge_method"),
		loginHint: v.Get("login_hint"), scopes: strings.Fields(v.Get("scope")),
	}
	// Until client and redirect URI check out, never redirect anywhere.
	client := s.client(req.clientID)
	if client == nil {
		s.errorPage(w, http.StatusBadRequest, "Unknown client_id. The application asking for access is not registered with the sandbox.")
		return
	}
	if !slices.Contains(s.cfg.RedirectURIs, req.redirectURI) {
		s.errorPage(w, http.StatusBadRequest, "The redirect_uri is not registered for this client, so the sandbox will not send you there.")
		return
	}
	fail := func(code, desc string) {
		s.redirect(w, r, req.redirectURI, url.Values{"error": {code}, "error_description": {desc}, "state": {req.state}})
	}
	switch {
	case req.responseType != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case req.state == "":
		fail("invalid_request", "state is required")
		return
	case req.challenge == "" || req.method != "S256":
		fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
		return
	case len(req.challenge) < 43 || len(req.challenge) > 128:
		fail("invalid_request", "code_challenge must be 43 to 128 characters")
		return
	}
	if len(req.scopes) == 0 {
		req.scopes = slices.Clone(client.scopes)
	}
	for _, sc := range req.scopes {
		if !slices.Contains(client.scopes, sc) {
			fail("invalid_scope", fmt.Sprintf("unknown scope %q for %s", sc, client.product))
			return
		}
	}

	var acct *Account
	if r.Method == http.MethodPost {
		if v.Get("deny") != "" {
			fail("access_denied", "the user denied access")
			return
		}
		if acct = account(v.Get("account")); acct == nil {
			s.errorPage(w, http.StatusBadRequest, "Pick one of the demo accounts.")
			return
		}
	} else if req.loginHint != "" {
		acct = account(req.loginHint)
	}
	if acct == nil {
		s.chooser(w, client, req, v)
		return
	}

	granted := []string{}
	for _, sc := range req.scopes {
		if slices.Contains(acct.Scopes, sc) && !slices.Contains(granted, sc) {
			granted = append(granted, sc)
		}
	}
	code := newToken()
	s.mu.Lock()
	s.codes[hashToken(code)] = &authCode{
		client: client, account: acct, scopes: granted, redirectURI: req.redirectURI,
		challenge: req.challenge, expires: s.cfg.Now().Add(codeTTL),
	}
	s.mu.Unlock()
	s.redirect(w, r, req.redirectURI, url.Values{"code": {code}, "state": {req.state}})
}

func (s *Server) redirect(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values) {
	u, _ := url.Parse(redirectURI) // registered URIs were checked in New
	q := u.Query()
	for k, vs := range params {
		if len(vs) > 0 && vs[0] != "" {
			q.Set(k, vs[0])
		}
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// ---- /token

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	form, ok := s.readForm(w, r)
	if !ok {
		return
	}
	client := s.authenticateClient(w, r, form)
	if client == nil {
		return
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		s.tokenFromCode(w, client, form)
	case "refresh_token":
		s.tokenFromRefresh(w, client, form)
	case "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code and refresh_token are supported")
	}
}

func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the form body could not be read")
		return nil, false
	}
	return r.PostForm, true
}

// authenticateClient accepts HTTP Basic (RFC 6749 §2.3.1, form-encoded
// credentials) or client_id and client_secret in the body, not both, and
// returns the client, or nil after answering the error.
func (s *Server) authenticateClient(w http.ResponseWriter, r *http.Request, form url.Values) *clientReg {
	id, secret, basic := r.BasicAuth()
	if basic {
		if form.Get("client_secret") != "" {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method, not two")
			return nil
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			id, secret = "", ""
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	c := s.client(id)
	okSecret := c != nil && subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) == 1
	if !okSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return nil
	}
	return c
}

func (s *Server) tokenFromCode(w http.ResponseWriter, client *clientReg, form url.Values) {
	code, verifier, redirectURI := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	if code == "" || verifier == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "code and code_verifier are required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	s.sweepLocked(now)
	c := s.codes[hashToken(code)]
	switch {
	case c == nil || now.After(c.expires):
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the authorization code is unknown or expired")
		return
	case c.used:
		// RFC 6749 §4.1.2: a replayed code revokes what it issued.
		s.revokeGrantLocked(c.grantID)
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the authorization code was already used; its grant has been revoked")
		return
	}
	// One attempt per code, successful or not.
	c.used = true
	if c.client != client {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the authorization code was issued to another client")
		return
	}
	if redirectURI != c.redirectURI {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
		return
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.challenge)) != 1 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	}
	s.seq++
	g := &grant{id: fmt.Sprintf("g%d", s.seq), client: client, account: c.account, scopes: c.scopes, created: now}
	s.grants[g.id] = g
	c.grantID = g.id
	s.issueLocked(w, g, g.scopes, now)
}

func (s *Server) tokenFromRefresh(w http.ResponseWriter, client *clientReg, form url.Values) {
	rt := form.Get("refresh_token")
	if rt == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	s.sweepLocked(now)
	rec := s.rtoks[hashToken(rt)]
	if rec == nil || s.grants[rec.grantID] == nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown or revoked")
		return
	}
	if s.grants[rec.grantID].client != client {
		// Bound to the client it was issued to (RFC 6749 §6); another
		// client presenting it learns nothing and changes nothing.
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown or revoked")
		return
	}
	if rec.used {
		// Reuse of a rotated token: someone else may hold it, so the
		// whole grant goes.
		s.revokeGrantLocked(rec.grantID)
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was already used; the grant has been revoked")
		return
	}
	g := s.grants[rec.grantID]
	scopes := g.scopes
	if sc := strings.Fields(form.Get("scope")); len(sc) > 0 {
		for _, x := range sc {
			if !slices.Contains(g.scopes, x) {
				writeOAuthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q was not granted", x))
				return
			}
		}
		scopes = sc
	}
	rec.used = true
	g.refreshes++
	s.issueLocked(w, g, scopes, now)
}

// issueLocked mints an access token and a new refresh token for g and
// writes the token response.
func (s *Server) issueLocked(w http.ResponseWriter, g *grant, scopes []string, now time.Time) {
	at, rt := newToken(), newToken()
	ah, rh := hashToken(at), hashToken(rt)
	s.access[ah] = &accessTok{grantID: g.id, scopes: scopes, expires: now.Add(s.cfg.AccessTokenTTL)}
	g.access = append(g.access, ah)
	s.rtoks[rh] = &refreshTok{grantID: g.id}
	g.rtoks = append(g.rtoks, rh)
	if len(g.rtoks) > keepRotated {
		delete(s.rtoks, g.rtoks[0])
		g.rtoks = g.rtoks[1:]
	}
	// Durable before the answer, as a real provider's would be.
	if err := s.saveLocked(); err != nil {
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the sandbox could not save its state")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  at,
		"token_type":    "Bearer",
		"expires_in":    int(s.cfg.AccessTokenTTL / time.Second),
		"refresh_token": rt,
		"scope":         strings.Join(scopes, " "),
	})
}

// ---- /revoke

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	form, ok := s.readForm(w, r)
	if !ok {
		return
	}
	client := s.authenticateClient(w, r, form)
	if client == nil {
		return
	}
	tok := form.Get("token")
	if tok == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	h := hashToken(tok)
	s.mu.Lock()
	// token_type_hint only speeds up a lookup; both kinds are checked. A
	// token of another client revokes nothing and is answered like an
	// unknown one (RFC 7009 §2.2).
	grantID := ""
	if rec := s.rtoks[h]; rec != nil {
		grantID = rec.grantID
	} else if a := s.access[h]; a != nil {
		grantID = a.grantID
	}
	if g := s.grants[grantID]; g != nil && g.client == client {
		s.revokeGrantLocked(grantID)
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// ---- /userinfo

func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
		return
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(auth, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_request", "a Bearer access token is required")
		return
	}
	s.mu.Lock()
	a := s.access[hashToken(strings.TrimSpace(tok))]
	var acct *Account
	if a != nil && s.cfg.Now().Before(a.expires) {
		if g := s.grants[a.grantID]; g != nil {
			acct = g.account
		}
	}
	s.mu.Unlock()
	if acct == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox", error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"sub": acct.Sub, "name": acct.Name, "email": acct.Email})
}

// ---- console

func (s *Server) consoleAction(w http.ResponseWriter, r *http.Request, action string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "Use the buttons on the sandbox console.")
		return
	}
	// The console's forms post from its own origin; refuse cross-site posts.
	if o := r.Header.Get("Origin"); o != "" && o != s.origin {
		s.errorPage(w, http.StatusForbidden, "Cross-site requests to the sandbox console are refused.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	id := r.PostForm.Get("grant")
	s.mu.Lock()
	if action == "revoke" {
		s.revokeGrantLocked(id)
	} else {
		s.expireGrantLocked(id)
	}
	s.mu.Unlock()
	s.grantsChanged()
	http.Redirect(w, r, s.basePath+"/", http.StatusSeeOther)
}

// grantsChanged tells OnGrantChange, outside the lock.
func (s *Server) grantsChanged() {
	if s.cfg.OnGrantChange != nil {
		s.cfg.OnGrantChange()
	}
}

// ---- helpers

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken keys the maps, so a memory dump or a timing probe of a map
// lookup reveals no usable token.
func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return string(sum[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
