package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// connectMail connects the viewer's own Sandbox Mail as the sandbox account
// with email through the real OAuth flow, checks the authorization URL, and
// returns the integration's ID.
func connectMail(t *testing.T, c *client, email string) string {
	t.Helper()
	d := c.must(`mutation($email: String) { connectIntegration(input: {provider: "sandbox-mail", loginHint: $email}) { authorizationUrl integration { id status provider { category } } } }`,
		map[string]any{"email": email})
	expect(t, "card before the callback", []any{str(d, "connectIntegration.integration.status"), str(d, "connectIntegration.integration.provider.category")}, []any{"DISCONNECTED", "EMAIL_CALENDAR"})
	browser := oauthBrowser()
	u := startFlow(t, browser, str(d, "connectIntegration.authorizationUrl"))
	q := u.Query()
	expect(t, "authorization URL", []any{u.Path, q.Get("client_id"), q.Get("login_hint"), q.Get("scope")},
		[]any{"/sandbox/authorize", "switchboard-dev-mail", email, "mail.read calendar.read"})
	if status, body := fetch(t, browser, redirect(t, browser, u.String())); status != http.StatusOK {
		t.Fatalf("callback: got %d %s; want 200", status, body)
	}
	return str(d, "connectIntegration.integration.id")
}

// listed reports whether id is among the viewer's integrations.
func listed(c *client, id string) bool {
	d := c.must(`{ integrations { id } }`, nil)
	for _, x := range d["integrations"].([]any) {
		if x.(map[string]any)["id"] == id {
			return true
		}
	}
	return false
}

// integrationOps are the operations that take an integration ID.
var integrationOps = map[string]string{
	"integration":           `query($id: ID!) { integration(id: $id) { id account { email } } }`,
	"configureIntegration":  `mutation($id: ID!) { configureIntegration(input: {id: $id, settings: [{key: "calendar_sync_days", value: "7"}]}) { id } }`,
	"disconnectIntegration": `mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true}) { id } }`,
	"reconnectIntegration":  `mutation($id: ID!) { reconnectIntegration(input: {id: $id, loginHint: "grace@sandbox.test"}) { authorizationUrl } }`,
}

// likeMissing checks that every operation on id answers exactly as it does
// for an ID that does not exist: NOT_FOUND for mutations, null for the
// query, the same message with the ID masked, and nothing of the card.
func likeMissing(t *testing.T, who string, c *client, id string) {
	t.Helper()
	const missing = "int_doesnotexist000"
	for name, q := range integrationOps {
		raw1, d1, e1 := c.do(q, map[string]any{"id": id})
		_, d2, e2 := c.do(q, map[string]any{"id": missing})
		mask := func(es []gqlError, x string) string {
			if len(es) == 0 {
				return "no error"
			}
			return es[0].Code() + ": " + strings.ReplaceAll(es[0].Message, x, "<id>")
		}
		if got, want := mask(e1, id), mask(e2, missing); got != want {
			t.Errorf("%s, %s of another user's personal integration: got %q; for a missing ID %q", who, name, got, want)
		}
		if name != "integration" && (len(e1) == 0 || e1[0].Code() != switchboard.ENOTFOUND) {
			t.Errorf("%s, %s: got %v; want NOT_FOUND", who, name, e1)
		}
		expect(t, who+", "+name+" data", d1, d2)
		if strings.Contains(string(raw1), "ada@sandbox.test") {
			t.Errorf("%s, %s: the answer names the owner's account: %s", who, name, raw1)
		}
	}
}

// TestPersonalIntegrationBelongsToItsOwner: a member connects their own
// Sandbox Mail through the real OAuth flow and manages it; another member
// and an admin of the same workspace can neither see it, nor read it by
// ID, nor change it, nor receive its events; the owner disconnects it.
func TestPersonalIntegrationBelongsToItsOwner(t *testing.T) {
	m := mustStart(t, "")
	admin := newClient(t, m, m.DemoToken)
	miaTok := addUser(t, m, DemoWorkspaceID, "usr_mia", switchboard.RoleMember, fullScopes...)
	benTok := addUser(t, m, DemoWorkspaceID, "usr_ben", switchboard.RoleMember, fullScopes...)
	mia, ben := newClient(t, m, miaTok), newClient(t, m, benTok)

	// The catalogue offers Sandbox Mail under Personal Integrations.
	d := mia.must(`{ providers(category: EMAIL_CALENDAR) { id name available settingsLocation settingDefinitions { key type default } } }`, nil)
	var found bool
	for _, p := range d["providers"].([]any) {
		p := p.(map[string]any)
		if p["id"] == "sandbox-mail" {
			found = true
			expect(t, "Sandbox Mail", []any{p["name"], p["available"], p["settingsLocation"], len(p["settingDefinitions"].([]any))}, []any{"Sandbox Mail", true, "Personal Integrations", 2})
		}
	}
	if !found {
		t.Fatal("providers(EMAIL_CALENDAR): no sandbox-mail")
	}

	// Everyone's subscription is open before Mia connects.
	subs := map[string]*wsClient{}
	for name, tok := range map[string]string{"mia": miaTok, "ben": benTok, "admin": m.DemoToken} {
		ws, err := dialWS(t, m, "graphql-transport-ws", tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.subscribe("1", eventsSubscription, nil)
		subs[name] = ws
	}
	// A subscription is live once it has seen an event committed after it
	// was opened; the workspace CRM's are seen by everyone.
	crmID := connect(t, admin, "grace@sandbox.test")["id"].(string)
	for name, ws := range subs {
		for _, kind := range []string{"CREATED", "CONNECTED"} {
			ev, err := ws.nextEvent(5 * time.Second)
			if err != nil || ev.Integration.ID != crmID || ev.Kind != kind {
				t.Fatalf("%s's event: %+v %v; want the CRM card's %s", name, ev, err, kind)
			}
		}
	}

	// Mia connects her own mail, as Ada's sandbox account.
	id := connectMail(t, mia, "ada@sandbox.test")
	in := integration(t, mia, id)
	expect(t, "Mia's card", []any{in["status"], get(in, "account.email"), in["grantedScopes"], get(in, "provider.category"), in["actions"]},
		[]any{"CONNECTED", "ada@sandbox.test", []any{"mail.read", "calendar.read"}, "EMAIL_CALENDAR", []any{"CONFIGURE", "DISCONNECT"}})
	if !listed(mia, id) {
		t.Error("Mia's integrations: her mail card is missing")
	}
	if _, _, errs := configure(mia, id, "calendar_sync_days", "60"); len(errs) > 0 {
		t.Fatalf("Mia configures her mail: %v", errs)
	}
	_, _, errs := configure(mia, id, "calendar_sync_days", "400")
	if len(errs) == 0 || errs[0].Code() != switchboard.EINVALID {
		t.Errorf("calendar_sync_days 400: %v; want INVALID", errs)
	}
	expect(t, "setting", settingValue(integration(t, mia, id), "calendar_sync_days"), "60")

	// Ben (member) and the admin: not listed, not readable, not manageable,
	// exactly like an ID that does not exist. Owner-only, admins included.
	for who, c := range map[string]*client{"ben": ben, "admin": admin} {
		if listed(c, id) {
			t.Errorf("%s's integrations list Mia's mail card", who)
		}
		likeMissing(t, who, c, id)
	}
	in = integration(t, mia, id)
	expect(t, "Mia's card after the others tried", []any{in["status"], settingValue(in, "calendar_sync_days")}, []any{"CONNECTED", "60"})

	// Ben connects his own: a second Sandbox Mail card in the same
	// workspace. Lin cannot grant calendar.read, so it is in ERROR.
	benID := connectMail(t, ben, "limited@sandbox.test")
	if benID == id {
		t.Fatal("Ben's connect reached Mia's card")
	}
	bin := integration(t, ben, benID)
	expect(t, "Ben's card", []any{bin["status"], bin["missingScopes"]}, []any{"ERROR", []any{"calendar.read"}})
	likeMissing(t, "mia", mia, benID)

	// The owner disconnects hers; the sandbox grant is revoked.
	out := disconnect(t, mia, id)
	expect(t, "disconnected", out["status"], "DISCONNECTED")
	if !strings.Contains(str(out, "disconnectWarning"), "email and calendar") {
		t.Errorf("disconnect warning: got %q; want the email and calendar text", out["disconnectWarning"])
	}
	waitFor(t, "the mail grant revoked at the sandbox", func() bool {
		for _, g := range m.sandbox.Grants() {
			if g.Product == "Sandbox Mail" && g.Email == "ada@sandbox.test" {
				return false
			}
		}
		return true
	})

	// Events: each user's subscription carries their own personal card's
	// events and the workspace's, never another user's. A last workspace
	// event marks the end of what each must have received.
	_, d, errs = configure(admin, crmID, "pipeline", "all")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	endRev := str(d, "configureIntegration.revision")
	want := map[string]string{"mia": id, "ben": benID}
	for name, ws := range subs {
		var mine int
		for {
			ev, err := ws.nextEvent(5 * time.Second)
			if err != nil {
				t.Fatalf("%s's subscription: %v", name, err)
			}
			if ev.Revision == endRev {
				break
			}
			switch ev.Integration.ID {
			case crmID:
			case want[name]:
				mine++
			default:
				t.Errorf("%s received an event of %s (%s)", name, ev.Integration.ID, ev.Kind)
			}
		}
		if name != "admin" && mine == 0 {
			t.Errorf("%s received no event of their own mail card", name)
		}
	}
}

// TestPersonalIntegrationNeedsWriteScope: a read-only token of the owner
// sees the card with no actions and cannot change it.
func TestPersonalIntegrationNeedsWriteScope(t *testing.T) {
	m := mustStart(t, "")
	mia := newClient(t, m, addUser(t, m, DemoWorkspaceID, "usr_mia", switchboard.RoleMember, fullScopes...))
	id := connectMail(t, mia, "grace@sandbox.test")
	d := mia.must(`mutation { createApiToken(input: {name: "ro", scopes: ["integrations:read"]}) { secret } }`, nil)
	ro := newClient(t, m, str(d, "createApiToken.secret"))
	expect(t, "read-only actions", integration(t, ro, id)["actions"], []any{})
	e := ro.fails(switchboard.EFORBIDDEN, integrationOps["disconnectIntegration"], map[string]any{"id": id})
	if !strings.Contains(e.Message, "integrations:write") {
		t.Errorf("refusal %q does not name integrations:write", e.Message)
	}
	expect(t, "still connected", integration(t, mia, id)["status"], "CONNECTED")
}
