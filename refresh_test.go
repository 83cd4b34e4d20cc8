package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// fastRefresh makes the refresher's clocks short enough for a test.
func fastRefresh(interval, window time.Duration) func(*Main) {
	return func(m *Main) {
		m.Config.RefreshInterval = interval
		m.Config.RefreshFailureWindow = window
		m.Config.RefreshMinBackoff = 20 * time.Millisecond
		m.Config.RefreshMaxBackoff = 80 * time.Millisecond
		m.Config.RefreshMinGap = 20 * time.Millisecond
	}
}

// subscribeLive subscribes to the workspace's events after the current
// revision.
func subscribeLive(t *testing.T, m *Main) *wsClient {
	t.Helper()
	rev, err := m.store.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("1", eventsSubscription, map[string]any{"after": strconv.FormatUint(rev, 10)})
	return ws
}

// nextKinds reads events until one of kind want arrives, and returns the
// kinds seen (SYNCED and CONFIGURED excluded) up to and including it.
func nextKinds(t *testing.T, ws *wsClient, want string) []string {
	t.Helper()
	var kinds []string
	for i := 0; i < 50; i++ {
		ev, err := ws.nextEvent(15 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s after %v: %v", want, kinds, err)
		}
		prev := ""
		if ev.PreviousStatus != nil {
			prev = *ev.PreviousStatus
		}
		kinds = append(kinds, fmt.Sprintf("%s(%s→%s)", ev.Kind, prev, ev.Integration.Status))
		if ev.Kind == want {
			return kinds
		}
	}
	t.Fatalf("no %s in %v", want, kinds)
	return nil
}

func TestOutageShowsErrorThenRecovers(t *testing.T) {
	m := mustStart(t, "", fastRefresh(100*time.Millisecond, 400*time.Millisecond))
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	ws := subscribeLive(t, m)

	m.sandboxTesting.InjectFault("token", http.StatusServiceUnavailable, 1_000_000)
	kinds := nextKinds(t, ws, "ERROR")
	expect(t, "events during the outage", kinds, []string{"ERROR(CONNECTED→ERROR)"})
	in := integration(t, c, id)
	expect(t, "reason", in["statusReason"], switchboard.ReasonProviderUnavailable)
	expect(t, "badge", in["badge"], map[string]any{"label": "Error", "tone": "DANGER"})

	m.sandboxTesting.InjectFault("token", 0, 0)
	kinds = nextKinds(t, ws, "RECOVERED")
	expect(t, "events after the outage", kinds, []string{"RECOVERED(ERROR→CONNECTED)"})
	expect(t, "reason after", integration(t, c, id)["statusReason"], switchboard.ReasonAuthorized)
}

func TestShortBlipStaysConnected(t *testing.T) {
	m := mustStart(t, "", fastRefresh(100*time.Millisecond, time.Hour))
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	before := m.sandboxTesting.Calls("token")
	m.sandboxTesting.InjectFault("token", http.StatusTooManyRequests, 3)
	waitFor(t, "three failures and a success", func() bool {
		g := m.sandbox.Grants()
		return m.sandboxTesting.Calls("token") >= before+4 && len(g) == 1 && g[0].Refreshes >= 1
	})
	in := integration(t, c, id)
	expect(t, "status through a short blip", in["status"], "CONNECTED")
	evs, _ := m.store.EventsAfter(context.Background(), DemoWorkspaceID, 0, 100)
	for _, e := range evs {
		if e.Kind == switchboard.EventError || e.Kind == switchboard.EventRecovered {
			t.Errorf("a blip shorter than the window committed %s", e.Kind)
		}
	}
}

func TestRevocationAtProviderFlipsToReconnect(t *testing.T) {
	m := mustStart(t, "", fastRefresh(200*time.Millisecond, time.Hour))
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	ws := subscribeLive(t, m)

	if n := m.sandbox.RevokeAccount("ada@sandbox.test"); n != 1 {
		t.Fatalf("revoked %d grants; want 1", n)
	}
	kinds := nextKinds(t, ws, "RECONNECT_REQUIRED")
	expect(t, "events", kinds, []string{"RECONNECT_REQUIRED(CONNECTED→RECONNECT_REQUIRED)"})
	in := integration(t, c, id)
	expect(t, "reason", in["statusReason"], switchboard.ReasonTokenRevoked)
	expect(t, "actions", in["actions"], []any{"RECONNECT", "CONFIGURE", "DISCONNECT"})

	// Reconnecting brings it back, same generation.
	if status, body := reconnect(t, c, id, "ada@sandbox.test"); status != http.StatusOK {
		t.Fatalf("reconnect: %d %s", status, body)
	}
	expect(t, "status after reconnect", integration(t, c, id)["status"], "CONNECTED")
}

// ---- the sync API ----

type syncClient struct {
	t     *testing.T
	url   string
	token string
}

func newSyncClient(t *testing.T, m *Main, scopes ...string) *syncClient {
	t.Helper()
	tok, err := m.service.CreateAPIToken(context.Background(), &switchboard.APIToken{
		WorkspaceID: DemoWorkspaceID, UserID: "usr_sync", Name: "sync engine", Role: switchboard.RoleMember, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return &syncClient{t: t, url: m.URL, token: tok}
}

// call POSTs (or GETs, with a nil body) and decodes the answer.
func (s *syncClient) call(path string, body any) (int, map[string]any) {
	s.t.Helper()
	method, r := http.MethodGet, io.Reader(nil)
	if body != nil {
		b, _ := json.Marshal(body)
		method, r = http.MethodPost, bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url+"/sync/v1/integrations/"+path, r)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func errCode(out map[string]any) string { return str(out, "error.code") }

func TestSyncAPI(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	sc := newSyncClient(t, m, switchboard.ScopeSync)

	t.Run("needs the sync scope", func(t *testing.T) {
		plain := newSyncClient(t, m)
		status, out := plain.call(id+"/token", map[string]any{})
		expect(t, "status", status, http.StatusForbidden)
		expect(t, "code", errCode(out), "FORBIDDEN")
		anon := &syncClient{t: t, url: m.URL, token: "nope"}
		status, out = anon.call(id+"/token", map[string]any{})
		expect(t, "anonymous", status, http.StatusUnauthorized)
		expect(t, "code", errCode(out), "UNAUTHENTICATED")
	})

	status, tok := sc.call(id+"/token", map[string]any{})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	expect(t, "generation", tok["generation"], 1.0)
	expect(t, "token works at the provider", userinfo(t, m, str(tok, "accessToken")), http.StatusOK)

	status, out := sc.call(id+"/progress", map[string]any{"generation": 1, "checkpoint": "cursor-1"})
	expect(t, "progress", status, http.StatusOK)
	expect(t, "checkpoint", out["checkpoint"], "cursor-1")
	d := c.must(`query($id: ID!) { integration(id: $id) { lastSyncedAt } }`, map[string]any{"id": id})
	if str(d, "integration.lastSyncedAt") == "" {
		t.Errorf("lastSyncedAt not visible in GraphQL: %v", d)
	}
	status, out = sc.call(id+"/progress", map[string]any{"generation": 7, "checkpoint": "x"})
	expect(t, "old generation", status, http.StatusConflict)
	expect(t, "code", errCode(out), "CONFLICT")
	status, out = sc.call(id+"/progress", map[string]any{"checkpoint": "x"})
	expect(t, "no generation", status, http.StatusBadRequest)
	expect(t, "field", str(out, "error.field"), "generation")

	// An auth failure with a working grant refreshes and hands out a
	// new, stored token.
	status, fresh := sc.call(id+"/auth-failure", map[string]any{"generation": 1, "status": 401, "body": `{"error":"expired"}`})
	expect(t, "auth-failure", status, http.StatusOK)
	stored, err := m.store.FindTokens(context.Background(), DemoWorkspaceID, id, 1)
	if err != nil || stored.AccessToken != str(fresh, "accessToken") {
		t.Errorf("the handed-out token is not the stored one (err %v)", err)
	}

	// Workers reporting the token that was already replaced get the
	// replacement, without another refresh.
	calls := m.sandboxTesting.Calls("token")
	status, again := sc.call(id+"/auth-failure", map[string]any{"generation": 1, "tokenId": str(tok, "tokenId"), "status": 401})
	expect(t, "stale report", status, http.StatusOK)
	expect(t, "replacement handed out", str(again, "tokenId"), str(fresh, "tokenId"))
	expect(t, "token endpoint calls for a stale report", m.sandboxTesting.Calls("token")-calls, 0)

	// Reconnect keeps the checkpoint.
	if status, body := reconnect(t, c, id, "ada@sandbox.test"); status != http.StatusOK {
		t.Fatalf("reconnect: %d %s", status, body)
	}
	_, st := sc.call(id, nil)
	expect(t, "checkpoint after reconnect", st["checkpoint"], "cursor-1")

	// Disconnect: nothing flows any more.
	disconnect(t, c, id)
	status, out = sc.call(id+"/token", map[string]any{})
	expect(t, "token after disconnect", status, http.StatusConflict)
	expect(t, "code", errCode(out), "CONFLICT")
	status, _ = sc.call(id+"/progress", map[string]any{"generation": 1, "checkpoint": "cursor-2"})
	expect(t, "progress after disconnect", status, http.StatusConflict)

	// Connect after disconnect: a new generation and a fresh checkpoint;
	// the old generation stays refused.
	connect(t, c, "ada@sandbox.test")
	_, st = sc.call(id, nil)
	expect(t, "generation after connect", st["generation"], 2.0)
	expect(t, "checkpoint after connect", st["checkpoint"], "")
	status, _ = sc.call(id+"/token", map[string]any{"generation": 1})
	expect(t, "token for the old generation", status, http.StatusConflict)

	// A revoked grant reported by the sync engine flips the badge at once.
	m.sandbox.RevokeAccount("ada@sandbox.test")
	status, out = sc.call(id+"/auth-failure", map[string]any{"generation": 2, "status": 401})
	expect(t, "auth-failure after revocation", status, http.StatusConflict)
	expect(t, "code", errCode(out), "CONFLICT")
	in := integration(t, c, id)
	expect(t, "status", in["status"], "RECONNECT_REQUIRED")
	expect(t, "reason", in["statusReason"], switchboard.ReasonTokenRevoked)

	status, _ = sc.call("int_nope/token", map[string]any{})
	expect(t, "unknown integration", status, http.StatusNotFound)
}

// TestRefreshesAcrossRestarts: 1,000 refreshes against the sandbox, which
// rotates refresh tokens and revokes the grant on reuse, with the gateway
// restarted every 100: not one invalid_grant.
func TestRefreshesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := func(*Main) {}
	m := mustStart(t, dir, cfg)
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	sc := newSyncClient(t, m, switchboard.ScopeSync)
	const rounds, perRound = 10, 100
	for round := 0; round < rounds; round++ {
		if round > 0 {
			m = mustStart(t, dir, cfg)
			sc.url = m.URL
		}
		for i := 0; i < perRound; i++ {
			status, out := sc.call(id+"/auth-failure", map[string]any{"generation": 1, "status": 401})
			if status != http.StatusOK {
				t.Fatalf("round %d refresh %d: %d %v", round, i, status, out)
			}
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m = mustStart(t, dir, cfg)
	g := m.sandbox.Grants()
	if len(g) != 1 || g[0].Refreshes < rounds*perRound {
		t.Fatalf("sandbox grants %+v; want one grant refreshed at least %d times", g, rounds*perRound)
	}
	expect(t, "status", integration(t, newClient(t, m, m.DemoToken), id)["status"], "CONNECTED")
	fi, err := os.Stat(filepath.Join(dir, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "sandbox state mode", fi.Mode().Perm(), os.FileMode(0o600))
}

func TestOneCRMPerWorkspace(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(file, []byte(`providers:
  - id: acme
    name: Acme CRM
    category: CRM
    clientId: acme
    clientSecret: ${ACME_SECRET}
    authUrl: https://auth.acme.example/authorize
    tokenUrl: https://auth.acme.example/token
    scopes: [contacts.read]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACME_SECRET", "s3cret")
	m := mustStart(t, filepath.Join(dir, "data"), func(m *Main) { m.Config.ProvidersFile = file })
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	e := c.fails("CONFLICT", `mutation { connectIntegration(input: {provider: "acme"}) { authorizationUrl } }`, nil)
	if !strings.Contains(e.Message, "Disconnect Sandbox CRM first") {
		t.Errorf("message %q does not say to disconnect first", e.Message)
	}
	disconnect(t, c, id)
	c.must(`mutation { connectIntegration(input: {provider: "acme"}) { authorizationUrl } }`, nil)
}

// In dev mode the sandbox console acts like a provider's deauthorization
// webhook: a revocation there reaches the card without waiting for the
// refresh interval (an hour by default).
func TestSandboxConsoleRevocationFlipsTheCardAtOnce(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("1", eventsSubscription, nil)
	waitFor(t, "the subscriber to register", func() bool { return m.broker.Stats().Subscribers == 1 })

	// What a person does in the console: revoke the grant.
	grants := m.sandbox.Grants()
	if len(grants) != 1 {
		t.Fatalf("sandbox grants: got %d; want 1", len(grants))
	}
	resp, err := http.PostForm(m.URL+"/sandbox/console/revoke", url.Values{"grant": {grants[0].ID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	ev, err := ws.nextEvent(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "event", ev.Kind, "RECONNECT_REQUIRED")
	expect(t, "integration", ev.Integration.ID, id)
	expect(t, "status", integration(t, c, id)["status"], "RECONNECT_REQUIRED")
}
