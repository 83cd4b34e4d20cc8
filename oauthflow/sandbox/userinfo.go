package sandbox

import (
	"net/http"
	"strings"
)

// userinfo serves /userinfo: the account behind a live Bearer access
// token.
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
