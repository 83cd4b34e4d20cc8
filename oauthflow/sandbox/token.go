package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// token serves POST /token: the authorization_code and refresh_token
// grants, for an authenticated client.
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
