package sandbox

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestTestingIsOptIn: only a sandbox built with a Testing answers its
// faults and is counted by it; one built without, as production builds
// it, serves as if no test existed. A restarted sandbox given the same
// Testing keeps its faults and counts.
func TestTestingIsOptIn(t *testing.T) {
	hooks := new(Testing)
	if got := hooks.Calls("token"); got != 0 {
		t.Fatalf("calls of a new Testing: got %d; want 0", got)
	}
	hooks.InjectFault("token", http.StatusServiceUnavailable, 10)
	build := func(h *Testing) http.Handler {
		t.Helper()
		s, err := New(Config{BaseURL: "http://127.0.0.1:8080/sandbox", ClientID: "c", ClientSecret: "s",
			RedirectURIs: []string{"http://127.0.0.1:8080/oauth/callback"}, Testing: h})
		if err != nil {
			t.Fatalf("New: got %v; want nil", err)
		}
		return s
	}
	post := func(h http.Handler) (int, string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/sandbox/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Body)
		return rec.Code, string(body)
	}

	if status, body := post(build(nil)); status != http.StatusUnauthorized || !strings.Contains(body, "invalid_client") {
		t.Errorf("sandbox without hooks: got %d %s; want 401 invalid_client", status, body)
	}
	if got := hooks.Calls("token"); got != 0 {
		t.Errorf("calls after a request to a sandbox without hooks: got %d; want 0", got)
	}
	if status, body := post(build(hooks)); status != http.StatusServiceUnavailable || !strings.Contains(body, "injected fault") {
		t.Errorf("sandbox with hooks: got %d %s; want 503 injected fault", status, body)
	}
	if status, _ := post(build(hooks)); status != http.StatusServiceUnavailable {
		t.Errorf("restarted sandbox with the same hooks: got %d; want 503", status)
	}
	if got := hooks.Calls("token"); got != 2 {
		t.Errorf("calls: got %d; want 2", got)
	}
}
