package refresher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/refresher"
	"github.com/bont/switchboard/seal"
	sb "github.com/bont/switchboard/switchboard"
)

// provider is an httptest token endpoint that behaves like a rotating
// OAuth provider: each refresh token works once, a reused one revokes the
// grant (invalid_grant). Behaviour per refresh token prefix:
// "hang" waits for release, "e500"/"e429" fail, "bad" is invalid_grant.
type provider struct {
	srv      *httptest.Server
	rotate   bool
	noExpiry bool
	mu       sync.Mutex
	calls    int
	live     map[string]bool // refresh tokens that work
	seq      int
	fail     int // answer this status to the next refreshes (0: none)
	hangSeen chan struct{}
	release  chan struct{}
}

func newProvider(t *testing.T, rotate bool) *provider {
	p := &provider{rotate: rotate, live: map[string]bool{}, hangSeen: make(chan struct{}, 10), release: make(chan struct{})}
	p.srv = httptest.NewServer(http.HandlerFunc(p.token))
	t.Cleanup(func() { close(p.release); p.srv.Close() })
	return p
}

func (p *provider) grant() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	rt := fmt.Sprintf("rt-%d", p.seq)
	p.live[rt] = true
	return rt
}

func (p *provider) Calls() int { p.mu.Lock(); defer p.mu.Unlock(); return p.calls }

func (p *provider) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	rt := r.PostForm.Get("refresh_token")
	p.mu.Lock()
	p.calls++
	fail := p.fail
	p.mu.Unlock()
	oauthErr := func(status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "120")
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if rt == "hang" {
		p.hangSeen <- struct{}{}
		select {
		case <-p.release:
		case <-r.Context().Done():
		}
		return
	}
	if fail != 0 {
		oauthErr(fail, "temporarily_unavailable")
		return
	}
	p.mu.Lock()
	ok := p.live[rt]
	if ok && p.rotate {
		delete(p.live, rt)
	}
	if !ok {
		p.live = map[string]bool{} // reuse: the whole grant goes
	}
	next := rt
	if ok && p.rotate {
		p.seq++
		next = fmt.Sprintf("rt-%d", p.seq)
		p.live[next] = true
	}
	p.seq++
	at := fmt.Sprintf("at-%d", p.seq)
	p.mu.Unlock()
	if !ok {
		oauthErr(http.StatusBadRequest, "invalid_grant")
		return
	}
	body := map[string]any{"access_token": at, "token_type": "Bearer", "instance_url": "https://eu1.example.test"}
	if p.rotate {
		body["refresh_token"] = next
	}
	if !p.noExpiry {
		body["expires_in"] = 3600
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time                  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration)             { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock                           { return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }
func (c *clock) After(d time.Duration) time.Time { return c.Now().Add(d) }

// recorder is a Broker that records what was published.
type recorder struct {
	mu  sync.Mutex
	evs []*sb.Event
}

func (r *recorder) Publish(ev *sb.Event) { r.mu.Lock(); r.evs = append(r.evs, ev); r.mu.Unlock() }
func (r *recorder) Subscribe(context.Context, sb.SubscribeRequest) (*sb.Subscription, error) {
	return nil, fmt.Errorf("not used")
}
func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		out = append(out, string(e.Kind)+":"+e.Integration.StatusReason)
	}
	return out
}

type env struct {
	t       *testing.T
	path    string
	keyring *seal.Keyring
	store   sb.Store
	bolt    *bolt.Store
	reg     *oauthflow.Registry
	pub     *recorder
	clock   *clock
	svc     *sb.Service
	r       *refresher.Refresher
}

func newEnv(t *testing.T, p *provider, timeout time.Duration) *env {
	t.Helper()
	key, _ := seal.NewRandomKey()
	kr, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: key})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := oauthflow.NewRegistry(oauthflow.Config{
		RedirectURL: "http://127.0.0.1/oauth/callback",
		HTTPClient:  &http.Client{Timeout: timeout},
		Providers: []oauthflow.ProviderConfig{{ID: "acme", Name: "Acme", Category: sb.CategoryCRM,
			ClientID: "c", ClientSecret: "s", AuthURL: p.srv.URL + "/authorize", TokenURL: p.srv.URL + "/token"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, path: filepath.Join(t.TempDir(), "sb.db"), keyring: kr, reg: reg, clock: newClock()}
	e.open(nil)
	return e
}

// open (re)starts the service over the data file, as a process start does.
func (e *env) open(wrap func(sb.Store) sb.Store) {
	e.t.Helper()
	if e.bolt != nil {
		e.bolt.Close()
	}
	st, err := bolt.Open(e.path, bolt.Options{Keyring: e.keyring, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	e.bolt, e.store = st, st
	if wrap != nil {
		e.store = wrap(st)
	}
	e.pub = &recorder{}
	e.svc = &sb.Service{Store: e.store, Broker: e.pub, OAuth: e.reg, Catalogue: e.reg, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	e.r = refresher.New(e.svc)
	e.svc.Observers, e.svc.TokenSource = []sb.CommitObserver{e.r}, e.r
	e.r.MinBackoff, e.r.MaxBackoff = time.Second, 2*time.Second
}

// seed stores a connected integration with tokens, as a callback would.
func (e *env) seed(id string, tok sb.TokenSet) {
	e.t.Helper()
	ctx := context.Background()
	_ = e.store.CreateWorkspace(ctx, &sb.Workspace{ID: "ws", Plan: sb.PlanPure})
	_, err := e.store.Commit(ctx, sb.Change{WorkspaceID: "ws", IntegrationID: id, Create: true, Tokens: &tok,
		Apply: func(*sb.Integration) (*sb.Integration, sb.EventKind, error) {
			return &sb.Integration{ID: id, ProviderID: "acme", Category: sb.CategoryCRM, OwnerUserID: "owner_" + id, Status: sb.StatusConnected,
				StatusReason: sb.ReasonAuthorized, Generation: 1}, sb.EventConnected, nil
		}})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) integration(id string) *sb.Integration {
	in, err := e.store.FindIntegrationByID(context.Background(), "ws", id)
	if err != nil {
		e.t.Fatal(err)
	}
	return in
}

func (e *env) tokens(id string) *sb.TokenSet {
	t, err := e.store.FindTokens(context.Background(), "ws", id, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: got %v; want %v", what, got, want)
	}
}

func TestSingleFlight(t *testing.T) {
	p := newProvider(t, true)
	e := newEnv(t, p, 5*time.Second)
	e.seed("int_a", sb.TokenSet{AccessToken: "old", RefreshToken: p.grant(), Expiry: e.clock.After(-time.Minute)})
	var wg sync.WaitGroup
	got := make([]string, 100)
	var fails atomic.Int32
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _, err := e.r.Token(context.Background(), "ws", "int_a", 0, false, "")
			if err != nil {
				fails.Add(1)
				return
			}
			got[i] = tok.AccessToken
		}()
	}
	wg.Wait()
	check(t, "failures", fails.Load(), 0)
	check(t, "token endpoint calls", p.Calls(), 1)
	stored := e.tokens("int_a")
	for i, g := range got {
		if g != stored.AccessToken {
			t.Fatalf("caller %d got %q; want the stored %q", i, g, stored.AccessToken)
		}
	}
	check(t, "rotated refresh token stored", p.live[stored.RefreshToken], true)
	check(t, "extra kept", stored.Extra["instance_url"], "https://eu1.example.test")
}

func TestRefusalsNeedReconnect(t *testing.T) {
	p := newProvider(t, true)
	e := newEnv(t, p, 5*time.Second)
	e.seed("int_revoked", sb.TokenSet{AccessToken: "a", RefreshToken: "not-a-grant", Expiry: e.clock.After(-time.Second)})
	e.seed("int_norefresh", sb.TokenSet{AccessToken: "b", Expiry: e.clock.After(-time.Second)})
	_, _, err := e.r.Token(context.Background(), "ws", "int_revoked", 0, false, "")
	check(t, "code", sb.ErrorCode(err), sb.ECONFLICT)
	in := e.integration("int_revoked")
	check(t, "status", in.Status, sb.StatusReconnectRequired)
	check(t, "reason", in.StatusReason, sb.ReasonTokenRevoked)
	_, _, err = e.r.Token(context.Background(), "ws", "int_norefresh", 0, false, "")
	check(t, "code", sb.ErrorCode(err), sb.ECONFLICT)
	check(t, "reason without refresh token", e.integration("int_norefresh").StatusReason, sb.ReasonTokenExpired)
	check(t, "events", e.pub.kinds(), []string{"RECONNECT_REQUIRED:TOKEN_REVOKED", "RECONNECT_REQUIRED:TOKEN_EXPIRED"})
	check(t, "scheduled", e.r.Len(), 0)
}

func TestRetryAfterAndWindow(t *testing.T) {
	p := newProvider(t, true)
	e := newEnv(t, p, 5*time.Second)
	e.seed("int_a", sb.TokenSet{AccessToken: "a", RefreshToken: p.grant(), Expiry: e.clock.After(time.Minute)})
	ctx := context.Background()
	if _, err := e.r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	p.fail = http.StatusTooManyRequests
	check(t, "not due at once", e.r.RunDue(ctx, e.clock.Now()), 0)
	e.clock.Add(48 * time.Second) // 80% of the minute-long token's life
	check(t, "due at load", e.r.RunDue(ctx, e.clock.Now()), 1)
	check(t, "calls", p.Calls(), 1)
	check(t, "status after one 429", e.integration("int_a").Status, sb.StatusConnected)
	e.clock.Add(60 * time.Second)
	check(t, "nothing due before Retry-After", e.r.RunDue(ctx, e.clock.Now()), 0)
	e.clock.Add(61 * time.Second)
	check(t, "due after Retry-After", e.r.RunDue(ctx, e.clock.Now()), 1)

	// A restart keeps the failure streak: the window counts from the
	// first failure, not from the restart.
	e.open(nil)
	if _, err := e.r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.fail = http.StatusInternalServerError
	p.mu.Unlock()
	e.clock.Add(14 * time.Minute)
	e.r.RunDue(ctx, e.clock.Now())
	check(t, "status at 16 minutes of failures", e.integration("int_a").Status, sb.StatusError)
	check(t, "reason", e.integration("int_a").StatusReason, sb.ReasonProviderUnavailable)

	p.mu.Lock()
	p.fail = 0
	p.mu.Unlock()
	e.clock.Add(time.Minute)
	e.r.RunDue(ctx, e.clock.Now())
	check(t, "status after the outage", e.integration("int_a").Status, sb.StatusConnected)
	check(t, "events", e.pub.kinds(), []string{"ERROR:PROVIDER_UNAVAILABLE", "RECOVERED:AUTHORIZED"})
}

func TestHungEndpointBlocksOnlyItsRefresh(t *testing.T) {
	p := newProvider(t, true)
	e := newEnv(t, p, 300*time.Millisecond)
	e.seed("int_hang", sb.TokenSet{AccessToken: "a", RefreshToken: "hang", Expiry: e.clock.After(-time.Second)})
	e.seed("int_ok", sb.TokenSet{AccessToken: "b", RefreshToken: p.grant(), Expiry: e.clock.After(-time.Second)})
	done := make(chan error, 1)
	go func() {
		_, _, err := e.r.Token(context.Background(), "ws", "int_hang", 0, false, "")
		done <- err
	}()
	<-p.hangSeen
	if _, _, err := e.r.Token(context.Background(), "ws", "int_ok", 0, false, ""); err != nil {
		t.Fatalf("the other connection: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the hung refresh returned before the other one finished: %v", err)
	default:
	}
	err := <-done
	check(t, "hung refresh", sb.ErrorCode(err), sb.EUNAVAILABLE)
	check(t, "status", e.integration("int_hang").Status, sb.StatusConnected)
}

// A shutdown (Run's context ending) aborts a refresh stuck at a hung token
// endpoint instead of waiting out the refresh timeout (an hour here).
func TestShutdownAbortsAHungRefresh(t *testing.T) {
	p := newProvider(t, true)
	e := newEnv(t, p, time.Hour)
	e.r.Timeout = time.Hour
	e.seed("int_hang", sb.TokenSet{AccessToken: "a", RefreshToken: "hang", Expiry: e.clock.After(-time.Second)})
	e.clock.Add(time.Minute) // due
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- e.r.Run(ctx) }()
	select {
	case <-p.hangSeen: // the scheduled refresh is at the provider
	case <-time.After(20 * time.Second):
		t.Fatal("the due refresh never reached the provider")
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended: it is waiting for the hung token endpoint")
	}
	check(t, "status", e.integration("int_hang").Status, sb.StatusConnected)
}

// failingPut makes the next PutTokens fail: the process "dies" between the
// provider's answer and the write.
type failingPut struct {
	sb.Store
	armed atomic.Bool
}

func (f *failingPut) PutTokens(ctx context.Context, ws, id string, gen, replaces uint64, t *sb.TokenSet) error {
	if f.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("simulated crash")
	}
	return f.Store.PutTokens(ctx, ws, id, gen, replaces, t)
}

func TestCrashBetweenAnswerAndCommit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rotate     bool
		wantStatus sb.Status
		wantReason string
	}{
		// The provider rotated and the new refresh token is lost: the old
		// one is now "reused". Said as it is, never silently broken.
		{"rotating provider", true, sb.StatusReconnectRequired, sb.ReasonRefreshInterrupted},
		// The refresh token did not change: the connection just works.
		{"non-rotating provider", false, sb.StatusConnected, sb.ReasonAuthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t, tc.rotate)
			e := newEnv(t, p, 5*time.Second)
			var fp *failingPut
			e.open(func(s sb.Store) sb.Store { fp = &failingPut{Store: s}; return fp })
			e.seed("int_a", sb.TokenSet{AccessToken: "a", RefreshToken: p.grant(), Expiry: e.clock.After(-time.Second)})
			fp.armed.Store(true)
			if _, _, err := e.r.Token(context.Background(), "ws", "int_a", 0, false, ""); err == nil {
				t.Fatal("refresh succeeded through a failed write")
			}
			check(t, "calls", p.Calls(), 1)

			e.open(nil) // restart
			ctx := context.Background()
			if _, err := e.r.Load(ctx); err != nil {
				t.Fatal(err)
			}
			check(t, "refreshed at start", e.r.RunDue(ctx, e.clock.Now()), 1)
			in := e.integration("int_a")
			check(t, "status", in.Status, tc.wantStatus)
			check(t, "reason", in.StatusReason, tc.wantReason)
		})
	}
}

func TestNoExpiresInStillRefreshed(t *testing.T) {
	p := newProvider(t, false)
	p.noExpiry = true
	e := newEnv(t, p, 5*time.Second)
	e.seed("int_sf", sb.TokenSet{AccessToken: "a", RefreshToken: p.grant()})
	ctx := context.Background()
	if _, err := e.r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(59 * time.Minute)
	check(t, "due before the interval", e.r.RunDue(ctx, e.clock.Now()), 0)
	e.clock.Add(2 * time.Minute)
	check(t, "due after the interval", e.r.RunDue(ctx, e.clock.Now()), 1)
	check(t, "calls", p.Calls(), 1)
	tok := e.tokens("int_sf")
	check(t, "expiry", tok.Expiry.IsZero(), true)
	check(t, "instance_url", tok.Extra["instance_url"], "https://eu1.example.test")
	e.clock.Add(61 * time.Minute)
	check(t, "due again an interval later", e.r.RunDue(ctx, e.clock.Now()), 1)
}

// Right after a start, a sync engine may ask for a token before the
// schedule has loaded: a valid token is handed out, not refreshed.
func TestTokenBeforeTheScheduleLoadsIsNotRefreshed(t *testing.T) {
	p := newProvider(t, true)
	e := newEnv(t, p, 5*time.Second)
	e.seed("int_a", sb.TokenSet{AccessToken: "fresh", RefreshToken: p.grant(), Expiry: e.clock.After(time.Hour)})
	e.open(nil) // a restart; Load has not run
	tok, _, err := e.r.Token(context.Background(), "ws", "int_a", 0, false, "")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "token", tok.AccessToken, "fresh")
	check(t, "token endpoint calls", p.Calls(), 0)
	e.clock.Add(59 * time.Minute) // within the margin: due
	tok, _, err = e.r.Token(context.Background(), "ws", "int_a", 0, false, "")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "calls once due", p.Calls(), 1)
	if tok.AccessToken == "fresh" {
		t.Errorf("got the old token after the refresh")
	}
}
