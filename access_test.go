package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/switchboard"
)

// ---- helpers ----

// addUser creates a user in a workspace and a token acting as it.
func addUser(t *testing.T, m *Main, ws, id string, role switchboard.Role, scopes ...string) string {
	t.Helper()
	ctx := context.Background()
	if err := m.store.CreateUser(ctx, &switchboard.User{ID: id, WorkspaceID: ws, Name: "User " + id, Email: id + "@" + ws + ".test", Role: role}); err != nil {
		t.Fatal(err)
	}
	tok, err := m.service.CreateAPIToken(ctx, &switchboard.APIToken{WorkspaceID: ws, UserID: id, Name: "tok " + id, Role: role, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func addWorkspace(t *testing.T, m *Main, id, name string) {
	t.Helper()
	if err := m.store.CreateWorkspace(context.Background(), &switchboard.Workspace{ID: id, Name: name, Plan: switchboard.PlanPure}); err != nil {
		t.Fatal(err)
	}
}

// rawWS opens a websocket without connection_init.
func rawWS(t *testing.T, m *Main, proto string) *websocket.Conn {
	t.Helper()
	d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{proto}}
	conn, _, err := d.Dial("ws"+strings.TrimPrefix(m.URL, "http")+"/graphql", http.Header{"Origin": {m.URL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closeCode reads until the socket closes and returns the close code.
func closeCode(t *testing.T, conn *websocket.Conn, timeout time.Duration) int {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		_, _, err := conn.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		} else if err != nil {
			t.Fatalf("read: %v; want a close frame", err)
		}
	}
}

var fullScopes = []string{switchboard.ScopeIntegrationsRead, switchboard.ScopeIntegrationsWrite, switchboard.ScopeTokensAdmin}

// ---- CLI ----

func TestTokenCreateCLI(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := runCLI([]string{"token", "create", "--workspace", "ws_new", "--role", "admin", "--data", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--plan") {
		t.Fatalf("without --plan for a new workspace: exit %d, %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := runCLI([]string{"token", "create", "--workspace", "ws_new", "--workspace-name", "New Co", "--plan", "pure", "--role", "admin", "--data", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	secret := strings.TrimSpace(out.String())
	if !strings.HasPrefix(secret, "sbt_") {
		t.Fatalf("stdout %q; want the secret alone", out.String())
	}

	m := mustStart(t, dir)
	c := newClient(t, m, secret)
	d := c.must(`{ viewer { role scopes workspace { id name plan } user { role } } }`, nil)
	expect(t, "viewer", d["viewer"], map[string]any{"role": "ADMIN", "scopes": []any{"integrations:read", "integrations:write", "tokens:admin"},
		"workspace": map[string]any{"id": "ws_new", "name": "New Co", "plan": "pure"}, "user": map[string]any{"role": "ADMIN"}})

	// While the server holds the file, the CLI fails clearly.
	errb.Reset()
	if code := runCLI([]string{"token", "create", "--workspace", "ws_new", "--role", "member", "--data", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "in use by another switchboard process") {
		t.Fatalf("with the server running: exit %d, %s", code, errb.String())
	}
}

// ---- tokens ----

func TestAPITokenLifecycle(t *testing.T) {
	m := mustStart(t, "")
	admin := newClient(t, m, m.DemoToken)
	d := admin.must(`mutation { createApiToken(input: {name: "ci", scopes: ["integrations:read"]}) { secret token { id name role scopes userId revokedAt } } }`, nil)
	secret, id := str(d, "createApiToken.secret"), str(d, "createApiToken.token.id")
	expect(t, "token", get(d, "createApiToken.token.scopes"), []any{"integrations:read"})

	ro := newClient(t, m, secret)
	ro.must(`{ integrations { id } }`, nil)
	e := ro.fails(switchboard.EFORBIDDEN, `mutation { connectIntegration(input: {provider: "sandbox"}) { authorizationUrl } }`, nil)
	if !strings.Contains(e.Message, "integrations:write") {
		t.Errorf("read-only refusal %q does not name integrations:write", e.Message)
	}
	ro.fails(switchboard.EFORBIDDEN, `{ apiTokens { id } }`, nil)
	// A token cannot mint scopes it lacks.
	admin2 := newClient(t, m, addUser(t, m, DemoWorkspaceID, "usr_limited", switchboard.RoleAdmin, switchboard.ScopeTokensAdmin))
	e = admin2.fails(switchboard.EFORBIDDEN, `mutation { createApiToken(input: {name: "x", scopes: ["sync"]}) { secret } }`, nil)
	if !strings.Contains(e.Message, "sync") {
		t.Errorf("escalation refusal %q does not name the scope", e.Message)
	}

	// Listed without the secret; lastUsedAt recorded.
	raw, d, _ := admin.do(`{ apiTokens { id name lastUsedAt revokedAt } }`, nil)
	if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte(strings.TrimPrefix(secret, "sbt_"))) {
		t.Fatal("apiTokens returned a secret")
	}
	var found bool
	for _, x := range d["apiTokens"].([]any) {
		if x.(map[string]any)["id"] == id {
			found = true
			if x.(map[string]any)["lastUsedAt"] == nil {
				t.Error("lastUsedAt not recorded")
			}
		}
	}
	if !found {
		t.Fatal("new token not listed")
	}

	// Revocation closes an open websocket with 4403 and fails HTTP at once.
	ws, err := dialWS(t, m, "graphql-transport-ws", secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("1", eventsSubscription, nil)
	admin.must(`mutation($id: ID!) { revokeApiToken(input: {id: $id}) { id revokedAt } }`, map[string]any{"id": id})
	if code := closeCode(t, ws.conn, 5*time.Second); code != 4403 {
		t.Errorf("websocket after revoke: close %d; want 4403", code)
	}
	ro.fails(switchboard.EUNAUTHENTICATED, `{ integrations { id } }`, nil)
	if _, err := dialWS(t, m, "graphql-transport-ws", secret, nil); err == nil {
		t.Error("revoked token opened a websocket")
	}
}

func TestTokenExpiryClosesWebsocket(t *testing.T) {
	m := mustStart(t, "")
	exp := time.Now().Add(1500 * time.Millisecond)
	tok, err := m.service.CreateAPIToken(context.Background(), &switchboard.APIToken{WorkspaceID: DemoWorkspaceID, UserID: DemoUserID, Role: switchboard.RoleAdmin, ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := dialWS(t, m, "graphql-transport-ws", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("1", eventsSubscription, nil)
	if code := closeCode(t, ws.conn, 10*time.Second); code != 4403 {
		t.Errorf("websocket at expiry: close %d; want 4403", code)
	}
	newClient(t, m, tok).fails(switchboard.EUNAUTHENTICATED, `{ viewer { role } }`, nil)
}

// ---- roles ----

func TestRoleRules(t *testing.T) {
	m := mustStart(t, "")
	admin := newClient(t, m, m.DemoToken)
	id := connect(t, admin, "ada@sandbox.test")["id"].(string)
	expect(t, "admin actions", integration(t, admin, id)["actions"], []any{"CONFIGURE", "DISCONNECT"})

	member := newClient(t, m, addUser(t, m, DemoWorkspaceID, "usr_member", switchboard.RoleMember, fullScopes...))
	expect(t, "member sees the card, no actions", integration(t, member, id)["actions"], []any{})
	for _, q := range []string{
		`mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true}) { id } }`,
		`mutation($id: ID!) { configureIntegration(input: {id: $id, settings: []}) { id } }`,
		`mutation($id: ID!) { reconnectIntegration(input: {id: $id}) { authorizationUrl } }`,
	} {
		// Twice: configure answers the second time from the identity
		// the service remembered, and must answer the same.
		for range 2 {
			e := member.fails(switchboard.EFORBIDDEN, q, map[string]any{"id": id})
			if !strings.Contains(e.Message, "ADMIN") {
				t.Errorf("%s: refusal %q does not name ADMIN", firstLine(q), e.Message)
			}
		}
	}
	member.fails(switchboard.EFORBIDDEN, `{ auditLog { entries { id } } }`, nil)
	member.fails(switchboard.EFORBIDDEN, `{ users { id } }`, nil)
	member.fails(switchboard.EFORBIDDEN, `mutation { createUser(input: {name: "x", role: ADMIN}) { id } }`, nil)
	// A member lists and revokes only their own tokens.
	d := member.must(`{ apiTokens { userId } }`, nil)
	for _, x := range d["apiTokens"].([]any) {
		expect(t, "member's tokens", x.(map[string]any)["userId"], "usr_member")
	}
	e := member.fails(switchboard.EFORBIDDEN, `mutation { wipeWorkspace(input: {confirmName: "Demo workspace"}) { integrationsWiped } }`, nil)
	if !strings.Contains(e.Message, "SUPPORT") {
		t.Errorf("wipe refusal %q does not name SUPPORT", e.Message)
	}
	e = admin.fails(switchboard.EFORBIDDEN, `mutation { wipeWorkspace(input: {confirmName: "Demo workspace"}) { integrationsWiped } }`, nil)
	if !strings.Contains(e.Message, "SUPPORT") {
		t.Errorf("wipe refusal %q does not name SUPPORT", e.Message)
	}
	// Admins add users and make tokens for them, with the user's role.
	d = admin.must(`mutation { createUser(input: {name: "Mia", email: "mia@demo.test", role: MEMBER}) { id role } }`, nil)
	uid := str(d, "createUser.id")
	d = admin.must(`mutation($u: ID!) { createApiToken(input: {name: "mia", userId: $u}) { secret token { role userId } } }`, map[string]any{"u": uid})
	expect(t, "token for a member", get(d, "createApiToken.token.role"), "MEMBER")
	mia := newClient(t, m, str(d, "createApiToken.secret"))
	expect(t, "mia's viewer", get(mia.must(`{ viewer { userId role user { name } } }`, nil), "viewer"), map[string]any{"userId": uid, "role": "MEMBER", "user": map[string]any{"name": "Mia"}})
}

func TestWipeWorkspace(t *testing.T) {
	m := mustStart(t, "")
	admin := newClient(t, m, m.DemoToken)
	id := connect(t, admin, "ada@sandbox.test")["id"].(string)
	configure(admin, id, "pipeline", "all")
	support := newClient(t, m, addUser(t, m, DemoWorkspaceID, "usr_support", switchboard.RoleSupport))
	syncTok := addUser(t, m, DemoWorkspaceID, "usr_sync", switchboard.RoleMember, switchboard.ScopeIntegrationsRead, switchboard.ScopeSync)
	in0 := integration(t, admin, id)
	rev0 := str(in0, "revision")

	sub, err := dialWS(t, m, "graphql-transport-ws", syncTok, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub.subscribe("1", eventsSubscription, map[string]any{"after": rev0})

	e := support.fails(switchboard.ECONFIRM, `mutation { wipeWorkspace(input: {confirmName: "demo"}) { integrationsWiped } }`, nil)
	if !strings.Contains(e.Message, "Demo workspace") {
		t.Errorf("confirmation message %q does not name the workspace", e.Message)
	}
	expect(t, "nothing changed", integration(t, admin, id)["status"], "CONNECTED")

	d := support.must(`mutation { wipeWorkspace(input: {confirmName: "Demo workspace"}) { workspace { id } integrationsWiped teardownsQueued tokensDeleted } }`, nil)
	expect(t, "wipe", d["wipeWorkspace"], map[string]any{"workspace": map[string]any{"id": DemoWorkspaceID}, "integrationsWiped": 1.0, "teardownsQueued": 1.0, "tokensDeleted": 2.0})

	ev, err := sub.nextEvent(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "final event", []any{ev.Kind, ev.Integration.ID, ev.Integration.Status}, []any{"WORKSPACE_WIPED", id, "DISCONNECTED"})

	// Tokens are gone (the sync engine's stays); history is gone.
	admin.fails(switchboard.EUNAUTHENTICATED, `{ viewer { role } }`, nil)
	support.fails(switchboard.EUNAUTHENTICATED, `{ viewer { role } }`, nil)
	syncC := newClient(t, m, syncTok)
	in := integration(t, syncC, id)
	expect(t, "wiped card", []any{in["status"], in["statusReason"], in["account"], len(in["accountHistory"].([]any))}, []any{"DISCONNECTED", "WORKSPACE_WIPED", nil, 0})
	// The changelog holds the wipe's event alone; older revisions are gone.
	if _, err := m.store.EventsAfter(context.Background(), DemoWorkspaceID, 0, 0); switchboard.ErrorCode(err) != switchboard.ECOMPACTED {
		t.Errorf("history before the wipe: %v; want COMPACTED", err)
	}
	var wipeRev uint64
	fmt.Sscan(ev.Revision, &wipeRev)
	expect(t, "changelog", storeRevisions(t, m, DemoWorkspaceID, wipeRev-1), []string{ev.Revision})
	// The teardown revokes the provider's grant.
	waitFor(t, "teardown", func() bool {
		jobs, _ := m.store.DueTeardowns(context.Background(), time.Now().Add(time.Hour), 10)
		return len(jobs) == 0
	})
	// The wipe is audited (the audit log is kept).
	entries, err := m.store.FindAudit(context.Background(), DemoWorkspaceID, 0, 1)
	if err != nil || len(entries) != 1 || entries[0].Action != "wipeWorkspace" || entries[0].UserID != "usr_support" {
		t.Errorf("last audit entry: %+v %v", entries, err)
	}
}

// ---- idempotency ----

func TestIdempotentMutations(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	q := `mutation($id: ID!, $v: String!, $k: String) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: $v}], idempotencyKey: $k}) { revision } }`
	first := str(c.must(q, map[string]any{"id": id, "v": "45", "k": "key-1"}), "configureIntegration.revision")
	configure(c, id, "sync_interval_minutes", "50") // a later change
	again := str(c.must(q, map[string]any{"id": id, "v": "45", "k": "key-1"}), "configureIntegration.revision")
	expect(t, "replayed result", again, first)
	expect(t, "value not reapplied", str(integration(t, c, id), "settings.1.value")+"/"+settingValue(integration(t, c, id), "sync_interval_minutes"), str(integration(t, c, id), "settings.1.value")+"/50")
	e := c.fails(switchboard.ECONFLICT, q, map[string]any{"id": id, "v": "46", "k": "key-1"})
	if !strings.Contains(e.Message, "key-1") {
		t.Errorf("conflict message %q", e.Message)
	}
	// The same key from another token is another request.
	other := newClient(t, m, addUser(t, m, DemoWorkspaceID, "usr_other", switchboard.RoleAdmin))
	if r := str(other.must(q, map[string]any{"id": id, "v": "45", "k": "key-1"}), "configureIntegration.revision"); r == first {
		t.Error("another token got the first token's replay")
	}

	// createApiToken replays its secret (sealed at rest), not a new token.
	tq := `mutation { createApiToken(input: {name: "bot", idempotencyKey: "t1"}) { secret token { id } } }`
	a, b := c.must(tq, nil), c.must(tq, nil)
	expect(t, "replayed token", str(b, "createApiToken.token.id")+str(b, "createApiToken.secret"), str(a, "createApiToken.token.id")+str(a, "createApiToken.secret"))
	toks, _ := m.store.FindAPITokens(context.Background(), DemoWorkspaceID)
	n := 0
	for _, tk := range toks {
		if tk.Name == "bot" {
			n++
		}
	}
	expect(t, "tokens named bot", n, 1)
	raw, _ := os.ReadFile(m.store.Path())
	if bytes.Contains(raw, []byte(str(a, "createApiToken.secret"))) {
		t.Error("an idempotency record holds a token secret in clear")
	}

	// Disconnect with a key: the repeat returns the first result, and no
	// second event is written.
	dq := `mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true, idempotencyKey: "d1"}) { status revision } }`
	d1, d2 := c.must(dq, map[string]any{"id": id}), c.must(dq, map[string]any{"id": id})
	expect(t, "disconnect replay", d2, d1)

	// expectedRevision on disconnect.
	id2 := connect(t, c, "ada@sandbox.test")["id"].(string)
	c.fails(switchboard.ECONFLICT, `mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true, expectedRevision: "1"}) { id } }`, map[string]any{"id": id2})
}

func settingValue(in map[string]any, key string) string {
	for _, s := range in["settings"].([]any) {
		if s.(map[string]any)["key"] == key {
			return s.(map[string]any)["value"].(string)
		}
	}
	return ""
}

// ---- audit ----

func TestAuditLog(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	configure(c, id, "pipeline", "all")
	disconnect(t, c, id)
	d := c.must(`{ viewer { tokenId } auditLog(first: 2) { entries { action target userId tokenId role at } nextCursor } }`, nil)
	tokID := str(d, "viewer.tokenId")
	entries := get(d, "auditLog.entries").([]any)
	expect(t, "newest first", []any{str(d, "auditLog.entries.0.action"), str(d, "auditLog.entries.1.action")}, []any{"disconnectIntegration", "configureIntegration"})
	for _, e := range entries {
		e := e.(map[string]any)
		expect(t, "who", []any{e["target"], e["userId"], e["tokenId"], e["role"]}, []any{id, DemoUserID, tokID, "ADMIN"})
	}
	d = c.must(`query($a: String) { auditLog(first: 10, after: $a) { entries { action } nextCursor } }`, map[string]any{"a": str(d, "auditLog.nextCursor")})
	var actions []string
	for _, e := range get(d, "auditLog.entries").([]any) {
		actions = append(actions, e.(map[string]any)["action"].(string))
	}
	expect(t, "older page", actions, []string{"oauthCallback", "connectIntegration"})
}
