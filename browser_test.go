//go:build browser

// Browser tests of the settings page: a real gateway (Main) on loopback,
// driven through Debian's headless chromium with chromedp. Run them with
//
//	go test -tags browser -run Browser .
//
// They need chromium (apt-get install chromium; another binary with
// SWITCHBOARD_CHROMIUM). Screenshots of each state go to ./screenshots (or
// SWITCHBOARD_SCREENSHOTS).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/bont/switchboard/switchboard"
)

// wait bounds every wait for the page; nothing here measures speed.
const wait = 15 * time.Second

type browser struct {
	t   *testing.T
	ctx context.Context
	m   *Main
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SWITCHBOARD_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: apt-get install chromium, or set SWITCHBOARD_CHROMIUM")
	return ""
}

// newBrowser starts a fresh headless chromium and opens the settings page
// of m through its dev sign-in link.
func newBrowser(t *testing.T, m *Main) *browser {
	t.Helper()
	b := &browser{t: t, ctx: newBrowserContext(t), m: m}
	b.do(chromedp.EmulateViewport(1200, 900), chromedp.Navigate(m.SigninURL))
	b.until("the page is live", `document.body.dataset.conn === "live"`)
	return b
}

// newBrowserContext starts headless chromium with a profile of its own.
func newBrowserContext(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return ctx
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// until waits (bounded) for a JavaScript condition to hold in the page.
func (b *browser) until(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for {
		_, err = chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(time.Until(deadline))))
		// A navigation (the OAuth redirect) ends a poll early: poll the
		// new document, once it has a JavaScript context.
		if err == nil || !(strings.Contains(err.Error(), "navigated") || strings.Contains(err.Error(), "Cannot find context")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func evalJS[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return evalJS[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel))
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

func screenshotDir() string {
	if d := os.Getenv("SWITCHBOARD_SCREENSHOTS"); d != "" {
		return d
	}
	return "screenshots"
}

// shot saves a PNG of the whole page as <dir>/<name>.png.
func (b *browser) shot(name string) { b.save(name, chromedp.FullScreenshot(100)) }

// shotViewport saves what the window shows (a modal dialog and its backdrop).
func (b *browser) shotViewport(name string) { b.save(name, chromedp.CaptureScreenshot()) }

func (b *browser) save(name string, capture chromedp.Action[[]byte]) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, capture)
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := screenshotDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// markPage tags the current document; stillSamePage proves later that no
// reload or navigation replaced it.
func (b *browser) markPage() { evalJS[chromedp.Void](b, `window.__samePage = "yes"`) }
func (b *browser) stillSamePage() {
	b.t.Helper()
	if got := evalJS[string](b, `window.__samePage || "reloaded"`); got != "yes" {
		b.t.Fatalf("page: got %s; want the same document (no reload)", got)
	}
}

// signInInPopup clicks sel, which must open the OAuth window, and picks the
// sandbox account email in that window.
func (b *browser) signInInPopup(sel, email string) {
	b.t.Helper()
	opener := chromedp.FromContext(b.ctx).Target.TargetID
	created := chromedp.WaitNewTarget(b.ctx, func(i *target.Info) bool { return i.Type == "page" && i.OpenerID == opener })
	b.click(sel)
	var id target.ID
	select {
	case id = <-created:
	case <-time.After(wait):
		b.t.Fatal("no OAuth window opened")
	}
	// Detach, not close, when done: the window finishes the callback and
	// closes itself.
	pctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(id), chromedp.WithDetachOnCancel())
	defer cancel()
	account := fmt.Sprintf(`button[value=%q]`, email)
	if err := chromedp.Do(pctx, chromedp.WaitVisible(chromedp.CSS(account)), chromedp.Click(chromedp.CSS(account), chromedp.NodeVisible)); err != nil {
		b.t.Fatalf("OAuth window: %v", err)
	}
}

const crmCard = `#surface-CRM [data-provider="sandbox"]`

func cardIs(status string) string {
	return fmt.Sprintf(`(document.querySelector(%q) || {dataset: {}}).dataset.status === %q`, crmCard, status)
}

func TestBrowserConnectAndDisconnect(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	b := newBrowser(t, m)

	// Signed in, and the one-time code is gone from the address bar.
	expect(t, "address", evalJS[string](b, `location.href`), m.URL+"/settings")
	expect(t, "token kept in the tab", evalJS[bool](b, `sessionStorage.getItem("switchboard.token") !== null`), true)
	b.until("the CRM grid", `!!document.querySelector('[data-testid="crm-grid"] [data-provider="sandbox"] [data-action="CONNECT"]')`)
	for _, s := range []string{"CRM", "Personal Integrations", "Workflows & Notifications", "Other integrations"} {
		if !strings.Contains(b.text("#surfaces"), s) {
			t.Errorf("surfaces: %q missing", s)
		}
	}
	// Providers without credentials say so instead of offering Connect.
	hub := b.text(`[data-provider="hubspot"]`)
	if !strings.Contains(hub, "No OAuth credentials") || strings.Contains(hub, "Connect") {
		t.Errorf("hubspot card: got %q; want the unavailable reason and no Connect", hub)
	}
	b.shot("01-loaded")
	b.markPage()

	// Connect through the sandbox's account chooser in the OAuth window.
	b.signInInPopup(crmCard+` [data-action="CONNECT"]`, "ada@sandbox.test")
	b.until("the card is Connected", cardIs("CONNECTED"))
	b.stillSamePage()
	expect(t, "badge", b.text(crmCard+" .badge"), "Connected")
	if got := b.text(crmCard + ` [data-testid="account"]`); !strings.Contains(got, "ada@sandbox.test") {
		t.Errorf("account: got %q; want ada@sandbox.test", got)
	}
	expect(t, "actions", evalJS[[]string](b, `[...document.querySelectorAll('`+crmCard+` .actions button')].map(x => x.textContent)`),
		[]string{"Configure", "Disconnect CRM Integration"})
	b.shot("02-connected")
	id := evalJS[string](b, `document.querySelector('`+crmCard+`').dataset.integration`)

	// Disconnect asks first, with the exact warning; Cancel sends nothing.
	b.click(crmCard + ` [data-action="DISCONNECT"]`)
	b.until("the dialog", `document.querySelector("#disconnect-dialog").open`)
	expect(t, "warning", b.text("#disconnect-warning"), switchboard.CRMDisconnectWarning)
	b.shotViewport("03-disconnect-dialog")
	b.click(`#disconnect-dialog button[value="cancel"]`)
	b.until("the dialog closed", `!document.querySelector("#disconnect-dialog").open`)
	expect(t, "status after cancel", integration(t, c, id)["status"], "CONNECTED")
	expect(t, "card after cancel", evalJS[string](b, `document.querySelector('`+crmCard+`').dataset.status`), "CONNECTED")

	b.click(crmCard + ` [data-action="DISCONNECT"]`)
	b.until("the dialog", `document.querySelector("#disconnect-dialog").open`)
	b.click(`#disconnect-confirm`)
	b.until("the CRM grid again", `!!document.querySelector('[data-testid="crm-grid"] [data-provider="sandbox"] [data-action="CONNECT"]')`)
	expect(t, "status", integration(t, c, id)["status"], "DISCONNECTED")
	expect(t, "badge", b.text(crmCard+" .badge"), "Not connected")
	b.stillSamePage()
	b.shot("04-disconnected")
}

func TestBrowserReconnectAsAnotherAccount(t *testing.T) {
	m := mustStart(t, "")
	b := newBrowser(t, m)
	b.markPage()

	// Lin cannot grant deals.read: the card says so and offers Reconnect.
	b.signInInPopup(crmCard+` [data-action="CONNECT"]`, "limited@sandbox.test")
	b.until("the card shows Error", cardIs("ERROR"))
	expect(t, "badge", b.text(crmCard+" .badge"), "Error")
	if got := b.text(crmCard + ` [data-testid="status-message"]`); !strings.Contains(got, "deals.read") {
		t.Errorf("status message: got %q; want it to name deals.read", got)
	}
	errorWidth := evalJS[float64](b, `document.querySelector('`+crmCard+` .badge').getBoundingClientRect().width`)
	b.shot("05-missing-scopes")

	// Reconnect as Grace: Connected, and the identity change is shown.
	b.signInInPopup(crmCard+` [data-action="RECONNECT"]`, "grace@sandbox.test")
	b.until("the card is Connected", cardIs("CONNECTED"))
	b.stillSamePage()
	change := b.text(crmCard + ` [data-testid="identity-change"]`)
	if !strings.Contains(change, "Lin Ited") || !strings.Contains(change, "Grace Hopper") {
		t.Errorf("identity change: got %q; want Lin Ited → Grace Hopper", change)
	}
	expect(t, "identity order", evalJS[[]string](b, `[".identity-from", ".identity-to"].map(s => document.querySelector('`+crmCard+` '+s).textContent)`),
		[]string{"Lin Ited", "Grace Hopper"})
	// The badge keeps its size whatever it says: nothing moves.
	expect(t, "badge width", evalJS[float64](b, `document.querySelector('`+crmCard+` .badge').getBoundingClientRect().width`), errorWidth)
	if !strings.Contains(b.text("#activity-list"), "Lin Ited → Grace Hopper") {
		t.Errorf("activity: got %q; want the account change", b.text("#activity-list"))
	}
	b.shot("06-identity-changed")

	// A narrow window: nothing overflows sideways.
	b.do(chromedp.EmulateViewport(360, 800))
	b.until("a narrow layout", `document.documentElement.scrollWidth <= window.innerWidth`)
	b.shot("07-narrow")
}

func TestBrowserConfigure(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	b := newBrowser(t, m)
	b.until("the connected card", cardIs("CONNECTED"))

	// Keyboard: focus Configure and press Enter.
	b.do(chromedp.Focus(chromedp.CSS(crmCard+` [data-action="CONFIGURE"]`)), chromedp.KeyEvent("\r"))
	b.until("the settings form", `document.querySelector("#configure-dialog").open`)
	b.do(chromedp.SetValue(chromedp.ID("setting-sync_interval_minutes"), "2"))
	b.click("#configure-save")
	b.until("the field's error", `document.querySelector("#error-sync_interval_minutes").textContent !== ""`)
	expect(t, "invalid field", evalJS[string](b, `document.querySelector("#setting-sync_interval_minutes").getAttribute("aria-invalid")`), "true")
	if got := b.text("#error-sync_interval_minutes"); !strings.Contains(got, "sync_interval_minutes") {
		t.Errorf("field error: got %q; want the API's message for the field", got)
	}
	b.shotViewport("08-configure-error")
	expect(t, "unchanged", get(integration(t, c, id), "settings.0.value"), "15")

	b.do(chromedp.SetValue(chromedp.ID("setting-sync_interval_minutes"), "30"), chromedp.SetValue(chromedp.ID("setting-pipeline"), "all"))
	b.click("#configure-save")
	b.until("the form closed", `!document.querySelector("#configure-dialog").open`)
	in := integration(t, c, id)
	expect(t, "interval", get(in, "settings.0.value"), "30")
	expect(t, "pipeline", get(in, "settings.2.value"), "all")
}

// gatedListener accepts nothing until open is closed: the gateway is up,
// but the page cannot reach it yet.
type gatedListener struct {
	net.Listener
	open, closed chan struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	select {
	case <-l.open:
	case <-l.closed:
	}
	return l.Listener.Accept()
}

func (l *gatedListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return l.Listener.Close()
}

func TestBrowserResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	m := mustStart(t, dir)
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)
	b := newBrowser(t, m)
	b.until("the connected card", cardIs("CONNECTED"))
	b.markPage()
	addr := strings.TrimPrefix(m.URL, "http://")

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	b.until("the offline indicator", `document.body.dataset.conn === "offline"`)
	if got := b.text("#conn"); !strings.Contains(got, "Offline") {
		t.Errorf("indicator: got %q; want Offline", got)
	}
	b.shot("09-offline")

	// Same data, same port; two changes land before the page can reach it.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	gate := &gatedListener{Listener: ln, open: make(chan struct{}), closed: make(chan struct{})}
	m2 := mustStart(t, dir, func(m *Main) { m.Listener = gate })
	ctx := ctxAs(DemoUserID)
	if _, err := m2.service.Configure(ctx, switchboard.ConfigureInput{ID: id, Settings: []switchboard.SettingInput{{Key: "pipeline", Value: "renewals"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.service.Disconnect(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	missed := storeRevisions(t, m2, DemoWorkspaceID, evalUint(b, `document.body.dataset.revision`))
	if len(missed) != 2 {
		t.Fatalf("changes while offline: got %v; want 2", missed)
	}
	close(gate.open)

	b.until("live again", `document.body.dataset.conn === "live"`)
	b.until("the disconnected state", `!!document.querySelector('[data-testid="crm-grid"] [data-provider="sandbox"] [data-action="CONNECT"]')`)
	b.stillSamePage()
	// Resumed, not refetched: each change made meanwhile arrived as its event.
	expect(t, "events received", evalJS[[]string](b, `[...document.querySelectorAll("#activity-list li")].map(li => li.dataset.revision).reverse()`), missed)
	expect(t, "kinds", evalJS[[]string](b, `[...document.querySelectorAll("#activity-list li")].map(li => li.dataset.kind).reverse()`), []string{"CONFIGURED", "DISCONNECTED"})
	expect(t, "revision held", evalJS[string](b, `document.body.dataset.revision`), missed[1])
	b.shot("10-resumed")
}

func evalUint(b *browser, expr string) uint64 {
	b.t.Helper()
	var n uint64
	if _, err := fmt.Sscan(evalJS[string](b, expr), &n); err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return n
}

func TestBrowserRevocationTurnsBadgeToReconnect(t *testing.T) {
	// The refresher looks at every connection at least once an interval;
	// a short one makes the revocation show within the test.
	m := mustStart(t, "", fastRefresh(500*time.Millisecond, time.Hour))
	b := newBrowser(t, m)
	b.signInInPopup(crmCard+` [data-action="CONNECT"]`, "ada@sandbox.test")
	b.until("the card is Connected", cardIs("CONNECTED"))
	b.markPage()

	if n := m.sandbox.RevokeAccount("ada@sandbox.test"); n == 0 {
		t.Fatal("sandbox: no grant revoked")
	}
	b.until("the Reconnect badge", cardIs("RECONNECT_REQUIRED"))
	b.stillSamePage()
	expect(t, "badge", b.text(crmCard+" .badge"), "Reconnect")
	if got := b.text(crmCard + ` [data-testid="status-message"]`); got == "" {
		t.Error("status message: got none; want what happened")
	}
	if !evalJS[bool](b, `!!document.querySelector('`+crmCard+` [data-action="RECONNECT"]')`) {
		t.Error("actions: no Reconnect button")
	}
	b.shot("11-reconnect-required")
}

func TestBrowserTokenFormAndPlanNotes(t *testing.T) {
	m := mustStart(t, "")
	ctx := ctxAs(DemoUserID)
	if err := m.store.CreateWorkspace(ctx, &switchboard.Workspace{ID: "ws_base", Name: "Base", Plan: switchboard.PlanBase, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tok, err := m.service.CreateAPIToken(ctx, &switchboard.APIToken{WorkspaceID: "ws_base", UserID: "usr_b", Name: "b", Role: switchboard.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}

	b := &browser{t: t, m: m}
	b.ctx = newBrowserContext(t)
	// Without a sign-in link the page asks for a token.
	b.do(chromedp.EmulateViewport(1200, 900), chromedp.Navigate(m.URL+"/settings"))
	b.until("the sign-in form", `!document.querySelector("#signin").hidden`)
	b.do(chromedp.SendKeys(chromedp.ID("signin-token"), "sbt_not-a-token\r"))
	b.until("the error", `document.querySelector("#signin-error").textContent !== ""`)
	b.shot("00-signin")
	b.do(chromedp.SendKeys(chromedp.ID("signin-token"), tok+"\r"))
	b.until("the page is live", `document.body.dataset.conn === "live"`)

	// Plan base: no CRM and no Slack/Teams, each said once; personal
	// integrations are on the plan (Sandbox Mail, and Google and Microsoft
	// 365 without credentials).
	for _, c := range []struct{ section, plans string }{{"CRM", "pure and funky"}, {"MESSAGING", "pure and pitch"}} {
		sel := "#surface-" + c.section
		if got := b.text(sel + " .plan-note"); !strings.Contains(got, c.plans) || !strings.Contains(got, "base plan") {
			t.Errorf("%s note: got %q; want the plans %s", c.section, got, c.plans)
		}
		expect(t, c.section+" cards", evalJS[int](b, `document.querySelectorAll('`+sel+` .card').length`), 0)
	}
	expect(t, "personal cards", evalJS[int](b, `document.querySelectorAll('#surface-EMAIL_CALENDAR .card').length`), 3)
	expect(t, "Sandbox Mail connectable", evalJS[bool](b, `!!document.querySelector('`+mailCard+` [data-action="CONNECT"]')`), true)
	b.shot("12-plan-notes")
}

func TestBrowserBlockedPopupFallsBackToRedirect(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	b := newBrowser(t, m)
	// A popup blocker makes window.open return null; headless chromium
	// lets every popup through, so play the blocker's part.
	evalJS[chromedp.Void](b, `window.open = () => null`)
	b.click(crmCard + ` [data-action="CONNECT"]`)

	// The whole tab goes to the provider, then comes back to the page.
	b.do(chromedp.WaitVisible(chromedp.CSS(`button[value="ada@sandbox.test"]`)))
	b.click(`button[value="ada@sandbox.test"]`)
	b.until("back on the page, connected", cardIs("CONNECTED"))
	expect(t, "address", evalJS[string](b, `location.href`), m.URL+"/settings")
	if got := b.text("#notice"); !strings.Contains(got, "Sandbox CRM: Connected") {
		t.Errorf("notice: got %q; want Sandbox CRM: Connected", got)
	}
	in := c.must(`{ integrations { status account { email } } }`, nil)
	expect(t, "connected account", get(in, "integrations.0.account.email"), "ada@sandbox.test")
	b.shot("13-after-redirect")
}

const mailCard = `#surface-EMAIL_CALENDAR [data-provider="sandbox-mail"]`

// TestBrowserPersonalMail: Sandbox Mail shows under Personal Integrations,
// and connecting it in the OAuth window makes it the viewer's own card.
func TestBrowserPersonalMail(t *testing.T) {
	m := mustStart(t, "")
	b := newBrowser(t, m)
	b.until("the Sandbox Mail card", `!!document.querySelector('`+mailCard+` [data-action="CONNECT"]')`)
	expect(t, "section title", b.text(`#title-EMAIL_CALENDAR`), "Personal Integrations")
	expect(t, "card title", b.text(mailCard+" h3"), "Sandbox Mail")
	b.markPage()

	b.signInInPopup(mailCard+` [data-action="CONNECT"]`, "grace@sandbox.test")
	b.until("the mail card is Connected", fmt.Sprintf(`(document.querySelector(%q) || {dataset: {}}).dataset.status === "CONNECTED"`, mailCard))
	b.stillSamePage()
	if got := b.text(mailCard + ` [data-testid="account"]`); !strings.Contains(got, "grace@sandbox.test") {
		t.Errorf("account: got %q; want grace@sandbox.test", got)
	}
	b.shot("14-personal-mail-connected")
	id := evalJS[string](b, `document.querySelector('`+mailCard+`').dataset.integration`)
	in, err := m.store.FindIntegrationByID(context.Background(), DemoWorkspaceID, id)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "owner", in.OwnerUserID, DemoUserID)
}
