package switchboard_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/fanout"
	"github.com/bont/switchboard/refresher"
	"github.com/bont/switchboard/seal"
	sb "github.com/bont/switchboard/switchboard"
)

// The model-based test drives the lifecycle Service over a real bbolt
// store and broker with random sequences of operations, and checks after
// every step (token refreshes included: rotation, revocation, a provider
// that is down) that the store agrees with a simple model of what should have
// happened, and that the invariants hold:
//   - at most one current generation, and only its credentials (plus those
//     of generations whose teardown is still queued) exist;
//   - a teardown never touches a newer generation;
//   - badge and actions are derived from the status;
//   - revisions strictly increase, and the changelog replays to the
//     current state.

// fakeOAuth is a provider whose answers the test decides.
type fakeOAuth struct {
	mu         sync.Mutex
	next       int
	revokeFail bool
	revoked    []string // access tokens revoked
	// refresh is what the next token refresh does: "ok" (rotates),
	// "revoked" (invalid_grant) or "transient" (provider down).
	refresh string
}

var modelProvider = &sb.Provider{
	ID: "crm", Name: "Model CRM", Category: sb.CategoryCRM, Available: true,
	Scopes: []string{"read", "write"},
	SettingDefinitions: []sb.SettingDefinition{
		{Key: "interval", Label: "Interval", Type: sb.SettingInteger, Default: "15", Min: 5, Max: 60},
		{Key: "mode", Label: "Mode", Type: sb.SettingEnum, Options: []string{"a", "b"}, Default: "a"},
	},
}

func (f *fakeOAuth) Providers() []*sb.Provider { return []*sb.Provider{modelProvider} }
func (f *fakeOAuth) Provider(id string) (*sb.Provider, bool) {
	if id == modelProvider.ID {
		p := *modelProvider
		return &p, true
	}
	return nil, false
}

func (f *fakeOAuth) AuthCodeURL(providerID, state, loginHint string) (string, string, error) {
	return "https://crm.example/authorize?state=" + url.QueryEscape(state), "verifier-" + state, nil
}

// Exchange reads the outcome from the code: "<account>/<scopes>".
func (f *fakeOAuth) Exchange(ctx context.Context, providerID, code, verifier string) (*sb.Grant, error) {
	var account, scopes string
	if _, err := fmt.Sscanf(code, "%s %s", &account, &scopes); err != nil {
		return nil, sb.Errorf(sb.EINVALID, "invalid_grant")
	}
	f.mu.Lock()
	f.next++
	n := f.next
	f.mu.Unlock()
	granted := []string{"read", "write"}
	if scopes == "partial" {
		granted = []string{"read"}
	}
	return &sb.Grant{
		Tokens:        sb.TokenSet{AccessToken: "at-" + strconv.Itoa(n), RefreshToken: "rt-" + strconv.Itoa(n), Expiry: time.Now().Add(time.Hour)},
		Account:       sb.Account{ID: account, Email: account + "@crm.example"},
		GrantedScopes: granted,
	}, nil
}

func (f *fakeOAuth) Revoke(ctx context.Context, providerID string, t *sb.TokenSet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.revokeFail {
		return sb.Errorf(sb.EUNAVAILABLE, "provider down")
	}
	f.revoked = append(f.revoked, t.AccessToken)
	return nil
}

func (f *fakeOAuth) Refresh(ctx context.Context, providerID string, t *sb.TokenSet) (*sb.TokenSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch f.refresh {
	case "ok":
		f.next++
		n := strconv.Itoa(f.next)
		return &sb.TokenSet{AccessToken: "at-" + n, RefreshToken: "rt-" + n, Expiry: time.Now().Add(time.Hour)}, nil
	case "revoked":
		return nil, sb.Errorf(sb.EINVALID, "invalid_grant: the refresh token was revoked")
	}
	return nil, sb.Errorf(sb.EUNAVAILABLE, "provider down")
}

type modelClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *modelClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *modelClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// model is what the test expects.
type model struct {
	id       string
	exists   bool
	status   sb.Status
	gen      uint64
	account  string
	history  []string // account ids, in order
	settings map[string]string
	pending  []pendingAuth
	jobs     map[uint64]bool // generations with a queued teardown
}

type pendingAuth struct {
	state   string
	secret  string // the browser's cookie, from the start link
	intent  sb.AuthIntent
	gen     uint64
	started time.Time
}

var (
	modelSeeds = flag.Int("model.seeds", 4, "random sequences the lifecycle model test runs")
	modelSteps = flag.Int("model.steps", 200, "operations per sequence")
)

// Run longer with: go test -run Model ./switchboard -args -model.seeds=200 -model.steps=1000
func TestLifecycleModel(t *testing.T) {
	for seed := uint64(1); seed <= uint64(*modelSeeds); seed++ {
		steps := *modelSteps
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, steps) })
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	keys, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	clk := &modelClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	store, err := bolt.Open(t.TempDir()+"/model.db", bolt.Options{Keyring: keys, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	broker := fanout.New(store, 0, fanout.Options{QueueSize: 100000})
	defer broker.Close()
	oauth := &fakeOAuth{}
	svc := &sb.Service{Store: store, Broker: broker, OAuth: oauth, Catalogue: oauth, Now: clk.Now}
	refresher := refresher.New(svc)
	svc.Observers, svc.TokenSource = []sb.CommitObserver{refresher}, refresher
	// Transient failures never last long enough here to turn the badge
	// ERROR; that window has tests of its own.
	refresher.FailureWindow = 1000 * time.Hour
	if err := store.CreateWorkspace(ctx, &sb.Workspace{ID: "ws", Name: "W", Plan: sb.PlanPure}); err != nil {
		t.Fatal(err)
	}
	admin := sb.NewContextWithPrincipal(ctx, &sb.Principal{WorkspaceID: "ws", UserID: "u", Role: sb.RoleAdmin})
	zero := uint64(0)
	sub, err := broker.Subscribe(ctx, sb.SubscribeRequest{WorkspaceID: "ws", AfterRevision: &zero})
	if err != nil {
		t.Fatal(err)
	}

	r := rand.New(rand.NewPCG(seed, seed*7919))
	m := &model{settings: map[string]string{}, jobs: map[uint64]bool{}}
	var lastRev uint64
	accounts := []string{"ada", "grace", "lin"}

	for step := 0; step < steps; step++ {
		var op string
		switch n := r.IntN(100); {
		case n < 18:
			op = "connect"
			p, err := svc.Connect(admin, sb.ConnectInput{ProviderID: "crm"})
			if m.exists && m.status != sb.StatusDisconnected {
				wantCode(t, step, op, err, sb.ECONFLICT)
				break
			}
			if err != nil {
				t.Fatalf("step %d connect: %v", step, err)
			}
			m.exists, m.id = true, p.Integration.ID
			if m.status == "" {
				m.status = sb.StatusDisconnected
			}
			m.pending = append(m.pending, pendingOf(t, svc, p.AuthorizationURL, sb.IntentConnect, m.gen, clk.Now()))
		case n < 30:
			op = "reconnect"
			if !m.exists {
				break
			}
			p, err := svc.Reconnect(admin, sb.ReconnectInput{ID: m.id})
			if m.status == sb.StatusDisconnected {
				wantCode(t, step, op, err, sb.ECONFLICT)
				break
			}
			if err != nil {
				t.Fatalf("step %d reconnect: %v", step, err)
			}
			m.pending = append(m.pending, pendingOf(t, svc, p.AuthorizationURL, sb.IntentReconnect, m.gen, clk.Now()))
		case n < 55:
			op = "callback"
			if len(m.pending) == 0 {
				break
			}
			i := r.IntN(len(m.pending))
			pa := m.pending[i]
			m.pending = slices.Delete(m.pending, i, i+1)
			if clk.Now().Sub(pa.started) >= sb.DefaultStateTTL {
				_, err := svc.CompleteAuthorization(ctx, sb.CallbackParams{State: pa.state, BrowserSecret: pa.secret, Code: "ada full"})
				wantCode(t, step, op+" expired", err, sb.EINVALID)
				break
			}
			if r.IntN(8) == 0 {
				_, err := svc.CompleteAuthorization(ctx, sb.CallbackParams{State: pa.state, BrowserSecret: pa.secret, Error: "access_denied"})
				wantCode(t, step, op+" denied", err, sb.EINVALID)
				break
			}
			acct := accounts[r.IntN(len(accounts))]
			scopes := "full"
			if r.IntN(5) == 0 {
				scopes = "partial"
			}
			_, err := svc.CompleteAuthorization(ctx, sb.CallbackParams{State: pa.state, BrowserSecret: pa.secret, Code: acct + " " + scopes})
			ok := pa.gen == m.gen && ((pa.intent == sb.IntentConnect) == (m.status == sb.StatusDisconnected))
			if !ok {
				wantCode(t, step, op+" stale", err, sb.ECONFLICT)
				break
			}
			if err != nil {
				t.Fatalf("step %d callback: %v", step, err)
			}
			if pa.intent == sb.IntentConnect {
				m.gen++
				m.history = append(m.history, acct)
			} else if acct != m.account {
				m.history = append(m.history, acct)
			}
			m.account = acct
			m.status = sb.StatusConnected
			if scopes == "partial" {
				m.status = sb.StatusError
			}
		case n < 70:
			op = "configure"
			if !m.exists {
				break
			}
			key, val := "interval", strconv.Itoa(r.IntN(70))
			if r.IntN(2) == 0 {
				key, val = "mode", []string{"a", "b", "c"}[r.IntN(3)]
			}
			_, err := svc.Configure(admin, sb.ConfigureInput{ID: m.id, Settings: []sb.SettingInput{{Key: key, Value: val}}})
			d, _ := modelProvider.Definition(key)
			if _, verr := d.Validate(val); verr != nil {
				wantCode(t, step, op, err, sb.EINVALID)
				break
			}
			if m.status == sb.StatusDisconnected {
				wantCode(t, step, op, err, sb.ECONFLICT)
				break
			}
			if err != nil {
				t.Fatalf("step %d configure: %v", step, err)
			}
			canon, _ := d.Validate(val)
			m.settings[key] = canon
		case n < 82:
			op = "disconnect"
			if !m.exists {
				break
			}
			if _, err := svc.Disconnect(admin, m.id, true); err != nil {
				t.Fatalf("step %d disconnect: %v", step, err)
			}
			if m.status != sb.StatusDisconnected {
				m.jobs[m.gen] = true
				m.status = sb.StatusDisconnected
				m.account = ""
			}
		case n < 90:
			op = "refresh"
			if !m.exists {
				break
			}
			outcome := []string{"ok", "ok", "revoked", "transient"}[r.IntN(4)]
			oauth.mu.Lock()
			oauth.refresh = outcome
			oauth.mu.Unlock()
			op += " " + outcome
			_, _, err := refresher.Token(ctx, "ws", m.id, 0, true, "")
			if m.status == sb.StatusDisconnected || m.status == sb.StatusReconnectRequired {
				wantCode(t, step, op, err, sb.ECONFLICT)
				break
			}
			switch outcome {
			case "ok":
				if err != nil {
					t.Fatalf("step %d %s: %v", step, op, err)
				}
			case "revoked":
				wantCode(t, step, op, err, sb.ECONFLICT)
				m.status = sb.StatusReconnectRequired
			case "transient":
				wantCode(t, step, op, err, sb.EUNAVAILABLE)
			}
		default:
			op = "teardown"
			oauth.mu.Lock()
			oauth.revokeFail = r.IntN(3) == 0
			fail := oauth.revokeFail
			oauth.mu.Unlock()
			clk.Advance(15 * time.Minute) // every rescheduled job is due again
			svc.RunDueTeardowns(ctx)
			if !fail {
				m.jobs = map[uint64]bool{}
			}
		}
		lastRev = checkModel(t, ctx, step, op, store, svc, admin, sub, m, lastRev)
	}
}

// pendingOf opens the start link authURL as the browser would and returns
// the flow as the callback will see it: its state and the browser's cookie.
func pendingOf(t *testing.T, svc *sb.Service, authURL string, intent sb.AuthIntent, gen uint64, now time.Time) pendingAuth {
	t.Helper()
	st, err := svc.BeginAuthorization(context.Background(), path.Base(authURL))
	if err != nil {
		t.Fatalf("start link %s: %v", authURL, err)
	}
	return pendingAuth{st.State, st.BrowserSecret, intent, gen, now}
}

func wantCode(t *testing.T, step int, op string, err error, code string) {
	t.Helper()
	if sb.ErrorCode(err) != code {
		t.Fatalf("step %d %s: got %v; want %s", step, op, err, code)
	}
}

// checkModel compares the store with the model and checks the invariants. It
// returns the latest revision seen on the subscription.
func checkModel(t *testing.T, ctx context.Context, step int, op string, store *bolt.Store, svc *sb.Service, viewer context.Context, sub *sb.Subscription, m *model, lastRev uint64) uint64 {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("step %d (%s): %s", step, op, fmt.Sprintf(format, args...))
	}
	if !m.exists {
		return lastRev
	}
	in, err := store.FindIntegrationByID(ctx, "ws", m.id)
	if err != nil {
		fail("find: %v", err)
	}
	if in.Status != m.status || in.Generation != m.gen {
		fail("got status %s gen %d; want %s gen %d", in.Status, in.Generation, m.status, m.gen)
	}
	gotAcct := ""
	if in.Account != nil {
		gotAcct = in.Account.ID
	}
	if gotAcct != m.account {
		fail("account: got %q; want %q", gotAcct, m.account)
	}
	var hist []string
	open := 0
	for _, p := range in.AccountHistory {
		hist = append(hist, p.Account.ID)
		if p.Until == nil {
			open++
		}
	}
	if !slices.Equal(hist, m.history) {
		fail("history: got %v; want %v", hist, m.history)
	}
	if wantOpen := map[bool]int{true: 1, false: 0}[m.status != sb.StatusDisconnected && m.gen > 0]; open != wantOpen {
		fail("open account periods: got %d; want %d", open, wantOpen)
	}
	for k, v := range m.settings {
		if in.SettingValues[k] != v {
			fail("setting %s: got %q; want %q", k, in.SettingValues[k], v)
		}
	}
	// Badge and actions are derived from the status.
	if in.Badge() != sb.BadgeFor(in.Status) || !slices.Equal(svc.Actions(viewer, in), sb.ActionsFor(in.Status)) {
		fail("badge or actions not derived from %s", in.Status)
	}
	// At most one current generation; only it (and generations whose
	// teardown is queued) hold credentials.
	cur, hasCur := in.CurrentGeneration()
	for g := uint64(1); g <= m.gen; g++ {
		_, err := store.FindTokens(ctx, "ws", m.id, g)
		has := err == nil
		want := (hasCur && g == cur) || m.jobs[g]
		if has != want {
			fail("tokens of generation %d: present %v; want %v (current %d %v, queued %v)", g, has, want, cur, hasCur, m.jobs)
		}
	}
	// Revisions strictly increase, and the changelog replays to the state.
	var last *sb.Event
	for {
		ev, more := sub.Poll()
		if ev == nil {
			if !more {
				fail("subscription closed: %v", sub.Err())
			}
			break
		}
		if ev.Revision <= lastRev {
			fail("revision %d after %d", ev.Revision, lastRev)
		}
		lastRev = ev.Revision
		last = ev
	}
	if lastRev != in.Revision {
		fail("subscription at revision %d; integration at %d", lastRev, in.Revision)
	}
	if last != nil && (last.Integration.Status != in.Status || last.Integration.Generation != in.Generation) {
		fail("last event says %s gen %d; store %s gen %d", last.Integration.Status, last.Integration.Generation, in.Status, in.Generation)
	}
	evs, err := store.EventsAfter(ctx, "ws", 0, 0)
	if err != nil {
		fail("events: %v", err)
	}
	if n := len(evs); n == 0 || evs[n-1].Revision != in.Revision || evs[n-1].Integration.Status != in.Status {
		fail("changelog does not end at the current state")
	}
	return lastRev
}
