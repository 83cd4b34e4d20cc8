package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// The browser binding of an OAuth flow (docs/security-oauth.md): the start
// link sets a cookie that only the browser opening it holds, and the
// callback requires it.
const oauthCookiePath = "/oauth/"

// oauthCookieName is the cookie of the flow with this state: one per flow,
// so flows started in several windows of one browser do not overwrite each
// other's, and the callback finds its own from the state it carries.
func oauthCookieName(state string) string {
	h := sha256.Sum256([]byte(state))
	return "sb_oauth_" + hex.EncodeToString(h[:8])
}

func (o Options) oauthCookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     oauthCookiePath,
		MaxAge:   maxAge,
		HttpOnly: true,
		// Lax: sent on the provider's top-level redirect back to the
		// callback, never on a cross-site subrequest or POST.
		SameSite: http.SameSiteLaxMode,
		Secure:   o.SecureCookies || r.TLS != nil,
	}
}

// oauthHeaders are the headers of every /oauth/ answer: nothing cached or
// leaked through Referer (the URLs carry one-time values), no framing (a
// framed consent flow is a clickjacking target), no sniffing.
func oauthHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
}

// start opens a start link (GET /oauth/start/{id}), what authorizationUrl
// points at: it puts the flow's browser secret in a cookie scoped to
// /oauth/ that lasts as long as the flow, then sends the browser to the
// provider. A link that is unknown, used, expired or whose API token is
// gone gets a page saying so, and no cookie.
func (o Options) start(w http.ResponseWriter, r *http.Request) {
	oauthHeaders(w)
	st, err := o.Service.BeginAuthorization(r.Context(), r.PathValue("id"))
	if err != nil {
		o.oauthFailure(w, "oauth start", "Not started", err)
		return
	}
	maxAge := int(time.Until(st.ExpiresAt)/time.Second) + 1
	http.SetCookie(w, o.oauthCookie(r, oauthCookieName(st.State), st.BrowserSecret, maxAge))
	http.Redirect(w, r, st.ProviderURL, http.StatusFound)
}
