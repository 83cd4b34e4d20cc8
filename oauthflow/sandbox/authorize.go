package sandbox

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

type authzRequest struct {
	clientID, redirectURI, responseType, state, challenge, method, loginHint string
	scopes                                                                   []string
}

// authorize serves GET and POST /authorize: the authorization code flow
// with PKCE S256 required. login_hint or the chooser's POST picks the
// account; errors go to the redirect URI only once the client and the
// redirect URI check out.
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
