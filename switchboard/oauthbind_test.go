package switchboard_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/fanout"
	"github.com/bont/switchboard/oauthflow"
	oauthsandbox "github.com/bont/switchboard/oauthflow/sandbox"
	"github.com/bont/switchboard/seal"
	sb "github.com/bont/switchboard/switchboard"
)

// bindEnv is a Service on a real bbolt file with a clock of its own and
// the sandbox provider served on loopback.
type bindEnv struct {
	svc   *sb.Service
	store *bolt.Store
	clock *clock
	url   string // the sandbox's server
}

func newBindEnv(t *testing.T) *bindEnv {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	sandbox, err := oauthsandbox.New(oauthsandbox.Config{BaseURL: srv.URL + "/sandbox", ClientID: "c", ClientSecret: "s",
		RedirectURIs: []string{srv.URL + "/oauth/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/sandbox/", http.StripPrefix("/sandbox", sandbox))
	reg, err := oauthflow.NewRegistry(oauthflow.Config{RedirectURL: srv.URL + "/oauth/callback", Providers: []oauthflow.ProviderConfig{sandbox.Provider()}})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := seal.NewRandomKey()
	kr, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: key})
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "sb.db"), bolt.Options{Keyring: kr, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateWorkspace(context.Background(), &sb.Workspace{ID: "ws", Name: "WS", Plan: sb.PlanPure}); err != nil {
		t.Fatal(err)
	}
	svc := &sb.Service{Store: st, Broker: fanout.New(st, 0, fanout.Options{}), OAuth: reg, Catalogue: reg, Now: clk.Now,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		StartURL: func(id string) string { return srv.URL + "/oauth/start/" + id }}
	return &bindEnv{svc: svc, store: st, clock: clk, url: srv.URL}
}

// token makes an API token that expires after ttl and returns the context
// of a request authenticated with it.
func (e *bindEnv) token(t *testing.T, ttl time.Duration) (context.Context, *sb.Principal) {
	t.Helper()
	exp := e.clock.After(ttl)
	secret, err := e.svc.CreateAPIToken(context.Background(), &sb.APIToken{WorkspaceID: "ws", UserID: "u", Name: "automation", Role: sb.RoleAdmin, ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.Authenticate(context.Background(), secret)
	if err != nil {
		t.Fatal(err)
	}
	return sb.NewContextWithPrincipal(context.Background(), p), p
}

// walk opens the start link authURL and the sandbox's page (which
// approves at once with a login hint) as a browser does, and returns the
// callback's parameters with the browser's cookie.
func (e *bindEnv) walk(t *testing.T, authURL string) sb.CallbackParams {
	t.Helper()
	if !strings.HasPrefix(authURL, e.url+"/oauth/start/") {
		t.Fatalf("authorizationUrl %q; want a start link", authURL)
	}
	start, err := e.svc.BeginAuthorization(context.Background(), path.Base(authURL))
	if err != nil {
		t.Fatalf("start link: %v", err)
	}
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(start.ProviderURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || cb.Query().Get("code") == "" {
		t.Fatalf("sandbox: got %d to %q; want a redirect with a code", resp.StatusCode, resp.Header.Get("Location"))
	}
	return sb.CallbackParams{State: cb.Query().Get("state"), Code: cb.Query().Get("code"), BrowserSecret: start.BrowserSecret}
}

// A flow dies with the API token that started it: the callback after the
// token expired is refused and changes nothing, and the flow is over.
func TestCallbackAfterTheStartingTokenExpired(t *testing.T) {
	e := newBindEnv(t)
	var refusals []string
	e.svc.AuthRefused = func(step, reason string) { refusals = append(refusals, step+" "+reason) }
	ctx, _ := e.token(t, 5*time.Minute)
	pay, err := e.svc.Connect(ctx, sb.ConnectInput{ProviderID: "sandbox", LoginHint: "ada@sandbox.test"})
	if err != nil {
		t.Fatal(err)
	}
	cp := e.walk(t, pay.AuthorizationURL)
	pay2, err := e.svc.Connect(ctx, sb.ConnectInput{ProviderID: "sandbox", LoginHint: "ada@sandbox.test"})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := e.store.FindIntegrationByID(context.Background(), "ws", pay.Integration.ID)

	// The token expires; the flow's state (10 minutes) has not.
	e.clock.Add(6 * time.Minute)
	_, err = e.svc.CompleteAuthorization(context.Background(), cp)
	if sb.ErrorCode(err) != sb.EFORBIDDEN || !strings.Contains(sb.ErrorMessage(err), "has expired") {
		t.Fatalf("callback: got %v; want FORBIDDEN saying the token expired", err)
	}
	after, _ := e.store.FindIntegrationByID(context.Background(), "ws", pay.Integration.ID)
	check(t, "integration", []any{after.Status, after.Revision, after.Generation}, []any{before.Status, before.Revision, before.Generation})
	_, err = e.svc.CompleteAuthorization(context.Background(), cp)
	check(t, "the same callback again", sb.ErrorCode(err), sb.EINVALID)
	_, err = e.svc.BeginAuthorization(context.Background(), path.Base(pay2.AuthorizationURL))
	check(t, "the other flow's start link", sb.ErrorCode(err), sb.EFORBIDDEN)
	check(t, "refusals", refusals, []string{"callback token_expired", "start token_expired"})
}

// The callback needs the browser's secret; without it the state stays
// pending for the browser that has it. An expired state is consumed
// whoever presents it.
func TestCallbackBindingLeavesTheStatePending(t *testing.T) {
	e := newBindEnv(t)
	ctx, _ := e.token(t, time.Hour)
	pay, err := e.svc.Connect(ctx, sb.ConnectInput{ProviderID: "sandbox", LoginHint: "ada@sandbox.test"})
	if err != nil {
		t.Fatal(err)
	}
	cp := e.walk(t, pay.AuthorizationURL)
	for _, secret := range []string{"", "not-the-secret", cp.BrowserSecret + "x"} {
		replay := cp
		replay.BrowserSecret = secret
		if _, err := e.svc.CompleteAuthorization(context.Background(), replay); sb.ErrorCode(err) != sb.EFORBIDDEN {
			t.Fatalf("secret %q: got %v; want FORBIDDEN", secret, err)
		}
	}
	res, err := e.svc.CompleteAuthorization(context.Background(), cp)
	if err != nil {
		t.Fatalf("with the browser's secret: %v", err)
	}
	check(t, "status", res.Integration.Status, sb.StatusConnected)

	// An expired flow: refused as expired, with or without the secret, once.
	if _, err := e.svc.Disconnect(ctx, res.Integration.ID, true); err != nil {
		t.Fatal(err)
	}
	pay, err = e.svc.Connect(ctx, sb.ConnectInput{ProviderID: "sandbox", LoginHint: "ada@sandbox.test"})
	if err != nil {
		t.Fatal(err)
	}
	cp = e.walk(t, pay.AuthorizationURL)
	e.clock.Add(sb.DefaultStateTTL)
	_, err = e.svc.BeginAuthorization(context.Background(), path.Base(pay.AuthorizationURL))
	if sb.ErrorCode(err) != sb.EINVALID || !strings.Contains(sb.ErrorMessage(err), "expired") {
		t.Errorf("expired start link: got %v; want INVALID_INPUT saying it expired", err)
	}
	cp.BrowserSecret = ""
	if _, err := e.svc.CompleteAuthorization(context.Background(), cp); sb.ErrorCode(err) != sb.EINVALID || !strings.Contains(sb.ErrorMessage(err), "took longer") {
		t.Errorf("expired callback: got %v; want INVALID_INPUT saying it took too long", err)
	}
	if _, err := e.svc.CompleteAuthorization(context.Background(), cp); sb.ErrorCode(err) != sb.EINVALID || !strings.Contains(sb.ErrorMessage(err), "already used") {
		t.Errorf("expired callback again: got %v; want it gone", err)
	}
}
