package refresher_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sb "github.com/bont/switchboard/switchboard"
)

// What each answer of the token endpoint does to the badge, and the class
// the refresher reports for the metrics. (Refresh tokens never appear in
// messages, so they are named apart from the codes.)
func TestRefreshOutcomes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		refuse := func(status int, code string) {
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
		}
		switch r.PostForm.Get("refresh_token") {
		case "tok-ok":
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "fresh", "token_type": "Bearer", "expires_in": 3600})
		case "tok-grant":
			refuse(http.StatusBadRequest, "invalid_grant")
		case "tok-scope":
			refuse(http.StatusBadRequest, "invalid_scope")
		case "tok-client":
			refuse(http.StatusUnauthorized, "invalid_client")
		case "tok-down":
			refuse(http.StatusServiceUnavailable, "temporarily_unavailable")
		}
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t, &provider{srv: srv}, 5*time.Second)
	var mu sync.Mutex
	var classes []string
	e.r.Observe = func(providerID, class string) {
		mu.Lock()
		classes = append(classes, providerID+":"+class)
		mu.Unlock()
	}
	for _, c := range []struct {
		refreshToken, class string
		status              sb.Status
		reason, message     string
	}{
		{"ok", "ok", sb.StatusConnected, sb.ReasonAuthorized, ""},
		{"grant", "invalid_grant", sb.StatusReconnectRequired, sb.ReasonTokenRevoked, "Acme no longer accepts this connection's sign-in: Acme refused to refresh the access token (invalid_grant)."},
		{"scope", "invalid_grant", sb.StatusReconnectRequired, sb.ReasonTokenRevoked, "Acme no longer accepts this connection's sign-in: Acme refused to refresh the access token (invalid_scope)."},
		{"client", "client_rejected", sb.StatusError, sb.ReasonRefreshFailed, "Acme refused Switchboard's client credentials while refreshing (invalid_client). Reconnecting will not help: update the client ID and secret in the providers file."},
		{"down", "transient", sb.StatusConnected, sb.ReasonAuthorized, ""},
	} {
		t.Run(c.refreshToken, func(t *testing.T) {
			id := "int_" + c.refreshToken
			e.seed(id, sb.TokenSet{AccessToken: "old", RefreshToken: "tok-" + c.refreshToken, Expiry: e.clock.After(-time.Minute)})
			mu.Lock()
			classes = nil
			mu.Unlock()
			_, _, _ = e.r.Token(context.Background(), "ws", id, 0, false, "")
			mu.Lock()
			check(t, "classes", classes, []string{"acme:" + c.class})
			mu.Unlock()
			in := e.integration(id)
			check(t, "status", in.Status, c.status)
			check(t, "reason", in.StatusReason, c.reason)
			if !strings.HasPrefix(in.StatusMessage, c.message) {
				t.Errorf("message: got %q; want it to start with %q", in.StatusMessage, c.message)
			}
		})
	}
}
