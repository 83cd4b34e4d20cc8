package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/oauthflow/sandbox"
	"github.com/bont/switchboard/switchboard"
)

// ---- harness ----

// mustStart runs a dev-mode gateway on 127.0.0.1:0 with its data in dir
// (a new temporary directory when empty).
func mustStart(t testing.TB, dir string, configure ...func(*Main)) *Main {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	m := NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DataDir = dir
	m.Config.ShutdownTimeout = 5 * time.Second
	m.Stdout = io.Discard
	m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	// Tests drive the gateway hard; the rate-limit tests turn limits on.
	m.Config.TokenRate, m.Config.CallbackRate = -1, -1
	// Tests break the sandbox on purpose through its hooks.
	m.sandboxTesting = new(sandbox.Testing)
	for _, f := range configure {
		f(m)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) Code() string { s, _ := e.Extensions["code"].(string); return s }

type client struct {
	t     testing.TB
	url   string
	token string
}

func newClient(t testing.TB, m *Main, token string) *client {
	return &client{t: t, url: m.URL, token: token}
}

// do runs a GraphQL operation and returns the raw response body, data and
// errors.
func (c *client) do(query string, vars map[string]any) (raw []byte, data map[string]any, errs []gqlError) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest("POST", c.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	raw, _ = io.ReadAll(resp.Body)
	var out struct {
		Data   map[string]any `json:"data"`
		Errors []gqlError     `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		c.t.Fatalf("decode %s: %v", raw, err)
	}
	return raw, out.Data, out.Errors
}

// must runs an operation that must succeed.
func (c *client) must(query string, vars map[string]any) map[string]any {
	c.t.Helper()
	_, data, errs := c.do(query, vars)
	if len(errs) > 0 {
		c.t.Fatalf("%s: %+v", firstLine(query), errs)
	}
	return data
}

// fails runs an operation that must fail with code.
func (c *client) fails(code, query string, vars map[string]any) gqlError {
	c.t.Helper()
	_, _, errs := c.do(query, vars)
	if len(errs) == 0 {
		c.t.Fatalf("%s: succeeded; want %s", firstLine(query), code)
	}
	if errs[0].Code() != code {
		c.t.Fatalf("%s: got %s (%s); want %s", firstLine(query), errs[0].Code(), errs[0].Message, code)
	}
	return errs[0]
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i > 0 {
		return s[:i]
	}
	return s
}

func get(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, _ := strconv.Atoi(k)
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func str(m map[string]any, path string) string { s, _ := get(m, path).(string); return s }

const integrationFields = `id status statusReason statusMessage badge { label tone } actions
	account { id name email } accountHistory { account { email } from until }
	grantedScopes missingScopes connectedAt revision disconnectWarning
	provider { id name category } settings { key value }`

// authorize opens an authorization URL the way the OAuth window would,
// in a browser of its own (a cookie jar): the gateway's start link, the
// sandbox's redirect to /oauth/callback, and returns the callback page's
// status and body.
func authorize(t testing.TB, authURL string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return fetch(t, &http.Client{Jar: jar, Timeout: 10 * time.Second}, authURL)
}

// fetch GETs u with hc and returns the status and body.
func fetch(t testing.TB, hc *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// oauthBrowser is a client with a cookie jar of its own that does not
// follow redirects: one browser walking an OAuth flow step by step.
func oauthBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// redirect GETs u with browser and returns where it redirects to.
func redirect(t testing.TB, browser *http.Client, u string) string {
	t.Helper()
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || loc == "" {
		t.Fatalf("GET %s: got %d %s; want a redirect", u, resp.StatusCode, b)
	}
	return loc
}

// startFlow opens the start link authURL (what connect and reconnect
// return) in browser, as the OAuth window does first, and returns the
// provider's authorization URL it redirects to. The browser now holds the
// flow's cookie.
func startFlow(t testing.TB, browser *http.Client, authURL string) *url.URL {
	t.Helper()
	u, err := url.Parse(redirect(t, browser, authURL))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// callbackURL walks a flow in browser (the start link, then the sandbox,
// which approves at once with a login hint) up to the redirect to
// /oauth/callback and returns that URL, without opening it.
func callbackURL(t testing.TB, browser *http.Client, authURL string) string {
	t.Helper()
	u := authURL
	for range 5 {
		u = redirect(t, browser, u)
		if p, err := url.Parse(u); err == nil && p.Path == "/oauth/callback" {
			return u
		}
	}
	t.Fatalf("%s: no redirect to /oauth/callback within 5 hops", authURL)
	return ""
}

// connect connects the sandbox provider as the account with email, and
// returns the integration.
func connect(t testing.TB, c *client, email string) map[string]any {
	t.Helper()
	d := c.must(`mutation($email: String) { connectIntegration(input: {provider: "sandbox", loginHint: $email}) { authorizationUrl expiresAt integration { id } } }`,
		map[string]any{"email": email})
	status, body := authorize(t, str(d, "connectIntegration.authorizationUrl"))
	if status != http.StatusOK {
		t.Fatalf("callback: got %d %s; want 200", status, body)
	}
	return integration(t, c, str(d, "connectIntegration.integration.id"))
}

func reconnect(t *testing.T, c *client, id, email string) (int, string) {
	t.Helper()
	d := c.must(`mutation($id: ID!, $email: String) { reconnectIntegration(input: {id: $id, loginHint: $email}) { authorizationUrl } }`,
		map[string]any{"id": id, "email": email})
	return authorize(t, str(d, "reconnectIntegration.authorizationUrl"))
}

func integration(t testing.TB, c *client, id string) map[string]any {
	t.Helper()
	d := c.must(`query($id: ID!) { integration(id: $id) { `+integrationFields+` } }`, map[string]any{"id": id})
	in, _ := d["integration"].(map[string]any)
	if in == nil {
		t.Fatalf("integration %s: not found", id)
	}
	return in
}

func disconnect(t *testing.T, c *client, id string) map[string]any {
	t.Helper()
	d := c.must(`mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true}) { `+integrationFields+` } }`, map[string]any{"id": id})
	return d["disconnectIntegration"].(map[string]any)
}

func configure(c *client, id, key, value string) ([]byte, map[string]any, []gqlError) {
	return c.do(`mutation($id: ID!, $k: String!, $v: String!) { configureIntegration(input: {id: $id, settings: [{key: $k, value: $v}]}) { revision settings { key value } } }`,
		map[string]any{"id": id, "k": key, "v": value})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: got %v; want %v", what, got, want)
	}
}

// ---- websocket client ----

type wsClient struct {
	t     *testing.T
	conn  *websocket.Conn
	proto string
}

type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func dialWS(t *testing.T, m *Main, proto, token string, dialer *websocket.Dialer) (*wsClient, error) {
	t.Helper()
	if dialer == nil {
		dialer = &websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	}
	dialer.Subprotocols = []string{proto}
	u := "ws" + strings.TrimPrefix(m.URL, "http") + "/graphql"
	conn, _, err := dialer.Dial(u, http.Header{"Origin": {m.URL}})
	if err != nil {
		return nil, err
	}
	c := &wsClient{t: t, conn: conn, proto: proto}
	t.Cleanup(func() { conn.Close() })
	c.send(wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"authorization": "Bearer " + token})})
	msg, err := c.read(5 * time.Second)
	if err != nil {
		return c, err
	}
	if msg.Type != "connection_ack" {
		return c, fmt.Errorf("got %s %s; want connection_ack", msg.Type, msg.Payload)
	}
	return c, nil
}

func mustJSON(v any) json.RawMessage { b, _ := json.Marshal(v); return b }

func (c *wsClient) send(m wsMessage) {
	c.t.Helper()
	if err := c.conn.WriteJSON(m); err != nil {
		c.t.Fatalf("ws write: %v", err)
	}
}

// read returns the next message that is not a keep-alive.
func (c *wsClient) read(timeout time.Duration) (wsMessage, error) {
	for {
		c.conn.SetReadDeadline(time.Now().Add(timeout))
		var m wsMessage
		if err := c.conn.ReadJSON(&m); err != nil {
			return m, err
		}
		switch m.Type {
		case "ka", "pong":
			continue
		case "ping":
			_ = c.conn.WriteJSON(wsMessage{Type: "pong"})
			continue
		}
		return m, nil
	}
}

func (c *wsClient) subscribe(id, query string, vars map[string]any) {
	typ := "subscribe"
	if c.proto == "graphql-ws" {
		typ = "start"
	}
	c.send(wsMessage{ID: id, Type: typ, Payload: mustJSON(map[string]any{"query": query, "variables": vars})})
}

type event struct {
	Revision       string
	Kind           string
	PreviousStatus *string
	Integration    struct {
		ID     string
		Status string
	}
}

// nextEvent reads the next event of subscription id.
func (c *wsClient) nextEvent(timeout time.Duration) (event, error) {
	m, err := c.read(timeout)
	if err != nil {
		return event{}, err
	}
	if m.Type != "next" && m.Type != "data" {
		return event{}, fmt.Errorf("got %s %s; want next", m.Type, m.Payload)
	}
	var p struct {
		Data struct {
			IntegrationEvents event
		}
		Errors []gqlError
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return event{}, err
	}
	if len(p.Errors) > 0 {
		return event{}, fmt.Errorf("errors: %+v", p.Errors)
	}
	return p.Data.IntegrationEvents, nil
}

const eventsSubscription = `subscription($after: Revision) { integrationEvents(afterRevision: $after) { revision at kind previousStatus integration { id status } } }`

// storeRevisions lists the workspace's changelog revisions after `after`.
func storeRevisions(t *testing.T, m *Main, ws string, after uint64) []string {
	t.Helper()
	var out []string
	for {
		evs, err := m.store.EventsAfter(context.Background(), ws, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			out = append(out, strconv.FormatUint(e.Revision, 10))
			after = e.Revision
		}
		if len(evs) < 1000 {
			return out
		}
	}
}

// ---- tests ----

func TestConnectThroughSandbox(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)

	d := c.must(`{ providers { id name category available settingsLocation settingDefinitions { key type default } } }`, nil)
	expect(t, "sandbox provider", str(d, "providers.0.id"), "sandbox")
	expect(t, "available", get(d, "providers.0.available"), true)

	in := connect(t, c, "ada@sandbox.test")
	expect(t, "status", in["status"], "CONNECTED")
	expect(t, "badge", get(in, "badge.label"), "Connected")
	expect(t, "tone", get(in, "badge.tone"), "SUCCESS")
	expect(t, "actions", in["actions"], []any{"CONFIGURE", "DISCONNECT"})
	expect(t, "account", get(in, "account.email"), "ada@sandbox.test")
	expect(t, "history", len(in["accountHistory"].([]any)), 1)
	expect(t, "scopes", in["grantedScopes"], []any{"contacts.read", "deals.read"})
	expect(t, "warning", in["disconnectWarning"], switchboard.CRMDisconnectWarning)
	if in["connectedAt"] == nil {
		t.Error("connectedAt is null")
	}

	// No token reaches a GraphQL response.
	tok, err := m.store.FindTokens(context.Background(), DemoWorkspaceID, in["id"].(string), 1)
	if err != nil {
		t.Fatalf("tokens of generation 1: %v", err)
	}
	raw, _, _ := c.do(`{ integrations { `+integrationFields+` } }`, nil)
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken} {
		if secret == "" || bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("token missing from the store or present in a response")
		}
	}

	// Connecting again while connected is refused; reconnect is the way.
	c.fails(switchboard.ECONFLICT, `mutation { connectIntegration(input: {provider: "sandbox"}) { authorizationUrl } }`, nil)
	c.fails(switchboard.ENOTFOUND, `mutation { connectIntegration(input: {provider: "nope"}) { authorizationUrl } }`, nil)
	c.fails(switchboard.EINVALID, `mutation { connectIntegration(input: {provider: "sandbox", returnTo: "https://evil.example/"}) { authorizationUrl } }`, nil)
}

func TestMissingScopesIsError(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	in := connect(t, c, "limited@sandbox.test")
	expect(t, "status", in["status"], "ERROR")
	expect(t, "reason", in["statusReason"], "MISSING_SCOPES")
	expect(t, "missing", in["missingScopes"], []any{"deals.read"})
	if !strings.Contains(str(in, "statusMessage"), "deals.read") {
		t.Errorf("message does not name the missing scope: %q", in["statusMessage"])
	}
	expect(t, "actions", in["actions"], []any{"RECONNECT", "CONFIGURE", "DISCONNECT"})

	// Reconnecting as an admin who still has the scopes fixes it.
	if status, body := reconnect(t, c, in["id"].(string), "ada@sandbox.test"); status != 200 {
		t.Fatalf("reconnect: %d %s", status, body)
	}
	in = integration(t, c, in["id"].(string))
	expect(t, "status", in["status"], "CONNECTED")
	expect(t, "missing", in["missingScopes"], []any{})
}

func TestReconnectAsAnotherAccount(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	in := connect(t, c, "ada@sandbox.test")
	id := in["id"].(string)

	if _, err := m.service.Configure(ctxAs(DemoUserID), switchboard.ConfigureInput{ID: id, Settings: []switchboard.SettingInput{{Key: "pipeline", Value: "all"}}}); err != nil {
		t.Fatal(err)
	}
	if status, body := reconnect(t, c, id, "grace@sandbox.test"); status != 200 {
		t.Fatalf("reconnect: %d %s", status, body)
	}
	in = integration(t, c, id)
	expect(t, "status", in["status"], "CONNECTED")
	expect(t, "account", get(in, "account.email"), "grace@sandbox.test")
	hist := in["accountHistory"].([]any)
	if len(hist) != 2 {
		t.Fatalf("history: got %v; want two periods", hist)
	}
	expect(t, "first account", get(in, "accountHistory.0.account.email"), "ada@sandbox.test")
	if get(in, "accountHistory.0.until") == nil || get(in, "accountHistory.1.until") != nil {
		t.Errorf("periods: got %v", hist)
	}
	// Settings and generation survive a reconnect.
	cur, _ := m.store.FindIntegrationByID(context.Background(), DemoWorkspaceID, id)
	expect(t, "generation", cur.Generation, 1)
	expect(t, "setting", cur.SettingValues["pipeline"], "all")

	evs, _ := m.store.EventsAfter(context.Background(), DemoWorkspaceID, 0, 100)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, string(e.Kind))
	}
	expect(t, "kinds", kinds, []string{"CREATED", "CONNECTED", "CONFIGURED", "ACCOUNT_CHANGED"})
}

func ctxAs(user string) context.Context {
	return switchboard.NewContextWithPrincipal(context.Background(), &switchboard.Principal{WorkspaceID: DemoWorkspaceID, UserID: user, Role: switchboard.RoleAdmin})
}

func TestDisconnectThenImmediateReconnectWithLateTeardown(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	in := connect(t, c, "ada@sandbox.test")
	id := in["id"].(string)
	ctx := context.Background()
	gen1, err := m.store.FindTokens(ctx, DemoWorkspaceID, id, 1)
	if err != nil {
		t.Fatal(err)
	}

	// Disconnect needs confirmation, and says what it will do.
	e := c.fails(switchboard.ECONFIRM, `mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: false}) { id } }`, map[string]any{"id": id})
	if !strings.Contains(e.Message, switchboard.CRMDisconnectWarning) {
		t.Errorf("confirmation message: got %q", e.Message)
	}

	// The provider's revocation endpoint hangs: the teardown is late.
	release := m.sandboxTesting.HoldRevocations()
	out := disconnect(t, c, id)
	expect(t, "status", out["status"], "DISCONNECTED")
	expect(t, "badge", get(out, "badge.label"), "Not connected")
	expect(t, "actions", out["actions"], []any{"CONNECT"})
	waitFor(t, "the teardown to reach the provider", func() bool { return m.sandboxTesting.Calls("revoke") > 0 })

	// Connect again at once, as another account: a new generation.
	in = connect(t, c, "grace@sandbox.test")
	expect(t, "same card", in["id"], id)
	expect(t, "status", in["status"], "CONNECTED")
	gen2, err := m.store.FindTokens(ctx, DemoWorkspaceID, id, 2)
	if err != nil {
		t.Fatalf("tokens of generation 2: %v", err)
	}

	// Now the old teardown finishes.
	release()
	waitFor(t, "the old generation's tokens to be deleted", func() bool {
		_, err := m.store.FindTokens(ctx, DemoWorkspaceID, id, 1)
		return switchboard.ErrorCode(err) == switchboard.ENOTFOUND
	})
	jobs, _ := m.store.DueTeardowns(ctx, time.Now().Add(time.Hour), 10)
	expect(t, "teardown jobs left", len(jobs), 0)

	// The new connection is untouched: same status, same tokens, and the
	// provider still honours them while the old grant is revoked.
	in = integration(t, c, id)
	expect(t, "status after late teardown", in["status"], "CONNECTED")
	expect(t, "account", get(in, "account.email"), "grace@sandbox.test")
	still, err := m.store.FindTokens(ctx, DemoWorkspaceID, id, 2)
	if err != nil || still.AccessToken != gen2.AccessToken || still.RefreshToken != gen2.RefreshToken {
		t.Fatalf("generation 2 tokens changed: %v", err)
	}
	expect(t, "new grant works", userinfo(t, m, gen2.AccessToken), http.StatusOK)
	expect(t, "old grant revoked", userinfo(t, m, gen1.AccessToken), http.StatusUnauthorized)
}

func userinfo(t *testing.T, m *Main, accessToken string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", m.URL+"/sandbox/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestTeardownRetriesUnavailableProvider(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	m.sandboxTesting.InjectFault("revoke", http.StatusServiceUnavailable, 1)
	disconnect(t, c, id)
	waitFor(t, "a retried revocation", func() bool { return m.sandboxTesting.Calls("revoke") >= 2 })
	waitFor(t, "the tokens to be deleted", func() bool {
		_, err := m.store.FindTokens(context.Background(), DemoWorkspaceID, id, 1)
		return switchboard.ErrorCode(err) == switchboard.ENOTFOUND
	})
}

func TestCallbackFailuresChangeNothing(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	in := connect(t, c, "ada@sandbox.test")
	id := in["id"].(string)
	before := in["revision"]

	// One browser starts every flow and sends every callback, so each
	// callback carries its flow's cookie.
	browser := oauthBrowser()
	start := func() string {
		d := c.must(`mutation($id: ID!) { reconnectIntegration(input: {id: $id}) { authorizationUrl } }`, map[string]any{"id": id})
		return startFlow(t, browser, str(d, "reconnectIntegration.authorizationUrl")).Query().Get("state")
	}
	callback := func(q url.Values) (int, string) {
		return fetch(t, browser, m.URL+"/oauth/callback?"+q.Encode())
	}

	tests := []struct {
		name   string
		params func() url.Values
		status int
		says   string
	}{
		{"access denied", func() url.Values { return url.Values{"state": {start()}, "error": {"access_denied"}} }, 400, "declined"},
		{"no state", func() url.Values { return url.Values{"code": {"x"}} }, 400, "without a state"},
		{"forged state", func() url.Values { return url.Values{"state": {"forged"}, "code": {"x"}} }, 400, "unknown or was already used"},
		{"no code", func() url.Values { return url.Values{"state": {start()}} }, 400, "without an authorization code"},
		{"bad code", func() url.Values { return url.Values{"state": {start()}, "code": {"not-a-code"}} }, 400, "Could not finish signing in"},
		{"provider error", func() url.Values {
			return url.Values{"state": {start()}, "error": {"server_error"}, "error_description": {"<b>boom</b>"}}
		}, 400, "refused the authorization (server_error): &lt;b&gt;boom&lt;/b&gt;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := callback(tt.params())
			if status != tt.status || !strings.Contains(body, tt.says) {
				t.Errorf("got %d %q; want %d saying %q", status, body, tt.status, tt.says)
			}
		})
	}

	t.Run("replayed state", func(t *testing.T) {
		d := c.must(`mutation($id: ID!) { reconnectIntegration(input: {id: $id, loginHint: "ada@sandbox.test"}) { authorizationUrl } }`, map[string]any{"id": id})
		cb := callbackURL(t, browser, str(d, "reconnectIntegration.authorizationUrl"))
		if status, body := fetch(t, browser, cb); status != 200 {
			t.Fatalf("first use: %d %s", status, body)
		}
		if status, body := authorize(t, cb); status != 400 || !strings.Contains(body, "already used") {
			t.Errorf("replay: got %d %q; want 400", status, body)
		}
		before = integration(t, c, id)["revision"]
	})

	t.Run("expired state", func(t *testing.T) {
		m.service.StateTTL = time.Nanosecond
		defer func() { m.service.StateTTL = 0 }()
		// Its start link has expired too, so read the state from the store.
		d := c.must(`mutation($id: ID!) { reconnectIntegration(input: {id: $id}) { authorizationUrl } }`, map[string]any{"id": id})
		st, err := m.store.FindAuthStart(context.Background(), path.Base(str(d, "reconnectIntegration.authorizationUrl")))
		if err != nil {
			t.Fatal(err)
		}
		status, body := callback(url.Values{"state": {st.State}, "code": {"x"}})
		if status != 400 || !strings.Contains(body, "took longer than") {
			t.Errorf("got %d %q; want 400 saying it expired", status, body)
		}
	})

	expect(t, "revision unchanged", integration(t, c, id)["revision"], before)
}

func TestConfigure(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	in := connect(t, c, "ada@sandbox.test")
	id := in["id"].(string)
	rev := in["revision"].(string)

	e := c.fails(switchboard.EINVALID, `mutation($id: ID!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: "30"}, {key: "colour", value: "red"}]}) { id } }`, map[string]any{"id": id})
	expect(t, "field", e.Extensions["field"], "colour")
	c.fails(switchboard.EINVALID, `mutation($id: ID!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: "2"}]}) { id } }`, map[string]any{"id": id})
	expect(t, "revision after bad input", integration(t, c, id)["revision"], rev)

	d := c.must(`mutation($id: ID!, $rev: Revision) { configureIntegration(input: {id: $id, expectedRevision: $rev, settings: [{key: "sync_interval_minutes", value: "30"}, {key: "pipeline", value: "renewals"}]}) { revision settings { key value } } }`,
		map[string]any{"id": id, "rev": rev})
	expect(t, "settings", get(d, "configureIntegration.settings"), []any{
		map[string]any{"key": "sync_interval_minutes", "value": "30"},
		map[string]any{"key": "sync_deals", "value": "true"},
		map[string]any{"key": "pipeline", "value": "renewals"},
	})
	// The same expected revision is stale now.
	c.fails(switchboard.ECONFLICT, `mutation($id: ID!, $rev: Revision) { configureIntegration(input: {id: $id, expectedRevision: $rev, settings: [{key: "sync_deals", value: "false"}]}) { id } }`,
		map[string]any{"id": id, "rev": rev})
	c.fails(switchboard.EINVALID, `mutation($id: ID!) { configureIntegration(input: {id: $id, expectedRevision: "-1", settings: []}) { id } }`, map[string]any{"id": id})
	c.fails(switchboard.ENOTFOUND, `mutation { configureIntegration(input: {id: "int_nope", settings: []}) { id } }`, nil)

	disconnect(t, c, id)
	c.fails(switchboard.ECONFLICT, `mutation($id: ID!) { configureIntegration(input: {id: $id, settings: [{key: "sync_deals", value: "false"}]}) { id } }`, map[string]any{"id": id})
}

func TestAuthentication(t *testing.T) {
	m := mustStart(t, "")
	for _, token := range []string{"", "sbt_wrong", "garbage"} {
		_, _, errs := newClient(t, m, token).do(`{ integrations { id } }`, nil)
		if len(errs) == 0 || errs[0].Code() != switchboard.EUNAUTHENTICATED {
			t.Errorf("token %q: got %+v; want UNAUTHENTICATED", token, errs)
		}
	}
	if _, err := dialWS(t, m, "graphql-transport-ws", "sbt_wrong", nil); err == nil {
		t.Error("websocket with a bad token was acknowledged")
	} else if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4403 {
		t.Errorf("websocket with a bad token: got %v; want close 4403", err)
	}
}

func TestSubscriptionReplayThenLiveWithoutGap(t *testing.T) {
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		t.Run(proto, func(t *testing.T) {
			m := mustStart(t, "")
			c := newClient(t, m, m.DemoToken)
			id := connect(t, c, "ada@sandbox.test")["id"].(string)

			// Commits keep landing while the subscriber replays.
			const writers, perWriter = 8, 15
			var wg sync.WaitGroup
			start := make(chan struct{})
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					<-start
					for i := 0; i < perWriter; i++ {
						_, _, errs := configure(c, id, "sync_interval_minutes", strconv.Itoa(5+w*perWriter+i))
						if len(errs) > 0 {
							t.Errorf("configure: %+v", errs)
							return
						}
					}
				}(w)
			}
			close(start)
			time.Sleep(30 * time.Millisecond)

			ws, err := dialWS(t, m, proto, m.DemoToken, nil)
			if err != nil {
				t.Fatal(err)
			}
			ws.subscribe("1", eventsSubscription, map[string]any{"after": "0"})

			// CREATED, CONNECTED, then one event per configure (every
			// value is new).
			total := 2 + writers*perWriter
			var got []string
			seen := map[string]bool{}
			for len(got) < total {
				ev, err := ws.nextEvent(10 * time.Second)
				if err != nil {
					t.Fatalf("after %d events: %v", len(got), err)
				}
				if seen[ev.Revision] {
					t.Fatalf("duplicate revision %s", ev.Revision)
				}
				seen[ev.Revision] = true
				if n := len(got); n > 0 {
					prev, _ := strconv.ParseUint(got[n-1], 10, 64)
					cur, _ := strconv.ParseUint(ev.Revision, 10, 64)
					if cur <= prev {
						t.Fatalf("revision %d after %d", cur, prev)
					}
				}
				got = append(got, ev.Revision)
			}
			wg.Wait()
			expect(t, "revisions", got, storeRevisions(t, m, DemoWorkspaceID, 0))
		})
	}
}

func TestSubscriptionResumesAndCompacts(t *testing.T) {
	m := mustStart(t, "", func(m *Main) { m.Config.ChangelogMaxEvents = 5 })
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	var revs []string
	for i := 0; i < 8; i++ {
		_, d, errs := configure(c, id, "sync_interval_minutes", strconv.Itoa(10+i))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		revs = append(revs, str(d, "configureIntegration.revision"))
	}
	revs = revs[len(revs)-5:] // what retention keeps
	after, _ := strconv.ParseUint(revs[0], 10, 64)
	expect(t, "retained", storeRevisions(t, m, DemoWorkspaceID, after-1), revs)

	ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("old", eventsSubscription, map[string]any{"after": "0"})
	msg, err := ws.read(5 * time.Second)
	if err != nil || !strings.Contains(string(msg.Payload), `"code":"COMPACTED"`) {
		t.Fatalf("below retention: got %s %s %v; want error COMPACTED", msg.Type, msg.Payload, err)
	}
	if msg, err := ws.read(5 * time.Second); err != nil || msg.Type != "complete" || msg.ID != "old" {
		t.Fatalf("after COMPACTED: got %s %v; want complete", msg.Type, err)
	}

	// Resuming from a retained revision replays exactly what follows it.
	from := revs[1]
	ws.subscribe("resume", eventsSubscription, map[string]any{"after": from})
	for _, want := range revs[2:] {
		ev, err := ws.nextEvent(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, "replayed revision", ev.Revision, want)
	}
	// Then live.
	configure(c, id, "sync_interval_minutes", "99")
	ev, err := ws.nextEvent(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "live kind", ev.Kind, "CONFIGURED")
}

func TestWorkspaceIsolation(t *testing.T) {
	m := mustStart(t, "")
	a := newClient(t, m, m.DemoToken)
	aID := connect(t, a, "ada@sandbox.test")["id"].(string)

	ctx := context.Background()
	if err := m.store.CreateWorkspace(ctx, &switchboard.Workspace{ID: "ws_b", Name: "B", Plan: switchboard.PlanPure}); err != nil {
		t.Fatal(err)
	}
	tokB, err := m.service.CreateAPIToken(ctx, &switchboard.APIToken{WorkspaceID: "ws_b", UserID: "usr_b", Role: switchboard.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	b := newClient(t, m, tokB)
	wsB, err := dialWS(t, m, "graphql-transport-ws", tokB, nil)
	if err != nil {
		t.Fatal(err)
	}
	wsB.subscribe("1", eventsSubscription, map[string]any{"after": "0"})

	d := b.must(`{ integrations { id } }`, nil)
	expect(t, "B's list", len(d["integrations"].([]any)), 0)
	d = b.must(`query($id: ID!) { integration(id: $id) { id } }`, map[string]any{"id": aID})
	if d["integration"] != nil {
		t.Errorf("B read A's integration: %v", d)
	}
	b.fails(switchboard.ENOTFOUND, `mutation($id: ID!) { configureIntegration(input: {id: $id, settings: []}) { id } }`, map[string]any{"id": aID})
	b.fails(switchboard.ENOTFOUND, `mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true}) { id } }`, map[string]any{"id": aID})
	b.fails(switchboard.ENOTFOUND, `mutation($id: ID!) { reconnectIntegration(input: {id: $id}) { authorizationUrl } }`, map[string]any{"id": aID})
	expect(t, "A still connected", integration(t, a, aID)["status"], "CONNECTED")

	// A's changes never reach B's subscription; B's own do.
	configure(a, aID, "pipeline", "all")
	bID := connect(t, b, "grace@sandbox.test")["id"].(string)
	for {
		ev, err := wsB.nextEvent(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Integration.ID != bID {
			t.Fatalf("B received an event of %s", ev.Integration.ID)
		}
		if ev.Kind == "CONNECTED" {
			break
		}
	}
}

func TestStalledSubscriberDoesNotDelayOthers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := mustStart(t, "", func(m *Main) {
		m.Config.SubscriberQueue = 16
		m.Config.WebsocketWriteTimeout = time.Second
		// Small socket buffers on both ends, so a stalled reader's socket
		// fills after a few events rather than megabytes.
		m.Listener = smallBufferListener{ln}
	})
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)

	// The stalled client subscribes and then never reads again; a small
	// receive buffer makes its socket fill up soon.
	small := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: (&net.Dialer{
		Control: func(network, address string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		},
	}).DialContext}
	stalled, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, small)
	if err != nil {
		t.Fatal(err)
	}
	stalled.subscribe("1", `subscription { integrationEvents { revision integration { disconnectWarning settings { key value } accountHistory { account { id name email } from } } } }`, nil)
	healthy, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	healthy.subscribe("1", eventsSubscription, nil)
	time.Sleep(100 * time.Millisecond)

	var received []string
	for i := 0; m.broker.Stats().Cutoffs == 0 && m.ws.Count() > 1; i++ {
		if i > 20000 {
			t.Fatal("the stalled subscriber was never cut off")
		}
		_, d, errs := configure(c, id, "sync_interval_minutes", strconv.Itoa(5+i%1000))
		if len(errs) > 0 {
			t.Fatalf("configure: %+v", errs)
		}
		ev, err := healthy.nextEvent(5 * time.Second)
		if err != nil {
			t.Fatalf("healthy subscriber after %d events: %v", i, err)
		}
		expect(t, "healthy subscriber revision", ev.Revision, str(d, "configureIntegration.revision"))
		received = append(received, ev.Revision)
	}
	if len(received) == 0 {
		t.Fatal("nothing was published")
	}
}

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	m := mustStart(t, dir)
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	configure(c, id, "pipeline", "all")
	token := m.DemoToken
	before := storeRevisions(t, m, DemoWorkspaceID, 0)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := mustStart(t, dir)
	expect(t, "demo token", m2.DemoToken, token)
	c2 := newClient(t, m2, m2.DemoToken)
	in := integration(t, c2, id)
	expect(t, "status", in["status"], "CONNECTED")
	expect(t, "setting", get(in, "settings.2.value"), "all")

	ws, err := dialWS(t, m2, "graphql-transport-ws", m2.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("1", eventsSubscription, map[string]any{"after": "0"})
	var got []string
	for range before {
		ev, err := ws.nextEvent(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Revision)
	}
	expect(t, "replayed history", got, before)
	configure(c2, id, "pipeline", "sales")
	ev, err := ws.nextEvent(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.Atoi(before[len(before)-1])
	expect(t, "next revision continues", ev.Revision, strconv.Itoa(last+1))
}

func TestShutdownClosesWebsocketsWith1001(t *testing.T) {
	m := mustStart(t, "")
	ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("1", eventsSubscription, nil)
	time.Sleep(50 * time.Millisecond)
	go m.Close()
	for {
		_, err := ws.read(5 * time.Second)
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("got %v; want close 1001", err)
		}
		return
	}
}

func TestHealthz(t *testing.T) {
	m := mustStart(t, "")
	resp, err := http.Get(m.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	expect(t, "status", resp.StatusCode, 200)
}

func TestBackupOfALiveStoreAndRestore(t *testing.T) {
	dir := t.TempDir()
	m := mustStart(t, dir)
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	configure(c, id, "pipeline", "all")

	// Writers keep committing while the backup is taken.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			configure(c, id, "sync_interval_minutes", strconv.Itoa(5+i%100))
		}
	}()
	backup := filepath.Join(t.TempDir(), "backup.db")
	var out, errOut bytes.Buffer
	code := runBackup([]string{"-data", dir, "-o", backup}, &out, &errOut)
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(out.String(), "from the running gateway") {
		t.Fatalf("backup: exit %d, %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := runCheck([]string{"-data", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "through the running gateway") {
		t.Fatalf("check of the live store: exit %d, %q %q", code, out.String(), errOut.String())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// Restore: a new data directory with the backup and the same key.
	restored := t.TempDir()
	copyFile(t, backup, filepath.Join(restored, "switchboard.db"))
	copyFile(t, filepath.Join(dir, "secret.key"), filepath.Join(restored, "secret.key"))
	out.Reset()
	if code := runCheck([]string{"-data", restored}, &out, &errOut); code != 0 {
		t.Fatalf("check of the restored file: exit %d, %q %q", code, out.String(), errOut.String())
	}
	m2 := mustStart(t, restored)
	in := integration(t, newClient(t, m2, m2.DemoToken), id)
	expect(t, "restored status", in["status"], "CONNECTED")
	expect(t, "restored setting", get(in, "settings.2.value"), "all")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsAndReadiness(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	connect(t, c, "ada@sandbox.test")
	ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	// From the start: the connect's events are replayed, rendered by the
	// compiled renderer.
	ws.subscribe("1", eventsSubscription, map[string]any{"after": "0"})
	if _, err := ws.nextEvent(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscriber to register", func() bool { return m.broker.Stats().Subscribers == 1 })

	resp, err := http.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`switchboard_integrations{status="CONNECTED"} 1`,
		"switchboard_subscribers 1",
		"switchboard_websockets 1",
		"switchboard_replay_history_events ",
		"switchboard_replay_history_bytes ",
		`switchboard_commit_duration_seconds_count{outcome="ok"}`,
		`switchboard_http_requests_total{code="200",route="/graphql"}`,
		"go_goroutines",
		`switchboard_event_renders_total{by="executor"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^switchboard_event_renders_total\{by="compiled"\} [1-9]`).Match(body) {
		t.Errorf("/metrics counts no compiled render:\n%s", body)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on the response")
	}

	status := func(path string) int {
		resp, err := http.Get(m.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	expect(t, "readyz", status("/readyz"), 200)
	m.draining.Store(true)
	expect(t, "readyz while draining", status("/readyz"), 503)
	expect(t, "healthz while draining", status("/healthz"), 200)
	m.draining.Store(false)
}

// A subscriber that falls behind a burst is closed with 1013 and a reason
// naming where to resume; resuming from the last revision it received
// loses nothing and repeats nothing.
func TestCutOffSubscriberIsToldWhereToResume(t *testing.T) {
	m := mustStart(t, "", func(m *Main) { m.Config.SubscriberQueue = 1 })
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	start, _ := m.store.Revision(context.Background())

	ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("1", eventsSubscription, nil)
	waitFor(t, "the subscriber to register", func() bool { return m.broker.Stats().Subscribers == 1 })

	// Bursts of concurrent commits land in one batch and are published
	// back to back, faster than one event fits the queue.
	var got []string
	var closeErr *websocket.CloseError
	for round := 0; closeErr == nil; round++ {
		if round == 50 {
			t.Fatal("the subscriber was never cut off")
		}
		var wg sync.WaitGroup
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				configure(c, id, "sync_interval_minutes", strconv.Itoa(5+(round*32+w)%1400))
			}(w)
		}
		wg.Wait()
		for {
			ev, err := ws.nextEvent(2 * time.Second)
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					closeErr = ce
				}
				break
			}
			got = append(got, ev.Revision)
		}
	}
	if closeErr.Code != 1013 || !strings.Contains(closeErr.Text, "resume after revision") {
		t.Fatalf("got close %d %q; want 1013 naming the revision to resume from", closeErr.Code, closeErr.Text)
	}
	if len(got) == 0 {
		t.Fatal("nothing was received before the cut-off")
	}

	// Resume from the last revision received.
	ws2, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws2.subscribe("1", eventsSubscription, map[string]any{"after": got[len(got)-1]})
	want := storeRevisions(t, m, DemoWorkspaceID, start)
	for len(got) < len(want) {
		ev, err := ws2.nextEvent(5 * time.Second)
		if err != nil {
			t.Fatalf("after resuming at %d of %d events: %v", len(got), len(want), err)
		}
		got = append(got, ev.Revision)
	}
	expect(t, "revisions across the cut-off", got, want)
}

// TestResumeFromMemoryMatchesStore resumes the same range twice over a
// websocket: once served by the broker's replay history, once, after a
// restart, read from the bbolt changelog. The payloads must be the same
// bytes.
func TestResumeFromMemoryMatchesStore(t *testing.T) {
	const full = `subscription($after: Revision) { integrationEvents(afterRevision: $after) { revision at kind previousStatus
		integration { id category status statusReason statusMessage badge { label tone } actions account { id name email }
			accountHistory { account { id } from until } grantedScopes missingScopes connectedAt lastSyncedAt settings { key value }
			disconnectWarning revision } } }`
	dir := t.TempDir()
	resume := func(m *Main) (payloads []string) {
		t.Helper()
		want := storeRevisions(t, m, "ws_demo", 0)
		ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.subscribe("1", full, map[string]any{"after": "0"})
		for range want {
			msg, err := ws.read(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Type != "next" {
				t.Fatalf("got %s %s; want next", msg.Type, msg.Payload)
			}
			payloads = append(payloads, string(msg.Payload))
		}
		ws.conn.Close()
		return payloads
	}

	m := mustStart(t, dir)
	c := newClient(t, m, m.DemoToken)
	id := str(connect(t, c, "ada@sandbox.test"), "id")
	for i := range 5 {
		if _, _, errs := configure(c, id, "sync_interval_minutes", strconv.Itoa(10+i)); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	disconnect(t, c, id)
	before := m.broker.Stats()
	fromMemory := resume(m)
	if st := m.broker.Stats(); st.ReplayPagesFromMemory == before.ReplayPagesFromMemory {
		t.Fatalf("the resume was not served from memory: %+v", st)
	}
	m.Close()

	m2 := mustStart(t, dir)
	before = m2.broker.Stats()
	fromStore := resume(m2)
	if st := m2.broker.Stats(); st.ReplayPagesFromMemory != before.ReplayPagesFromMemory || st.ReplayPagesFromStore == before.ReplayPagesFromStore {
		t.Fatalf("the resume after a restart was not read from the store: %+v", st)
	}
	if !slices.Equal(fromMemory, fromStore) {
		for i := range min(len(fromMemory), len(fromStore)) {
			if fromMemory[i] != fromStore[i] {
				t.Fatalf("event %d differs:\nfrom memory: %s\nfrom store:  %s", i, fromMemory[i], fromStore[i])
			}
		}
		t.Fatalf("%d events from memory, %d from the store", len(fromMemory), len(fromStore))
	}
}
