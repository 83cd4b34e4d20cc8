package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tokens whose hashes testdata/sandbox-v1.json holds. That file is
// what the dev gateway's sandbox wrote to <data>/sandbox.json (its clients
// and a clock stopped at 12:00 UTC): Ada connected the CRM and refreshed
// once, Grace connected her mail. sandbox-v1-crm-only.json is Ada's grant
// as written before the mail client existed, without a client field.
const (
	fixtureCRMUsedRefresh = "X7pwZ37XBIu9wi0TgvxAxnpPLu7Bb4Z3Ad3q_SVX7_M"
	fixtureCRMAccess      = "j88UCy0jaM95c2haXPzdOcOyKuWpjL_moX-9j0AnUaU"
	fixtureCRMRefresh     = "ZM7ai239qS_4-3o4IjW42ZKMRwkgk2ZGjoDqs_MqXzo"
	fixtureMailAccess     = "2flp5H_FK4m7WyVhJHYJdBfDOAMQ92JZJBhsllIRLsY"
	fixtureMailRefresh    = "13MKa5T10Y9NuaXkLD7DHqmVI3pMcTjzt7YuuDPymPw"
)

// fixtureSandbox is a sandbox configured as the dev gateway's, its state
// file a copy of fixture, its clock at 12:01 UTC that day.
func fixtureSandbox(t *testing.T, state string) *Server {
	t.Helper()
	s, err := New(Config{
		BaseURL: "http://127.0.0.1:8080/sandbox", ClientID: "switchboard-dev", ClientSecret: "sandbox-dev-secret",
		MailClientID: "switchboard-dev-mail", MailClientSecret: "sandbox-dev-mail-secret",
		RedirectURIs: []string{"http://127.0.0.1:8080/oauth/callback"}, StateFile: state,
		Now: func() time.Time { return time.Date(2024, 5, 1, 12, 1, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatalf("New: got %v; want nil", err)
	}
	return s
}

func copyFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "sandbox.json")
	if err := os.WriteFile(state, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return state
}

// call sends a request to s and returns the status and the JSON body.
func call(s *Server, method, path, user, pass, bearer string, form url.Values) (int, map[string]any) {
	req := httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return rec.Code, out
}

func TestStateFileFormat(t *testing.T) {
	state := copyFixture(t, "sandbox-v1.json")
	s := fixtureSandbox(t, state)

	type row struct {
		ID, Product, Email string
		Scopes             []string
		Refreshes          int
		AccessExpiry       time.Time
	}
	var got []row
	for _, g := range s.Grants() {
		got = append(got, row{g.ID, g.Product, g.Email, g.Scopes, g.Refreshes, g.AccessExpiry})
	}
	expiry := time.Date(2024, 5, 1, 12, 15, 0, 0, time.UTC)
	want := []row{
		{"g1", CRMName, "ada@sandbox.test", []string{ScopeContactsRead, ScopeDealsRead}, 1, expiry},
		{"g2", MailName, "grace@sandbox.test", []string{ScopeMailRead, ScopeCalendarRead}, 0, expiry},
	}
	if !slices.EqualFunc(got, want, func(a, b row) bool {
		return a.ID == b.ID && a.Product == b.Product && a.Email == b.Email && slices.Equal(a.Scopes, b.Scopes) && a.Refreshes == b.Refreshes && a.AccessExpiry.Equal(b.AccessExpiry)
	}) {
		t.Fatalf("grants loaded: got %+v; want %+v", got, want)
	}

	// The access tokens it names still open userinfo.
	for tok, email := range map[string]string{fixtureCRMAccess: "ada@sandbox.test", fixtureMailAccess: "grace@sandbox.test"} {
		if status, body := call(s, http.MethodGet, "/sandbox/userinfo", "", "", tok, nil); status != http.StatusOK || body["email"] != email {
			t.Errorf("userinfo: got %d %v; want 200 for %s", status, body, email)
		}
	}
	// Each refresh token works for its own client only.
	refresh := func(user, pass, rt string) (int, map[string]any) {
		return call(s, http.MethodPost, "/sandbox/token", user, pass, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	if status, body := refresh("switchboard-dev", "sandbox-dev-secret", fixtureMailRefresh); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("CRM client refreshing the mail token: got %d %v; want 400 invalid_grant", status, body)
	}
	status, body := refresh("switchboard-dev-mail", "sandbox-dev-mail-secret", fixtureMailRefresh)
	if status != http.StatusOK || body["scope"] != "mail.read calendar.read" {
		t.Fatalf("mail refresh: got %d %v; want 200 with the mail scopes", status, body)
	}
	if status, body := refresh("switchboard-dev", "sandbox-dev-secret", fixtureCRMRefresh); status != http.StatusOK {
		t.Fatalf("CRM refresh: got %d %v; want 200", status, body)
	}

	// What it wrote back loads again, with the refreshes counted; the
	// sequence goes on from the file's.
	s = fixtureSandbox(t, state)
	if g := s.Grants(); len(g) != 2 || g[0].Refreshes != 2 || g[1].Refreshes != 1 {
		t.Fatalf("grants after a restart: got %+v; want g1 refreshed twice, g2 once", g)
	}
	// The rotated token of the file is still known as used: presenting it
	// revokes Ada's grant.
	if status, body := refresh("switchboard-dev", "sandbox-dev-secret", fixtureCRMUsedRefresh); status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "already used") {
		t.Errorf("reused refresh token: got %d %v; want 400 already used", status, body)
	}
	if g := s.Grants(); len(g) != 1 || g[0].ID != "g2" {
		t.Errorf("grants after reuse: got %+v; want only g2", g)
	}
}

// TestStateFileWithoutClient: a grant written before the mail client
// existed belongs to the CRM client.
func TestStateFileWithoutClient(t *testing.T) {
	s := fixtureSandbox(t, copyFixture(t, "sandbox-v1-crm-only.json"))
	if g := s.Grants(); len(g) != 1 || g[0].Product != CRMName || g[0].Email != "ada@sandbox.test" {
		t.Fatalf("grants: got %+v; want Ada's CRM grant", g)
	}
	status, body := call(s, http.MethodPost, "/sandbox/token", "switchboard-dev", "sandbox-dev-secret", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fixtureCRMRefresh}})
	if status != http.StatusOK || body["scope"] != "contacts.read deals.read" {
		t.Errorf("CRM refresh: got %d %v; want 200 with the CRM scopes", status, body)
	}
}
