package httpapi

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
)

// playgroundCSP is the /playground page's Content-Security-Policy: its
// scripts and styles come from the CDN (pinned by SRI) and one inline
// script carrying the request's nonce; it talks only to its own origin
// (GraphQL over HTTP and websockets); no site may frame it.
const playgroundCSP = "default-src 'none'; " +
	"script-src 'nonce-%s' https://cdn.jsdelivr.net; " +
	"style-src 'unsafe-inline' https://cdn.jsdelivr.net; " +
	"font-src https://cdn.jsdelivr.net data:; " +
	"img-src 'self' data:; " +
	"connect-src 'self'; " +
	"worker-src 'self' blob:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// playground serves GraphiQL against /graphql. It is gqlgen's GraphiQL
// page (the same pinned CDN files and hashes) but for what it keeps: the
// headers editor holds the API token, and GraphiQL's default
// (shouldPersistHeaders in gqlgen's page) writes it into localStorage,
// where any script of the origin and anyone at the browser later can
// read it. Here headers are never persisted, and what an earlier page
// persisted is removed on load.
func playground(w http.ResponseWriter, r *http.Request) {
	var b [18]byte
	_, _ = rand.Read(b[:])
	nonce := base64.RawURLEncoding.EncodeToString(b[:]) // no character html/template escapes
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", fmt.Sprintf(playgroundCSP, nonce))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	_ = playgroundPage.Execute(w, struct{ Nonce string }{nonce})
}

var playgroundPage = template.Must(template.New("graphiql").Parse(`<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Switchboard</title>
<style>body { margin: 0; } #graphiql { height: 100vh; }</style>
<script src="https://cdn.jsdelivr.net/npm/react@18.2.0/umd/react.production.min.js" integrity="sha256-S0lp+k7zWUMk2ixteM6HZvu8L9Eh//OVrt+ZfbCpmgY=" crossorigin="anonymous"></script>
<script src="https://cdn.jsdelivr.net/npm/react-dom@18.2.0/umd/react-dom.production.min.js" integrity="sha256-IXWO0ITNDjfnNXIu5POVfqlgYoop36bDzhodR6LW5Pc=" crossorigin="anonymous"></script>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/graphiql@4.1.2/graphiql.min.css" integrity="sha256-MEh+B2NdMSpj9kexQNN3QKc8UzMrCXW/Sx/phcpuyIU=" crossorigin="anonymous">
</head>
<body>
<div id="graphiql">Loading…</div>
<script src="https://cdn.jsdelivr.net/npm/graphiql@4.1.2/graphiql.min.js" integrity="sha256-hnImuor1znlJkD/FOTL3jayfS/xsyNoP04abi8bFJWs=" crossorigin="anonymous"></script>
<script nonce="{{.Nonce}}">
  // Headers an earlier version of this page persisted (the API token).
  for (const key of ['graphiql:headers', 'graphiql:tabState', 'graphiql:shouldPersistHeaders']) {
    localStorage.removeItem(key);
  }
  const url = location.protocol + '//' + location.host + '/graphql';
  const subscriptionUrl = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/graphql';
  ReactDOM.render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({ url, subscriptionUrl }),
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
    }),
    document.getElementById('graphiql'),
  );
</script>
</body>
</html>
`))
