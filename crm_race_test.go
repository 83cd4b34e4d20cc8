package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentCRMCallbacksLeaveOneCRM completes the OAuth callbacks of
// two CRM providers (the sandbox and a custom CRM behind an httptest
// authorization server) at the same moment, many times: every round ends
// with exactly one connected CRM, and the other callback is told to
// disconnect the first.
func TestConcurrentCRMCallbacksLeaveOneCRM(t *testing.T) {
	var issued atomic.Int64
	acme := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/token":
			if err := r.ParseForm(); err != nil || r.PostForm.Get("code") == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			n := issued.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"access_token": fmt.Sprintf("acme-at-%d", n), "refresh_token": fmt.Sprintf("acme-rt-%d", n),
				"token_type": "Bearer", "expires_in": 3600, "scope": "contacts.read",
			})
		default:
			http.NotFound(w, r)
		}
	}))
	defer acme.Close()

	dir := t.TempDir()
	file := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`providers:
  - id: acme
    name: Acme CRM
    category: CRM
    clientId: acme
    clientSecret: s3cret
    authUrl: %[1]s/authorize
    tokenUrl: %[1]s/token
    scopes: [contacts.read]
`, acme.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	m := mustStart(t, filepath.Join(dir, "data"), func(m *Main) { m.Config.ProvidersFile = file })
	c := newClient(t, m, m.DemoToken)
	// One browser starts both flows and sends both callbacks.
	noFollow := oauthBrowser()

	// sandboxCallback walks the sandbox's authorization page and returns
	// the callback URL it redirects to, without opening it.
	sandboxCallback := func() string {
		d := c.must(`mutation { connectIntegration(input: {provider: "sandbox", loginHint: "ada@sandbox.test"}) { authorizationUrl } }`, nil)
		return callbackURL(t, noFollow, str(d, "connectIntegration.authorizationUrl"))
	}
	// acmeCallback is what Acme's authorization page would redirect to.
	acmeCallback := func() string {
		d := c.must(`mutation { connectIntegration(input: {provider: "acme"}) { authorizationUrl } }`, nil)
		q := startFlow(t, noFollow, str(d, "connectIntegration.authorizationUrl")).Query()
		return q.Get("redirect_uri") + "?" + url.Values{"code": {"acme-code"}, "state": {q.Get("state")}}.Encode()
	}

	const rounds = 25
	wins := map[string]int{}
	for round := range rounds {
		urls := []string{sandboxCallback(), acmeCallback()}
		status := make([]int, len(urls))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, u := range urls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := noFollow.Get(u)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				status[i] = resp.StatusCode
			}()
		}
		close(start)
		wg.Wait()

		d := c.must(`{ integrations(category: CRM) { id status provider { id } } }`, nil)
		var live []map[string]any
		for _, in := range d["integrations"].([]any) {
			in := in.(map[string]any)
			if in["status"] != "DISCONNECTED" {
				live = append(live, in)
			}
		}
		if len(live) != 1 {
			t.Fatalf("round %d: callbacks answered %v and %d CRMs are connected: %v; want exactly one", round, status, len(live), live)
		}
		winner := str(live[0], "provider.id")
		wins[winner]++
		ok := 0
		for _, s := range status {
			if s == http.StatusOK {
				ok++
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: callbacks answered %v; want one success", round, status)
		}
		disconnect(t, c, live[0]["id"].(string))
	}
	t.Logf("winners over %d rounds: %v", rounds, wins)
}
