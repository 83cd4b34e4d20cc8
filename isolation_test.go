package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// introspected is the part of the schema the isolation test walks.
type introspected struct {
	roots map[string][]string // operation type → field names
	types map[string][]ifield // object type → fields
}

type ifield struct {
	name     string
	leaf     bool
	typeName string
	reqArgs  bool
}

func introspect(t *testing.T, c *client) introspected {
	t.Helper()
	d := c.must(`{ __schema {
		queryType { name } mutationType { name } subscriptionType { name }
		types { name kind fields { name args { type { kind } } type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } }
	} }`, nil)
	out := introspected{roots: map[string][]string{}, types: map[string][]ifield{}}
	for _, ty := range get(d, "__schema.types").([]any) {
		ty := ty.(map[string]any)
		name := ty["name"].(string)
		if ty["kind"] != "OBJECT" || strings.HasPrefix(name, "__") {
			continue
		}
		for _, f := range ty["fields"].([]any) {
			f := f.(map[string]any)
			typ := f["type"].(map[string]any)
			for typ["name"] == nil {
				typ = typ["ofType"].(map[string]any)
			}
			req := false
			for _, a := range f["args"].([]any) {
				if get(a.(map[string]any), "type.kind") == "NON_NULL" {
					req = true
				}
			}
			out.types[name] = append(out.types[name], ifield{name: f["name"].(string), leaf: typ["kind"] != "OBJECT", typeName: typ["name"].(string), reqArgs: req})
		}
	}
	for _, op := range []string{"queryType", "mutationType", "subscriptionType"} {
		root := str(d, "__schema."+op+".name")
		for _, f := range out.types[root] {
			out.roots[op] = append(out.roots[op], f.name)
		}
	}
	return out
}

// selection selects every field of a type reachable without arguments,
// to depth levels, so a new nested field is always requested.
func (s introspected) selection(typeName string, depth int) string {
	var parts []string
	for _, f := range s.types[typeName] {
		if f.reqArgs {
			continue
		}
		if f.leaf {
			parts = append(parts, f.name)
		} else if depth > 1 {
			parts = append(parts, f.name+" "+s.selection(f.typeName, depth-1))
		}
	}
	if len(parts) == 0 {
		return "{ __typename }"
	}
	return "{ " + strings.Join(parts, " ") + " }"
}

func (s introspected) fieldType(root, field string) string {
	for _, f := range s.types[root] {
		if f.name == field {
			return f.typeName
		}
	}
	return ""
}

// TestTenantIsolation tries every operation of the schema as workspace B
// with workspace A's IDs (of a workspace card and of a member's personal
// one), and checks that nothing of A comes back and that
// A's IDs behave exactly like IDs that do not exist. The operations come
// from introspection: a root field without a case here fails the test.
func TestTenantIsolation(t *testing.T) {
	m := mustStart(t, "")
	// Workspace A: the demo workspace, with an integration, users, tokens.
	a := newClient(t, m, m.DemoToken)
	aInt := connect(t, a, "ada@sandbox.test")["id"].(string)
	configure(a, aInt, "pipeline", "all")
	aMemberTok := addUser(t, m, DemoWorkspaceID, "usr_a_member", switchboard.RoleMember)
	// and a member's personal integration (Sandbox Mail).
	aMember := newClient(t, m, aMemberTok)
	aMail := connectMail(t, aMember, "limited@sandbox.test")
	aTokID := str(newClient(t, m, aMemberTok).must(`{ viewer { tokenId } }`, nil), "viewer.tokenId")
	aAdminTokID := str(a.must(`{ viewer { tokenId } }`, nil), "viewer.tokenId")

	// Workspace B, with its own admin (all scopes) and support users.
	addWorkspace(t, m, "ws_b", "Bee Corp")
	bTok := addUser(t, m, "ws_b", "usr_b_admin", switchboard.RoleAdmin, fullScopes...)
	b := newClient(t, m, bTok)
	bSupport := newClient(t, m, addUser(t, m, "ws_b", "usr_b_support", switchboard.RoleSupport))
	bInt := connect(t, b, "grace@sandbox.test")["id"].(string)

	// What must never show in B's answers.
	secretsOfA := []string{aInt, aMail, "limited@sandbox.test", DemoWorkspaceID, "Demo workspace", "usr_a_member", DemoUserID, aTokID, aAdminTokID, "ada@sandbox.test", m.DemoToken, aMemberTok}
	var bodies []string
	do := func(c *client, q string, vars map[string]any) ([]gqlError, map[string]any) {
		raw, d, errs := c.do(q, vars)
		// An ID B sent may be echoed in the error ("No integration X");
		// that is no leak. Anything else of A's is.
		body := string(raw)
		for _, v := range vars {
			body = strings.ReplaceAll(body, v.(string), "<sent>")
		}
		bodies = append(bodies, body)
		return errs, d
	}
	// sameAsMissing runs q with A's ID and with an ID that does not exist,
	// and wants the same outcome (code, message with the ID masked).
	const missing = "int_doesnotexist000"
	aIntegrations := []string{aInt, aMail} // a workspace card and a personal one
	sameAsMissing := func(name string, c *client, q string, varName, aID, wantCode string) {
		t.Helper()
		e1, d1 := do(c, q, map[string]any{varName: aID})
		e2, d2 := do(c, q, map[string]any{varName: missing})
		mask := func(es []gqlError, id string) string {
			if len(es) == 0 {
				return "no error"
			}
			return es[0].Code() + ": " + strings.ReplaceAll(es[0].Message, id, "<id>")
		}
		if got, want := mask(e1, aID), mask(e2, missing); got != want {
			t.Errorf("%s: with A's ID %q; with a missing ID %q", name, got, want)
		}
		if wantCode != "" && (len(e1) == 0 || e1[0].Code() != wantCode) {
			t.Errorf("%s: %v; want %s", name, e1, wantCode)
		}
		expect(t, name+" data", d1, d2)
	}

	s := introspect(t, b)
	sel := func(root, field string) string { return s.selection(s.fieldType(root, field), 4) }

	cases := map[string]func(){
		"integrations": func() {
			do(b, `{ integrations `+sel("Query", "integrations")+` }`, nil)
		},
		"integration": func() {
			for _, id := range aIntegrations {
				sameAsMissing("integration", b, `query($id: ID!) { integration(id: $id) `+sel("Query", "integration")+` }`, "id", id, "")
			}
		},
		"providers": func() { do(b, `{ providers `+sel("Query", "providers")+` }`, nil) },
		"viewer": func() {
			_, d := do(b, `{ viewer `+sel("Query", "viewer")+` }`, nil)
			expect(t, "B's viewer", str(d, "viewer.workspace.id"), "ws_b")
		},
		"apiTokens": func() { do(b, `{ apiTokens `+sel("Query", "apiTokens")+` }`, nil) },
		"users":     func() { do(b, `{ users `+sel("Query", "users")+` }`, nil) },
		"auditLog":  func() { do(b, `{ auditLog(first: 500) `+sel("Query", "auditLog")+` }`, nil) },
		"connectIntegration": func() {
			// No ID to pass: B's connect reaches B's own card.
			for _, provider := range []string{"sandbox", "sandbox-mail"} {
				errs, d := do(b, `mutation($p: String!) { connectIntegration(input: {provider: $p}) `+sel("Mutation", "connectIntegration")+` }`, map[string]any{"p": provider})
				if id := str(d, "connectIntegration.integration.id"); len(errs) == 0 && (id == aInt || id == aMail) {
					t.Errorf("B's connect of %s reached A's integration", provider)
				}
			}
		},
		"reconnectIntegration": func() {
			for _, id := range aIntegrations {
				sameAsMissing("reconnectIntegration", b, `mutation($id: ID!) { reconnectIntegration(input: {id: $id}) `+sel("Mutation", "reconnectIntegration")+` }`, "id", id, switchboard.ENOTFOUND)
			}
		},
		"disconnectIntegration": func() {
			for _, id := range aIntegrations {
				sameAsMissing("disconnectIntegration", b, `mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true}) `+sel("Mutation", "disconnectIntegration")+` }`, "id", id, switchboard.ENOTFOUND)
			}
		},
		"configureIntegration": func() {
			for _, id := range aIntegrations {
				sameAsMissing("configureIntegration", b, `mutation($id: ID!) { configureIntegration(input: {id: $id, settings: [{key: "pipeline", value: "sales"}]}) `+sel("Mutation", "configureIntegration")+` }`, "id", id, switchboard.ENOTFOUND)
			}
		},
		"createApiToken": func() {
			sameAsMissing("createApiToken", b, `mutation($u: ID!) { createApiToken(input: {name: "x", userId: $u}) `+sel("Mutation", "createApiToken")+` }`, "u", "usr_a_member", switchboard.ENOTFOUND)
		},
		"revokeApiToken": func() {
			sameAsMissing("revokeApiToken", b, `mutation($id: ID!) { revokeApiToken(input: {id: $id}) `+sel("Mutation", "revokeApiToken")+` }`, "id", aTokID, switchboard.ENOTFOUND)
		},
		"createUser": func() {
			_, d := do(b, `mutation { createUser(input: {name: "New", role: MEMBER}) `+sel("Mutation", "createUser")+` }`, nil)
			if u, err := m.store.FindUserByID(t.Context(), DemoWorkspaceID, str(d, "createUser.id")); err == nil {
				t.Errorf("B's createUser wrote into A: %+v", u)
			}
		},
		"wipeWorkspace": func() {
			// A's name is no confirmation for B's workspace: the same
			// refusal as any wrong name.
			sameAsMissing("wipeWorkspace", bSupport, `mutation($n: String!) { wipeWorkspace(input: {confirmName: $n}) `+sel("Mutation", "wipeWorkspace")+` }`, "n", "Demo workspace", switchboard.ECONFIRM)
		},
		"integrationEvents": func() {
			ws, err := dialWS(t, m, "graphql-transport-ws", bTok, nil)
			if err != nil {
				t.Fatal(err)
			}
			ws.subscribe("1", `subscription { integrationEvents(afterRevision: "0") `+sel("Subscription", "integrationEvents")+` }`, nil)
			configure(a, aInt, "pipeline", "renewals") // A changes meanwhile
			configure(aMember, aMail, "calendar_sync_days", "14")
			configure(b, bInt, "pipeline", "renewals")
			for {
				msg, err := ws.read(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, string(msg.Payload))
				if strings.Contains(string(msg.Payload), `"CONFIGURED"`) {
					break
				}
			}
		},
	}
	for op, fields := range s.roots {
		for _, f := range fields {
			run, ok := cases[f]
			if !ok {
				t.Errorf("%s.%s has no isolation case: add one", op, f)
				continue
			}
			run()
		}
	}
	for _, body := range bodies {
		for _, secret := range secretsOfA {
			if strings.Contains(body, secret) {
				t.Errorf("B's answer holds A's %q: %s", secret, body)
			}
		}
	}
	// A is untouched, and A's tokens still work.
	in := integration(t, a, aInt)
	expect(t, "A's integration", []any{in["status"], settingValue(in, "pipeline")}, []any{"CONNECTED", "renewals"})
	in = integration(t, aMember, aMail)
	expect(t, "A's personal integration", []any{in["status"], settingValue(in, "calendar_sync_days")}, []any{"ERROR", "14"})
	newClient(t, m, aMemberTok).must(`{ viewer { role } }`, nil)
	// And B's token is refused on nothing of A's: A's token cannot see B.
	if d := a.must(`query($id: ID!) { integration(id: $id) { id } }`, map[string]any{"id": bInt}); d["integration"] != nil {
		t.Error("A read B's integration")
	}
}
