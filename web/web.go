// Package web is the live settings page: plain HTML, CSS and JavaScript
// modules embedded in the binary (no build step), served under /settings.
// The page talks to /graphql like any other client; this package only
// serves its files and, in dev mode, trades a one-time sign-in code for the
// demo token.
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// Options configures the settings page.
type Options struct {
	// Dev shows dev-mode hints (where the demo token is) on the sign-in form.
	Dev bool
	// TokenFile is where dev mode wrote the demo token, for that hint.
	TokenFile string
	// Codes, when set (dev mode), lets /settings/signin?code=… sign the
	// page in.
	Codes *LoginCodes
	// Authenticate checks a token before the page is given it
	// (Service.Authenticate). Required with Codes.
	Authenticate func(ctx context.Context, token string) error
	// Origin is the gateway's public origin (scheme://host[:port]); a
	// sign-in POST from any other origin is refused.
	Origin string
	Logger *slog.Logger
}

// Handler serves the page at /settings, its assets under /settings/assets/,
// and the sign-in exchange at POST /settings/signin.
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	assets, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	var page bytes.Buffer
	if err := pageTemplate.Execute(&page, o); err != nil {
		panic(err)
	}
	index := page.Bytes()

	mux := http.NewServeMux()
	serveIndex := func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The sign-in URL carries a one-time code: keep it out of caches
		// and referrers (the page also drops it from the address bar).
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(index)
	}
	mux.HandleFunc("GET /settings", serveIndex)
	mux.HandleFunc("GET /settings/{$}", serveIndex)
	mux.HandleFunc("GET /settings/signin", serveIndex)
	mux.HandleFunc("POST /settings/signin", o.signin)
	static := http.StripPrefix("/settings/assets/", http.FileServerFS(assets))
	mux.Handle("GET /settings/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		// Assets change with the binary; revalidate so an upgrade shows at once.
		w.Header().Set("Cache-Control", "no-cache")
		if path.Ext(r.URL.Path) == ".js" {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		}
		static.ServeHTTP(w, r)
	}))
	return mux
}

// securityHeaders: only the page's own scripts and styles run, it talks
// only to its own origin (fetch and websocket), and nobody may frame it.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
}

type signinError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// signin trades a one-time code for the token it was issued for. The token
// travels only in this response body, never in a URL.
func (o Options) signin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	fail := func(status int, code, msg string) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(signinError{code, msg})
	}
	if o.Codes == nil {
		fail(http.StatusNotFound, "NOT_FOUND", "Sign-in links exist only in dev mode. Sign in with an API token.")
		return
	}
	// A browser always sends Origin on a POST from script; insisting on
	// our own keeps other sites from redeeming a code they saw.
	if org := r.Header.Get("Origin"); org == "" || !strings.EqualFold(org, o.Origin) {
		fail(http.StatusForbidden, "FORBIDDEN", "Sign-in is accepted only from this gateway's own page.")
		return
	}
	var body struct {
		Code string `json:"code"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || body.Code == "" {
		fail(http.StatusBadRequest, "INVALID_INPUT", "Send {\"code\": \"…\"} from the sign-in link.")
		return
	}
	token, ok := o.Codes.Redeem(body.Code)
	if !ok {
		fail(http.StatusBadRequest, "INVALID_CODE", "This sign-in link has expired or was already used. Links last "+o.Codes.TTL().String()+" and work once.")
		return
	}
	if err := o.Authenticate(r.Context(), token); err != nil {
		fail(http.StatusUnauthorized, "UNAUTHENTICATED", "The demo token is no longer valid. Restart the gateway for a new one.")
		return
	}
	o.Logger.Info("settings page signed in with a one-time code")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": token})
}

// SigninURL is the dev-mode link that signs the page in with code.
func SigninURL(base, code string) string {
	return strings.TrimRight(base, "/") + "/settings/signin?code=" + url.QueryEscape(code)
}

var pageTemplate = template.Must(template.ParseFS(files, "static/index.html"))

// DefaultCodeTTL is how long a sign-in link works.
const DefaultCodeTTL = 5 * time.Minute
