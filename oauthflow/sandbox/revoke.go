package sandbox

import (
	"net/http"
)

// revoke serves POST /revoke (RFC 7009): the grant of the token goes,
// and an unknown token is answered 200 as well.
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
	if !s.cfg.Testing.waitRevocation(r.Context()) {
		return
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
