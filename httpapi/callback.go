package httpapi

import (
	"html/template"
	"net/http"
	"net/url"

	"github.com/bont/switchboard/switchboard"
)

// callback completes an OAuth authorization. On success it redirects to
// the returnTo the flow started with (checked then), or shows a small page
// that tells the opener and offers to close the window. On failure it says
// what happened; the integration is unchanged. It needs the cookie the
// flow's start link set in this browser (start.go); without it the
// callback is refused (403 FORBIDDEN) and the flow stays pending.
func (o Options) callback(w http.ResponseWriter, r *http.Request) {
	// The URL carries a one-time code: keep it out of caches and referrers.
	oauthHeaders(w)
	q := r.URL.Query()
	cp := switchboard.CallbackParams{
		State:            q.Get("state"),
		Code:             q.Get("code"),
		Error:            q.Get("error"),
		ErrorDescription: q.Get("error_description"),
	}
	if cp.State != "" {
		if c, err := r.Cookie(oauthCookieName(cp.State)); err == nil {
			cp.BrowserSecret = c.Value
			// Whatever the outcome, the cookie has served: the flow is
			// over, or the value was not the flow's.
			http.SetCookie(w, o.oauthCookie(r, c.Name, "", -1))
		}
	}
	res, err := o.Service.CompleteAuthorization(r.Context(), cp)
	if err != nil {
		o.oauthFailure(w, "oauth callback", "Not connected", err)
		return
	}
	o.Logger.Info("integration authorized", "workspace", res.Integration.WorkspaceID, "integration", res.Integration.ID,
		"provider", res.Integration.ProviderID, "kind", res.Event.Kind, "revision", res.Event.Revision)
	if res.ReturnTo != "" {
		u, err := url.Parse(res.ReturnTo)
		if err == nil {
			v := u.Query()
			v.Set("integration", res.Integration.ID)
			v.Set("status", string(res.Integration.Status))
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
	}
	page := callbackPage{
		OK:          true,
		Title:       res.Provider.Name + " connected",
		Message:     "You can close this window.",
		Integration: res.Integration.ID,
		Status:      string(res.Integration.Status),
		Code:        string(res.Event.Kind),
	}
	if a := res.Integration.Account; a != nil {
		page.Message = "Connected as " + accountText(a) + ". You can close this window."
	}
	if res.Integration.Status != switchboard.StatusConnected {
		page.Title = res.Provider.Name + ": " + switchboard.BadgeFor(res.Integration.Status).Label
		page.Message = res.Integration.StatusMessage
	}
	renderCallback(w, http.StatusOK, page)
}

func accountText(a *switchboard.Account) string {
	if a.Email != "" {
		return a.Email
	}
	if a.Name != "" {
		return a.Name
	}
	return a.ID
}

type callbackPage struct {
	OK          bool
	Title       string
	Message     string
	Code        string
	Integration string
	Status      string
}

// oauthFailure answers a failed OAuth start link or callback with a page
// naming the error's code: 403 for FORBIDDEN (not this browser, the
// starting token gone), 409 for CONFLICT, 502 when the provider failed,
// 500 (logged as step) for internal errors, and 400 for the rest (an
// unknown, used or expired link or state, a refused authorization).
func (o Options) oauthFailure(w http.ResponseWriter, step, title string, err error) {
	status := http.StatusBadRequest
	switch switchboard.ErrorCode(err) {
	case switchboard.EFORBIDDEN:
		status = http.StatusForbidden
	case switchboard.ECONFLICT:
		status = http.StatusConflict
	case switchboard.EUNAVAILABLE:
		status = http.StatusBadGateway
	case switchboard.EINTERNAL:
		status = http.StatusInternalServerError
		o.Logger.Error(step, "err", err)
	}
	renderCallback(w, status, callbackPage{
		Title:   title,
		Message: switchboard.ErrorMessage(err),
		Code:    switchboard.ErrorCode(err),
	})
}

func renderCallback(w http.ResponseWriter, status int, p callbackPage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = callbackTemplate.Execute(w, p)
}

// The page posts a message to the window that opened it (same origin only)
// so a settings page can react at once, then tries to close itself.
var callbackTemplate = template.Must(template.New("callback").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0;display:grid;place-items:center;min-height:100vh;background:#f6f7f9;color:#1d2330}
main{background:#fff;border:1px solid #dde1e8;border-radius:12px;padding:2rem 2.5rem;max-width:32rem}
h1{font-size:1.25rem;margin:0 0 .5rem}
.ok h1::before{content:"✓ ";color:#1a7f4b}.err h1::before{content:"✕ ";color:#b42318}
code{background:#f0f2f5;padding:.1rem .3rem;border-radius:4px}
</style></head>
<body><main class="{{if .OK}}ok{{else}}err{{end}}" data-code="{{.Code}}" data-integration="{{.Integration}}" data-status="{{.Status}}">
<h1 id="title">{{.Title}}</h1>
<p id="message">{{.Message}}</p>
{{if not .OK}}<p>Code: <code>{{.Code}}</code></p>{{end}}
<p><button type="button" onclick="window.close()">Close window</button></p>
</main>
<script>
(function(){
  var m = document.querySelector("main").dataset;
  if (window.opener) {
    try { window.opener.postMessage({type:"switchboard:oauth", ok: {{.OK}}, code: m.code, integration: m.integration, status: m.status}, location.origin); } catch (e) {}
    {{if .OK}}setTimeout(function(){ window.close(); }, 1500);{{end}}
  }
})();
</script>
</body></html>
`))
