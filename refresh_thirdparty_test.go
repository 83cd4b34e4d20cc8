package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/internal/oauthtestserver"
)

// A custom provider whose authorization server is a third-party
// implementation (go-oauth2/oauth2) running in its own process, issuing
// 8-second access tokens and rotating refresh tokens strictly (a reused one
// gets invalid_grant). Over 30 seconds, with a reconnect in the middle, the
// gateway refreshes every token of the current grant before it expires, at
// least twice and at most once every 2 seconds on average, never presents
// a refresh token twice, and the badge stays Connected. Then the provider
// revokes every grant, and the subscriber sees RECONNECT_REQUIRED within
// one token lifetime and a few seconds.
//
// Its bounds are on behaviour (a token refreshed before it expires, a
// revocation shown within a lifetime plus 5 s), not on performance: a
// correct refresher meets them with seconds to spare.
func TestThirdPartyProviderShortTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about 40 seconds of refreshes against a provider process")
	}
	const (
		ttl      = 8 * time.Second  // access token lifetime at the provider
		window   = 30 * time.Second // observed with the badge Connected
		minGap   = 2 * time.Second  // the fewest seconds per refresh on average
		showIn   = ttl + 5*time.Second
		secret   = "acme-secret"
		email    = "ada@acme.test"
		clientID = "acme-client"
	)

	// The gateway's address comes first: the provider registers its
	// callback as the one redirect URI it accepts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gateway := "http://" + ln.Addr().String()
	p := startThirdPartyProvider(t, oauthtestserver.Config{
		ClientID: clientID, ClientSecret: secret, RedirectURI: gateway + "/oauth/callback", AccessTokenTTL: ttl,
	})

	dir := t.TempDir()
	file := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`providers:
  - id: acme
    name: Acme
    category: OTHER
    clientId: %s
    clientSecret: ${ACME_SECRET}
    authUrl: %[2]s/authorize
    tokenUrl: %[2]s/token
    revokeUrl: %[2]s/revoke
    userinfoUrl: %[2]s/userinfo
    identity: { id: sub, name: name, email: email }
    scopes: [contacts.read, deals.read]
`, clientID, p.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACME_SECRET", secret)
	m := mustStart(t, filepath.Join(dir, "data"), func(m *Main) {
		m.Listener = ln
		m.Config.ProvidersFile = file
	})
	c := newClient(t, m, m.DemoToken)
	events := watchEvents(t, subscribeLive(t, m))

	d := c.must(`mutation($email: String) { connectIntegration(input: {provider: "acme", loginHint: $email}) { authorizationUrl integration { id } } }`,
		map[string]any{"email": email})
	id := str(d, "connectIntegration.integration.id")
	if status, body := authorize(t, str(d, "connectIntegration.authorizationUrl")); status != http.StatusOK {
		t.Fatalf("connect: the callback answered %d %s; want 200", status, body)
	}
	in := integration(t, c, id)
	expect(t, "status after connect", in["status"], "CONNECTED")
	expect(t, "account from the provider's userinfo", str(in, "account.email"), email)
	start := time.Now()

	time.Sleep(window / 2)
	d = c.must(`mutation($id: ID!, $email: String) { reconnectIntegration(input: {id: $id, loginHint: $email}) { authorizationUrl } }`,
		map[string]any{"id": id, "email": email})
	if status, body := authorize(t, str(d, "reconnectIntegration.authorizationUrl")); status != http.StatusOK {
		t.Fatalf("reconnect: the callback answered %d %s; want 200", status, body)
	}
	time.Sleep(time.Until(start.Add(window)))

	log, err := p.Calls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	in = integration(t, c, id)
	expect(t, "status after the window", in["status"], "CONNECTED")
	expect(t, "badge after the window", in["badge"], map[string]any{"label": "Connected", "tone": "SUCCESS"})
	connected := false
	for _, e := range events.all() {
		// Before its first connection the card is DISCONNECTED (CREATED).
		connected = connected || e.Integration.Status == "CONNECTED"
		if connected && e.Integration.Status != "CONNECTED" {
			t.Errorf("the badge left Connected during the window: %s at %s (%s)", e.Kind, e.at.Sub(start), e.Integration.Status)
		}
	}
	if !connected {
		t.Errorf("the subscriber saw no event with the badge Connected")
	}
	sched := readSchedule(log)
	for _, problem := range sched.check(window, minGap) {
		t.Error(problem)
	}
	few := 0
	if t.Failed() {
		few = 8
	}
	t.Logf("token endpoint, times from the first exchange:\n%s", sched.timeline(few))

	// Operators see the schedule and the calls by outcome.
	metrics := getMetrics(t, m)
	for _, want := range []string{
		"switchboard_refresh_scheduled_connections 1",
		"switchboard_refresh_overdue_seconds 0",
		`switchboard_token_refreshes_total{class="ok",provider="acme"} `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The provider revokes every grant: the next refresh gets
	// invalid_grant, and it must come within a token lifetime.
	revokedAt := time.Now()
	if n, err := p.RevokeAll(context.Background()); err != nil || n == 0 {
		t.Fatalf("revoke-all at the provider: %d grants, %v; want at least the current one", n, err)
	}
	ev, ok := events.waitFor("RECONNECT_REQUIRED", revokedAt.Add(showIn))
	if !ok {
		after, err := p.Calls(context.Background())
		if err != nil || len(after.Calls) < len(log.Calls) {
			t.Fatalf("no RECONNECT_REQUIRED within %v of the provider revoking the grant (call log: %v)", showIn, err)
		}
		since, refused := after.Calls[len(log.Calls):], 0
		for _, call := range since {
			if call.Error == "invalid_grant" {
				refused++
			}
		}
		t.Fatalf("no RECONNECT_REQUIRED within %v of the provider revoking the grant (token calls since: %d, refused with invalid_grant: %d; status now %v; subscription: %v)",
			showIn, len(since), refused, integration(t, c, id)["status"], events.failure())
	}
	t.Logf("RECONNECT_REQUIRED %.1fs after the revocation", ev.at.Sub(revokedAt).Seconds())
	if metrics := getMetrics(t, m); !strings.Contains(metrics, `switchboard_token_refreshes_total{class="invalid_grant",provider="acme"} 1`) ||
		!strings.Contains(metrics, "switchboard_refresh_scheduled_connections 0") {
		t.Errorf("/metrics after the revocation: want one invalid_grant call for acme and nothing scheduled")
	}
	in = integration(t, c, id)
	expect(t, "status after revocation", in["status"], "RECONNECT_REQUIRED")
	expect(t, "badge after revocation", in["badge"], map[string]any{"label": "Reconnect", "tone": "WARNING"})
}

// startThirdPartyProvider runs oauthtestserver as a child process of this
// test binary (TestMain serves it) and kills it when the test ends.
func startThirdPartyProvider(t *testing.T, cfg oauthtestserver.Config) *oauthtestserver.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := oauthtestserver.Start(exe, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// ---- events as they arrive ----

type seenEvent struct {
	event
	at time.Time
}

type eventWatch struct {
	mu     sync.Mutex
	events []seenEvent
	err    error
	more   chan struct{} // closed and replaced on every change
}

// watchEvents reads ws's events in the background until the socket closes.
func watchEvents(t *testing.T, ws *wsClient) *eventWatch {
	w := &eventWatch{more: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := ws.nextEvent(time.Minute)
			w.mu.Lock()
			if err != nil {
				w.err = err
			} else {
				w.events = append(w.events, seenEvent{event: ev, at: time.Now()})
			}
			close(w.more)
			w.more = make(chan struct{})
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ws.conn.Close(); <-done })
	return w
}

// failure is why the subscription ended, or nil while it runs.
func (w *eventWatch) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *eventWatch) all() []seenEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]seenEvent(nil), w.events...)
}

// waitFor returns the first event of kind, waiting until deadline.
func (w *eventWatch) waitFor(kind string, deadline time.Time) (seenEvent, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		w.mu.Lock()
		for _, e := range w.events {
			if e.Kind == kind {
				w.mu.Unlock()
				return e, true
			}
		}
		more, failed := w.more, w.err != nil
		w.mu.Unlock()
		if failed {
			return seenEvent{}, false
		}
		select {
		case <-more:
		case <-timer.C:
			return seenEvent{}, false
		}
	}
}

// ---- the provider's view of the refresh schedule ----

// schedule is the token endpoint's log cut into grants: each authorization
// code exchange starts one, and each refresh continues the grant whose
// latest refresh token it presents.
type schedule struct {
	start, end time.Time // the first exchange; when the log was read
	grants     []grant
	refreshes  []oauthtestserver.Call // all of them, in order
}

type grant struct {
	exchange  oauthtestserver.Call
	refreshes []oauthtestserver.Call // the successful ones, in rotation order
	// until is when the grant stopped being the connection's: the next
	// grant's exchange, or the end of the log.
	until time.Time
}

func readSchedule(log oauthtestserver.CallLog) *schedule {
	s := &schedule{end: log.Now}
	// next maps an issued refresh token to the first successful refresh
	// that presented it.
	next := map[string]oauthtestserver.Call{}
	for _, c := range log.Calls {
		if c.Endpoint != "token" {
			continue
		}
		switch c.GrantType {
		case "authorization_code":
			if c.Status == http.StatusOK {
				s.grants = append(s.grants, grant{exchange: c})
			}
		case "refresh_token":
			s.refreshes = append(s.refreshes, c)
			if _, seen := next[c.Presented]; !seen && c.Status == http.StatusOK {
				next[c.Presented] = c
			}
		}
	}
	for i := range s.grants {
		g := &s.grants[i]
		g.until = s.end
		if i+1 < len(s.grants) {
			g.until = s.grants[i+1].exchange.At
		}
		for cur := g.exchange; ; {
			r, ok := next[cur.IssuedRefresh]
			if !ok {
				break
			}
			g.refreshes = append(g.refreshes, r)
			cur = r
		}
	}
	if len(s.grants) > 0 {
		s.start = s.grants[0].exchange.At
	}
	return s
}

func (s *schedule) rel(at time.Time) string { return fmt.Sprintf("+%.1fs", at.Sub(s.start).Seconds()) }

// check returns what is wrong with the schedule over a window in which the
// connection was connected, then reconnected once.
func (s *schedule) check(window, minGap time.Duration) []string {
	var out []string
	if len(s.grants) != 2 {
		return []string{fmt.Sprintf("%d authorization code exchanges; want 2 (connect, reconnect)", len(s.grants))}
	}
	n := len(s.refreshes)
	if n < 2 {
		out = append(out, fmt.Sprintf("%d refreshes in %v; want at least 2", n, window))
	}
	if most := int(window / minGap); n > most {
		out = append(out, fmt.Sprintf("%d refreshes in %v (one every %.0f ms); want at most %d, one every %v on average",
			n, window, float64(window.Milliseconds())/float64(n), most, minGap))
	}
	presented := map[string]int{}
	reused, failed := 0, 0
	for _, r := range s.refreshes {
		if presented[r.Presented]++; presented[r.Presented] > 1 {
			reused++
		}
		if r.Status != http.StatusOK {
			failed++
		}
	}
	if reused > 0 {
		out = append(out, fmt.Sprintf("%d refreshes presented a refresh token already presented before", reused))
	}
	if failed > 0 {
		out = append(out, fmt.Sprintf("%d refreshes refused by the provider before any revocation", failed))
	}

	// Every access token of a grant is refreshed before it expires, as
	// long as the grant is the connection's.
	for i, g := range s.grants {
		cur, more := g.exchange, g.refreshes
		for cur.ExpiresAt.Before(g.until) {
			if len(more) == 0 {
				out = append(out, fmt.Sprintf("grant %d: the access token issued at %s expired at %s and was never refreshed (the grant was the connection's until %s)",
					i+1, s.rel(cur.At), s.rel(cur.ExpiresAt), s.rel(g.until)))
				break
			}
			r := more[0]
			more = more[1:]
			if !r.At.Before(cur.ExpiresAt) {
				out = append(out, fmt.Sprintf("grant %d: the access token issued at %s expired at %s and was refreshed only at %s",
					i+1, s.rel(cur.At), s.rel(cur.ExpiresAt), s.rel(r.At)))
			}
			cur = r
		}
	}
	if last := s.grants[len(s.grants)-1]; len(last.refreshes) == 0 {
		out = append(out, fmt.Sprintf("no refresh of the grant made by the reconnect at %s", s.rel(last.exchange.At)))
	}
	return out
}

// last is the grant's latest token call: its newest refresh, or its
// exchange.
func (g grant) last() oauthtestserver.Call {
	if len(g.refreshes) == 0 {
		return g.exchange
	}
	return g.refreshes[len(g.refreshes)-1]
}

// timeline describes the token calls: each grant's refreshes, and the
// first and last few calls.
func (s *schedule) timeline(few int) string {
	var b strings.Builder
	for i, g := range s.grants {
		fmt.Fprintf(&b, "  grant %d: exchange at %s, the connection's until %s, %d refreshes, the last at %s\n",
			i+1, s.rel(g.exchange.At), s.rel(g.until), len(g.refreshes), s.rel(g.last().At))
	}
	all := append([]oauthtestserver.Call(nil), s.refreshes...)
	for _, g := range s.grants {
		all = append(all, g.exchange)
	}
	slices.SortStableFunc(all, func(a, b oauthtestserver.Call) int { return a.At.Compare(b.At) })
	for i, c := range all {
		if few == 0 {
			break
		}
		if i == few && len(all) > 2*few {
			fmt.Fprintf(&b, "  ... %d more ...\n", len(all)-2*few)
		}
		if i >= few && i < len(all)-few {
			continue
		}
		fmt.Fprintf(&b, "  %s %s presented=%s issued=%s status=%d %s", s.rel(c.At), c.GrantType, c.Presented, c.IssuedRefresh, c.Status, c.Error)
		if !c.ExpiresAt.IsZero() {
			fmt.Fprintf(&b, " expires %s", s.rel(c.ExpiresAt))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// getMetrics reads the gateway's /metrics page.
func getMetrics(t *testing.T, m *Main) string {
	t.Helper()
	resp, err := http.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
