package oauthflow

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// Each failure of a refresh is classified once, here: its kind, whether the
// provider answered, its Retry-After and the code to quote.
func TestRefreshFailureKinds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		answer := func(status int, code string) {
			w.Header().Set("Content-Type", "application/json")
			if status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "30")
			}
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
		}
		switch r.PostForm.Get("refresh_token") {
		case "grant":
			answer(http.StatusBadRequest, "invalid_grant")
		case "client":
			answer(http.StatusUnauthorized, "invalid_client")
		case "unauthorized":
			answer(http.StatusBadRequest, "unauthorized_client")
		case "scope":
			answer(http.StatusBadRequest, "invalid_scope")
		case "nocode":
			w.WriteHeader(http.StatusForbidden)
		case "busy":
			answer(http.StatusTooManyRequests, "slow_down")
		case "down":
			answer(http.StatusBadGateway, "invalid_grant")
		}
	}))
	defer srv.Close()
	p := ProviderConfig{ID: "acme", Name: "Acme", Category: switchboard.CategoryCRM, ClientID: "c", ClientSecret: "s",
		AuthURL: srv.URL + "/a", TokenURL: srv.URL + "/t"}
	reg := mustRegistry(t, "http://127.0.0.1/cb", &http.Client{Timeout: 5 * time.Second}, p)
	for _, c := range []struct {
		refreshToken string
		code         string
		want         switchboard.ProviderFailure
	}{
		{"grant", switchboard.EINVALID, switchboard.ProviderFailure{Kind: switchboard.FailureGrantRefused, Answered: true, Code: "invalid_grant"}},
		{"client", switchboard.EINVALID, switchboard.ProviderFailure{Kind: switchboard.FailureClientRefused, Answered: true, Code: "invalid_client"}},
		{"unauthorized", switchboard.EINVALID, switchboard.ProviderFailure{Kind: switchboard.FailureClientRefused, Answered: true, Code: "unauthorized_client"}},
		{"scope", switchboard.EINVALID, switchboard.ProviderFailure{Kind: switchboard.FailureRefused, Answered: true, Code: "invalid_scope"}},
		{"nocode", switchboard.EINVALID, switchboard.ProviderFailure{Kind: switchboard.FailureRefused, Answered: true}},
		{"busy", switchboard.EUNAVAILABLE, switchboard.ProviderFailure{Kind: switchboard.FailureTransient, Answered: true, RetryAfter: 30 * time.Second, Code: "slow_down"}},
		// A 5xx is transient whatever code it carries.
		{"down", switchboard.EUNAVAILABLE, switchboard.ProviderFailure{Kind: switchboard.FailureTransient, Answered: true, Code: "invalid_grant"}},
	} {
		t.Run(c.refreshToken, func(t *testing.T) {
			_, err := reg.Refresh(context.Background(), "acme", &switchboard.TokenSet{RefreshToken: c.refreshToken})
			if got := switchboard.ErrorCode(err); got != c.code {
				t.Errorf("code: got %q; want %q", got, c.code)
			}
			if got := switchboard.ProviderFailureOf(err); got != c.want {
				t.Errorf("got %+v; want %+v", got, c.want)
			}
		})
	}

	// No answer at all: transient, and the provider may have acted.
	srv.Close()
	_, err := reg.Refresh(context.Background(), "acme", &switchboard.TokenSet{RefreshToken: "grant"})
	if got, want := switchboard.ProviderFailureOf(err), (switchboard.ProviderFailure{Kind: switchboard.FailureTransient}); got != want {
		t.Errorf("unreachable provider: got %+v; want %+v", got, want)
	}
	// A refusal before any request carries no answer but its code.
	_, err = reg.Refresh(context.Background(), "acme", &switchboard.TokenSet{})
	if got, want := switchboard.ProviderFailureOf(err), (switchboard.ProviderFailure{Kind: switchboard.FailureRefused}); got != want {
		t.Errorf("no refresh token: got %+v; want %+v", got, want)
	}
}
