package refresher_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/refresher"
	"github.com/bont/switchboard/seal"
	sb "github.com/bont/switchboard/switchboard"
)

// The refresher's model test: a simulated clock, a rotating provider whose
// token lifetime the seed picks (1 s to 24 h, or none), and random
// interleavings of refresh answers (held back, then answered, failed or
// lost) with connects, reconnects (as the same or another account, with or
// without the old grant revoked), disconnects, teardowns, revocations,
// outages and restarts. After every step:
//   - the schedule's invariant holds (Refresher.Check against the store);
//   - no call reached the token endpoint sooner after a successful issue
//     than the lifetime rule allows (no storm);
//   - the stored credentials belong to the connection's latest
//     authorization (a refresh that raced a reconnect wrote nothing);
//   - a connection is RECONNECT_REQUIRED only if the provider refuses its
//     stored credentials, and a grant the provider revoked shows
//     RECONNECT_REQUIRED within one refresh period.

var (
	refreshModelSeeds = flag.Int("refresh.seeds", 18, "random sequences the refresher model test runs")
	refreshModelSteps = flag.Int("refresh.steps", 150, "operations per refresher model sequence")
)

// The lifetimes a seed picks from; 0 is a provider that gives no expires_in.
var modelLifetimes = []time.Duration{time.Second, 5 * time.Second, 8 * time.Second, 30 * time.Second,
	2 * time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour, 0}

// Run longer with: go test -run RefresherModel ./refresher -args -refresh.seeds=500 -refresh.steps=400
func TestRefresherModel(t *testing.T) {
	for seed := uint64(1); seed <= uint64(*refreshModelSeeds); seed++ {
		life := modelLifetimes[int(seed-1)%len(modelLifetimes)]
		t.Run(fmt.Sprintf("seed%d-life%s", seed, life), func(t *testing.T) {
			runRefresherModel(t, seed, life, *refreshModelSteps)
		})
	}
}

// ---- the provider ----

type rgrant struct {
	id      int
	created time.Time
	conn    string // workspace of the connection it was issued for
	current string // the refresh token that works now
	n       int
	revoked bool
}

// heldCall is a token request the test has not answered yet.
type heldCall struct {
	conn   string
	rt     string
	answer chan string // "ok", "5xx", "lost", "lost-processed"
}

// callRecord is one call to the token endpoint: when it was made, and
// when it was answered with new tokens (zero if it was not).
type callRecord struct {
	grant  int
	asked  time.Time
	issued time.Time
}

// rotatingProvider is a strict rotating OAuth provider: each refresh token
// works once; presenting a used one revokes the grant (reuse detection).
type rotatingProvider struct {
	life time.Duration
	now  func() time.Time

	mu      sync.Mutex
	grants  map[int]*rgrant
	byRT    map[string]*rgrant
	seq     int
	hold    map[string]bool // conn: hold its next call
	held    []*heldCall
	outage  bool
	calls   map[string][]*callRecord
	blocked int // calls waiting in held
}

func newRotatingProvider(life time.Duration, now func() time.Time) *rotatingProvider {
	return &rotatingProvider{life: life, now: now, grants: map[int]*rgrant{}, byRT: map[string]*rgrant{},
		hold: map[string]bool{}, calls: map[string][]*callRecord{}}
}

var rmProvider = &sb.Provider{ID: "crm", Name: "Rotating CRM", Category: sb.CategoryCRM, Available: true, Scopes: []string{"read"}}

func (p *rotatingProvider) Providers() []*sb.Provider { return []*sb.Provider{rmProvider} }
func (p *rotatingProvider) Provider(id string) (*sb.Provider, bool) {
	if id == rmProvider.ID {
		c := *rmProvider
		return &c, true
	}
	return nil, false
}
func (p *rotatingProvider) AuthCodeURL(providerID, state, loginHint string) (string, string, error) {
	return "https://crm.example/authorize?state=" + state, "verifier-" + state, nil
}

func (p *rotatingProvider) tokensLocked(g *rgrant) sb.TokenSet {
	g.n++
	g.current = fmt.Sprintf("g%d-r%d", g.id, g.n)
	p.byRT[g.current] = g
	t := sb.TokenSet{AccessToken: fmt.Sprintf("g%d-a%d", g.id, g.n), RefreshToken: g.current, TokenType: "Bearer"}
	if p.life > 0 {
		t.Expiry = p.now().Add(p.life)
	}
	return t
}

// Exchange issues a new grant; the code is "<workspace> <account>".
func (p *rotatingProvider) Exchange(ctx context.Context, providerID, code, verifier string) (*sb.Grant, error) {
	conn, account, _ := strings.Cut(code, " ")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	g := &rgrant{id: p.seq, conn: conn, created: p.now()}
	p.grants[g.id] = g
	return &sb.Grant{Tokens: p.tokensLocked(g), Account: sb.Account{ID: account, Email: account + "@crm.example"}, GrantedScopes: []string{"read"}}, nil
}

func (p *rotatingProvider) Revoke(ctx context.Context, providerID string, t *sb.TokenSet) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.byRT[t.RefreshToken]; g != nil {
		g.revoked = true
	}
	return nil
}

func (p *rotatingProvider) Refresh(ctx context.Context, providerID string, t *sb.TokenSet) (*sb.TokenSet, error) {
	p.mu.Lock()
	g := p.byRT[t.RefreshToken]
	conn, gid := "", 0
	if g != nil {
		conn, gid = g.conn, g.id
	}
	rec := &callRecord{grant: gid, asked: p.now()}
	p.calls[conn] = append(p.calls[conn], rec)
	answer := "ok"
	if g != nil && p.hold[conn] {
		delete(p.hold, conn)
		h := &heldCall{conn: conn, rt: t.RefreshToken, answer: make(chan string, 1)}
		p.held = append(p.held, h)
		p.blocked++
		p.mu.Unlock()
		answer = <-h.answer
		p.mu.Lock()
		p.blocked--
	}
	defer p.mu.Unlock()
	if p.outage && answer == "ok" {
		answer = "5xx"
	}
	switch answer {
	case "5xx":
		return nil, providerError{status: http.StatusBadGateway}
	case "lost":
		return nil, sb.Errorf(sb.EUNAVAILABLE, "the connection to the provider broke before an answer")
	}
	if g == nil || g.revoked {
		return nil, providerError{status: http.StatusBadRequest, code: "invalid_grant"}
	}
	if t.RefreshToken != g.current {
		g.revoked = true // reuse of a rotated refresh token: the grant goes
		return nil, providerError{status: http.StatusBadRequest, code: "invalid_grant"}
	}
	next := p.tokensLocked(g)
	if answer == "lost-processed" {
		return nil, sb.Errorf(sb.EUNAVAILABLE, "the provider's answer was lost")
	}
	rec.issued = p.now()
	return &next, nil
}

// usable reports whether the provider accepts rt now.
func (p *rotatingProvider) usable(rt string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.byRT[rt]
	return g != nil && !g.revoked && g.current == rt
}

func (p *rotatingProvider) grantOf(rt string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.byRT[rt]; g != nil {
		return g.id
	}
	return 0
}

// providerError is an OAuth error answer, as oauthflow classifies one.
type providerError struct {
	status int
	code   string
}

func (e providerError) Error() string {
	if e.code != "" {
		return e.code
	}
	return fmt.Sprintf("HTTP %d", e.status)
}
func (e providerError) ProviderFailure() sb.ProviderFailure {
	f := sb.ProviderFailure{Kind: sb.FailureTransient, Answered: e.status != 0, Code: e.code}
	switch {
	case e.code == "invalid_grant":
		f.Kind = sb.FailureGrantRefused
	case e.code != "":
		f.Kind = sb.FailureRefused
	}
	return f
}
func (e providerError) Unwrap() error {
	if e.code != "" {
		return sb.Errorf(sb.EINVALID, "the provider refused the grant: %s", e.code)
	}
	return sb.Errorf(sb.EUNAVAILABLE, "the provider answered HTTP %d", e.status)
}

// ---- the model ----

type rconn struct {
	ws          string
	id          string
	connected   bool // has a current generation
	latestGrant int  // grant of the latest completed authorization
	revokedAt   *time.Time
	disturbed   bool // since revokedAt: an outage, a held call or a restart
}

type refresherRig struct {
	t        *testing.T
	path     string
	keys     *seal.Keyring
	clk      *modelClock
	p        *rotatingProvider
	store    *bolt.Store
	svc      *sb.Service
	r        *refresher.Refresher
	restarts []time.Time
}

func (g *refresherRig) open() {
	g.t.Helper()
	st, err := bolt.Open(g.path, bolt.Options{Keyring: g.keys, Now: g.clk.Now})
	if err != nil {
		g.t.Fatal(err)
	}
	g.store = st
	g.svc = &sb.Service{Store: st, Broker: &recorder{}, OAuth: g.p, Catalogue: g.p, Now: g.clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	g.r = refresher.New(g.svc)
	g.svc.Observers, g.svc.TokenSource = []sb.CommitObserver{g.r}, g.r
	g.r.MinBackoff, g.r.MaxBackoff = time.Second, 2*time.Second
	g.r.FailureWindow = 1000 * time.Hour
	if _, err := g.r.Load(context.Background()); err != nil {
		g.t.Fatal(err)
	}
}

// quiesce waits until every refresh in flight has either finished or is
// held at the provider.
func (g *refresherRig) quiesce(step int) {
	g.t.Helper()
	for i := 0; ; i++ {
		g.p.mu.Lock()
		blocked := g.p.blocked
		g.p.mu.Unlock()
		if g.r.Stats().Running == blocked {
			// One more look after the goroutines had a chance to run.
			time.Sleep(200 * time.Microsecond)
			g.p.mu.Lock()
			blocked = g.p.blocked
			g.p.mu.Unlock()
			if g.r.Stats().Running == blocked {
				return
			}
		}
		if i > 20000 {
			g.t.Fatalf("step %d: refreshes never settled (%d running, %d held)", step, g.r.Stats().Running, blocked)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// nominal is the refresh span the rule gives a token of life l, without
// jitter, and its lower bound with jitter.
func nominal(r *refresher.Refresher, l time.Duration) (lo, hi time.Duration) {
	interval, margin := refresher.DefaultRefreshInterval, refresher.DefaultRefreshMargin
	gap := max(refresher.DefaultMinRefreshGap, l/10)
	if l == 0 {
		return interval, interval
	}
	span := min(interval, l-min(margin, l/5))
	if span >= interval {
		return interval, interval
	}
	return max(gap, span-span/16-1), max(gap, span)
}

func runRefresherModel(t *testing.T, seed uint64, life time.Duration, steps int) {
	ctx := context.Background()
	keys, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	clk := &modelClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := &refresherRig{t: t, path: t.TempDir() + "/refresh.db", keys: keys, clk: clk, p: newRotatingProvider(life, clk.Now)}
	g.open()
	defer func() { g.store.Close() }()

	rng := rand.New(rand.NewPCG(seed, seed*104729))
	conns := []*rconn{{ws: "ws1"}, {ws: "ws2"}, {ws: "ws3"}}
	for _, c := range conns {
		if err := g.store.CreateWorkspace(ctx, &sb.Workspace{ID: c.ws, Name: c.ws, Plan: sb.PlanPure}); err != nil {
			t.Fatal(err)
		}
	}
	admin := func(c *rconn) context.Context {
		return sb.NewContextWithPrincipal(ctx, &sb.Principal{WorkspaceID: c.ws, UserID: "u", Role: sb.RoleAdmin})
	}
	accounts := []string{"ada", "grace"}
	lo, hi := nominal(g.r, life)
	// How far the clock moves in one step: around the token's lifetime.
	scale := life
	if scale == 0 || scale > refresher.DefaultRefreshInterval {
		scale = refresher.DefaultRefreshInterval
	}
	authorize := func(step int, c *rconn, payload *sb.AuthorizationPayload, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("step %d %s: start authorization: %v", step, c.ws, err)
		}
		acct := accounts[rng.IntN(len(accounts))]
		pa := pendingOf(t, g.svc, payload.AuthorizationURL, "", 0, clk.Now())
		res, err := g.svc.CompleteAuthorization(ctx, sb.CallbackParams{State: pa.state, BrowserSecret: pa.secret, Code: c.ws + " " + acct})
		if err != nil {
			t.Fatalf("step %d %s: callback: %v", step, c.ws, err)
		}
		c.id, c.connected, c.revokedAt = res.Integration.ID, true, nil
		g.p.mu.Lock()
		c.latestGrant = g.p.seq
		g.p.mu.Unlock()
	}

	checked := map[string]int{} // conn → calls already checked
	for step := 0; step < steps; step++ {
		c := conns[rng.IntN(len(conns))]
		var op string
		switch n := rng.IntN(100); {
		case n < 30:
			op = "advance"
			d := time.Duration(rng.Int64N(int64(scale)*3/2)) + time.Millisecond
			clk.Advance(d)
			g.r.StartDue(ctx, clk.Now())
		case n < 40:
			op = "connect " + c.ws
			if c.connected {
				break
			}
			p, err := g.svc.Connect(admin(c), sb.ConnectInput{ProviderID: "crm"})
			authorize(step, c, p, err)
		case n < 52:
			op = "reconnect " + c.ws
			if !c.connected {
				break
			}
			if rng.IntN(2) == 0 { // the admin revoked access: that is why
				g.p.mu.Lock()
				if gr := g.p.grants[c.latestGrant]; gr != nil {
					gr.revoked = true
				}
				g.p.mu.Unlock()
				op += " (old grant revoked)"
			}
			p, err := g.svc.Reconnect(admin(c), sb.ReconnectInput{ID: c.id})
			authorize(step, c, p, err)
		case n < 58:
			op = "disconnect " + c.ws
			if !c.connected {
				break
			}
			if _, err := g.svc.Disconnect(admin(c), c.id, true); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			c.connected, c.revokedAt = false, nil
		case n < 61:
			op = "teardowns"
			g.svc.RunDueTeardowns(ctx)
		case n < 67:
			op = "revoke " + c.ws
			if !c.connected {
				break
			}
			g.p.mu.Lock()
			if gr := g.p.grants[c.latestGrant]; gr != nil && !gr.revoked {
				gr.revoked = true
				now := clk.Now()
				c.revokedAt, c.disturbed = &now, false
			}
			g.p.mu.Unlock()
		case n < 77:
			op = "hold " + c.ws
			g.p.mu.Lock()
			g.p.hold[c.ws] = true
			g.p.mu.Unlock()
		case n < 87:
			g.p.mu.Lock()
			if len(g.p.held) == 0 {
				g.p.mu.Unlock()
				op = "release (none)"
				break
			}
			i := rng.IntN(len(g.p.held))
			h := g.p.held[i]
			g.p.held = slices.Delete(g.p.held, i, i+1)
			g.p.mu.Unlock()
			answer := []string{"ok", "ok", "5xx", "lost", "lost-processed"}[rng.IntN(5)]
			op = "release " + h.conn + " " + answer
			h.answer <- answer
		case n < 91:
			g.p.mu.Lock()
			g.p.outage = !g.p.outage
			op = fmt.Sprint("outage ", g.p.outage)
			g.p.mu.Unlock()
		case n < 96:
			op = "token " + c.ws
			g.p.mu.Lock()
			heldHere := false
			for _, h := range g.p.held {
				heldHere = heldHere || h.conn == c.ws
			}
			g.p.mu.Unlock()
			if !c.connected || heldHere {
				break
			}
			_, _, _ = g.r.Token(ctx, c.ws, c.id, 0, false, "")
		default:
			op = "restart"
			g.store.Close()
			g.p.mu.Lock()
			held := g.p.held
			g.p.held = nil
			g.p.hold = map[string]bool{}
			g.p.mu.Unlock()
			for _, h := range held { // the process died: the answers never arrive
				h.answer <- []string{"lost", "lost-processed"}[rng.IntN(2)]
			}
			g.r.Wait()
			g.open()
			g.restarts = append(g.restarts, clk.Now())
		}
		g.quiesce(step)

		g.p.mu.Lock()
		outage, nheld := g.p.outage, len(g.p.held)
		var storm []string
		for ws, recs := range g.p.calls {
			// No storm: a call for a grant comes no sooner than the
			// lifetime rule allows after the grant's latest issue of
			// tokens (a restart may look at once at credentials whose
			// refresh was interrupted).
			for i := checked[ws]; i < len(recs); i++ {
				rec := recs[i]
				gr := g.p.grants[rec.grant]
				if gr == nil {
					continue
				}
				prev := gr.created
				for _, o := range recs[:i] {
					if o.grant == rec.grant && !o.issued.IsZero() && !o.issued.After(rec.asked) && o.issued.After(prev) {
						prev = o.issued
					}
				}
				restarted := slices.ContainsFunc(g.restarts, func(at time.Time) bool { return !at.Before(prev) })
				if gap := rec.asked.Sub(prev); gap < lo && !restarted {
					storm = append(storm, fmt.Sprintf("%s: a token call %s after grant %d's last issue; the rule allows no sooner than %s (%d calls so far)", ws, gap, rec.grant, lo, len(recs)))
				}
			}
			checked[ws] = len(recs)
		}
		g.p.mu.Unlock()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d life %s step %d (%s): %s", seed, life, step, op, fmt.Sprintf(format, args...))
		}
		if len(storm) > 0 {
			fail("%s", strings.Join(storm, "; "))
		}

		// The schedule's invariant.
		if err := g.r.Check(ctx); err != nil {
			fail("schedule: %v", err)
		}

		for _, cc := range conns {
			if cc.id == "" {
				continue
			}
			in, err := g.store.FindIntegrationByID(ctx, cc.ws, cc.id)
			if err != nil {
				fail("find %s: %v", cc.ws, err)
			}
			gen, current := in.CurrentGeneration()
			if current != cc.connected {
				fail("%s: current generation %v; want %v", cc.ws, current, cc.connected)
			}
			if !current {
				continue
			}
			tok, err := g.store.FindTokens(ctx, cc.ws, cc.id, gen)
			if err != nil {
				fail("%s: tokens: %v", cc.ws, err)
			}
			// A refresh that raced a reconnect wrote nothing.
			if got := g.p.grantOf(tok.RefreshToken); got != cc.latestGrant {
				fail("%s: stored credentials belong to grant %d; the latest authorization issued grant %d", cc.ws, got, cc.latestGrant)
			}
			// RECONNECT_REQUIRED only for credentials the provider refuses.
			if in.Status == sb.StatusReconnectRequired && g.p.usable(tok.RefreshToken) {
				fail("%s: RECONNECT_REQUIRED (%s) although the provider accepts its stored refresh token", cc.ws, in.StatusReason)
			}
			// A revoked grant shows within one refresh period.
			if cc.revokedAt != nil {
				if outage || nheld > 0 || op == "restart" {
					cc.disturbed = true
				}
				deadline := cc.revokedAt.Add(hi + g.r.MaxBackoff + time.Millisecond)
				if !cc.disturbed && op == "advance" && clk.Now().After(deadline) && in.Status != sb.StatusReconnectRequired {
					fail("%s: grant revoked at %s, still %s at %s (deadline %s)", cc.ws, cc.revokedAt.Format(time.StampMilli), in.Status, clk.Now().Format(time.StampMilli), deadline.Format(time.StampMilli))
				}
				if in.Status == sb.StatusReconnectRequired {
					cc.revokedAt = nil
				}
			}
		}
	}
	// Release what is still held so nothing leaks past the test.
	g.p.mu.Lock()
	held := g.p.held
	g.p.held = nil
	g.p.mu.Unlock()
	for _, h := range held {
		h.answer <- "5xx"
	}
	g.r.Wait()
}

// A provider whose tokens live a second gets a refresh every MinGap (not a
// loop), and the connection is logged once as refreshed unusually often.
func TestShortLivedTokensRefreshEveryGapAndWarnOnce(t *testing.T) {
	ctx := context.Background()
	keys, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	clk := &modelClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := &refresherRig{t: t, path: t.TempDir() + "/short.db", keys: keys, clk: clk, p: newRotatingProvider(time.Second, clk.Now)}
	g.open()
	defer g.store.Close()
	var logs strings.Builder
	var logMu sync.Mutex
	g.svc.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	if err := g.store.CreateWorkspace(ctx, &sb.Workspace{ID: "ws1", Name: "W", Plan: sb.PlanPure}); err != nil {
		t.Fatal(err)
	}
	admin := sb.NewContextWithPrincipal(ctx, &sb.Principal{WorkspaceID: "ws1", UserID: "u", Role: sb.RoleAdmin})
	p, err := g.svc.Connect(admin, sb.ConnectInput{ProviderID: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	pa := pendingOf(t, g.svc, p.AuthorizationURL, "", 0, clk.Now())
	if _, err := g.svc.CompleteAuthorization(ctx, sb.CallbackParams{State: pa.state, BrowserSecret: pa.secret, Code: "ws1 ada"}); err != nil {
		t.Fatal(err)
	}
	// Three simulated minutes, looking at the schedule every 100 ms.
	for i := 0; i < 1800; i++ {
		clk.Advance(100 * time.Millisecond)
		g.r.RunDue(ctx, clk.Now())
	}
	g.p.mu.Lock()
	calls := len(g.p.calls["ws1"])
	g.p.mu.Unlock()
	// One refresh every 2 s: 90 in 180 s (the old margin-only rule made
	// one at every look: 1,800).
	if calls < 85 || calls > 91 {
		t.Errorf("token calls in 3 minutes of 1-second tokens: got %d; want about 90 (one per 2 s)", calls)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "connection refreshed unusually often"); n != 1 {
		t.Fatalf("warnings: got %d; want exactly 1\n%s", n, out)
	}
	if !strings.Contains(out, "provider=crm") {
		t.Errorf("the warning does not name the provider:\n%s", out)
	}
	if st := g.r.Stats(); st.Scheduled != 1 || st.Overdue != 0 {
		t.Errorf("stats: got %+v; want 1 scheduled, none overdue", st)
	}
	if err := g.r.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
