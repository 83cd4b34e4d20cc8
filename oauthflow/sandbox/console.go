package sandbox

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const style = `
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
main{max-width:40rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin:0 0 .5rem}
p.note{color:#4a5263;margin:.25rem 0 1.5rem}
ul.accounts{list-style:none;margin:0 0 1.5rem;padding:0}
ul.accounts li{margin:.5rem 0}
button{font:inherit;cursor:pointer;border-radius:8px;border:1px solid #b8bfcc;background:#fff;padding:.6rem 1rem}
button:focus-visible{outline:3px solid #2a5bd7;outline-offset:2px}
button.account{width:100%;text-align:left;display:flex;flex-direction:column}
button.account:hover{border-color:#2a5bd7;background:#f0f4ff}
.who{font-weight:600}.email,.scopes{color:#4a5263;font-size:.9rem}
button.deny{border-color:#c2403a;color:#a02e29}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.5rem;border-bottom:1px solid #e3e6ec;vertical-align:top}
td form{display:inline}
.error{border-left:4px solid #c2403a;padding-left:1rem}
`

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"join": strings.Join,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "expired"
		}
		return t.Format("15:04:05 MST")
	},
}).Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · Sandbox</title><style>` + style + `</style></head><body><main>{{end}}

{{define "chooser"}}{{template "head" "Sign in"}}
<h1>Sign in to {{.Product}}</h1>
<p class="note">An application asks for these permissions: {{join .Scopes ", "}}. Choose the demo account to continue as, or deny access.</p>
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<ul class="accounts">
{{range .Accounts}}<li><button class="account" type="submit" name="account" value="{{.Email}}">
<span class="who">Continue as {{.Name}}</span>
<span class="email">{{.Email}}</span>
<span class="scopes">Can grant: {{join .Scopes ", "}}</span>
</button></li>
{{end}}</ul>
<button class="deny" type="submit" name="deny" value="1">Deny access</button>
</form>
</main></body></html>{{end}}

{{define "error"}}{{template "head" "Error"}}
<h1>The sandbox cannot continue</h1>
<p class="error" role="alert">{{.}}</p>
</main></body></html>{{end}}

{{define "console"}}{{template "head" "Console"}}
<h1>Sandbox console</h1>
<p class="note">Active grants. Revoke one, or expire its access token, and watch its card in Switchboard react.</p>
{{if .Grants}}<table>
<caption class="note">{{len .Grants}} active grant(s)</caption>
<thead><tr><th scope="col">Account</th><th scope="col">Product</th><th scope="col">Scopes</th><th scope="col">Access token expires</th><th scope="col"><span class="note">Actions</span></th></tr></thead>
<tbody>{{range .Grants}}<tr>
<td>{{.Name}}<br><span class="email">{{.Email}}</span></td>
<td>{{.Product}}</td>
<td>{{if .Scopes}}{{join .Scopes ", "}}{{else}}none{{end}}</td>
<td>{{time .AccessExpiry}}</td>
<td>
<form method="post" action="{{$.Base}}/console/revoke"><input type="hidden" name="grant" value="{{.ID}}"><button type="submit" aria-label="Revoke access for {{.Name}}">Revoke access</button></form>
<form method="post" action="{{$.Base}}/console/expire"><input type="hidden" name="grant" value="{{.ID}}"><button type="submit" aria-label="Expire access token for {{.Name}}">Expire access token</button></form>
</td></tr>
{{end}}</tbody></table>
{{else}}<p>No active grants. Connect Sandbox CRM or Sandbox Mail in Switchboard to create one.</p>{{end}}
<h2>Demo accounts</h2>
<ul>{{range .Accounts}}<li>{{.Name}} &lt;{{.Email}}&gt; can grant {{join .Scopes ", "}}</li>{{end}}</ul>
</main></body></html>{{end}}
`))

type hiddenField struct{ Name, Value string }

func (s *Server) chooser(w http.ResponseWriter, client *clientReg, req authzRequest, v url.Values) {
	var hidden []hiddenField
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge", "code_challenge_method"} {
		if x := v.Get(k); x != "" {
			hidden = append(hidden, hiddenField{k, x})
		}
	}
	s.render(w, http.StatusOK, "chooser", map[string]any{
		"Action":   s.basePath + "/authorize",
		"Product":  client.product,
		"Hidden":   hidden,
		"Accounts": Accounts(),
		"Scopes":   req.scopes,
	})
}

func (s *Server) errorPage(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, "error", msg)
}

func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		s.errorPage(w, http.StatusMethodNotAllowed, "Use GET.")
		return
	}
	s.render(w, http.StatusOK, "console", map[string]any{
		"Base":     s.basePath,
		"Grants":   s.Grants(),
		"Accounts": Accounts(),
	})
}

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+strings.Join(s.formTargets(), " ")+"; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// formTargets are the origins a form may lead to: the chooser's POST answers
// with a redirect to a registered redirect URI, and CSP form-action applies
// to redirects too.
func (s *Server) formTargets() []string {
	var out []string
	for _, u := range s.cfg.RedirectURIs {
		if p, err := url.Parse(u); err == nil && !slices.Contains(out, p.Scheme+"://"+p.Host) {
			out = append(out, p.Scheme+"://"+p.Host)
		}
	}
	return out
}

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
