// Package crashtest kills the real gateway binary with SIGKILL at random
// moments while clients mutate and subscribe, restarts it, and checks that
// nothing acknowledged was lost and nothing was half-applied.
//
//	go test ./crashtest                                   # a few cycles
//	SWITCHBOARD_CRASH_CYCLES=100 go test -v -timeout 30m ./crashtest
package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

func cycles() int {
	if n, err := strconv.Atoi(os.Getenv("SWITCHBOARD_CRASH_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 4
}

// ack is a mutation the gateway acknowledged.
type ack struct {
	revision uint64
	value    string
}

type seenEvent struct {
	kind   string
	status string
	value  string // sync_interval_minutes in the event's snapshot
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary")
	}
	bin := gatewayBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))

	var (
		mu      sync.Mutex
		acked   []ack
		events  = map[uint64]seenEvent{}
		lastRev uint64
		intID   string
	)
	n := cycles()
	for cycle := 0; cycle <= n; cycle++ {
		final := cycle == n
		g := start(t, bin, dir, addr)
		c := &client{base: "http://" + addr, token: g.token}
		if intID == "" {
			intID = c.connect(t, "ada@sandbox.test")
		}

		// The subscriber resumes from the last revision it saw.
		subDone := make(chan error, 1)
		ws := c.subscribe(t, lastRev)
		go func() {
			subDone <- ws.each(func(rev uint64, ev seenEvent) error {
				mu.Lock()
				defer mu.Unlock()
				if _, dup := events[rev]; dup {
					return fmt.Errorf("revision %d delivered twice", rev)
				}
				if rev <= lastRev {
					return fmt.Errorf("revision %d after %d", rev, lastRev)
				}
				events[rev] = ev
				lastRev = rev
				return nil
			})
		}()

		if final {
			// Catch up, then compare everything.
			catchUp(t, &mu, &lastRev, g.revision(t))
			ws.close()
			if err := <-subDone; err != nil && !isClosed(err) {
				t.Fatal(err)
			}
			found := 0
			for _, a := range acked {
				ev, ok := events[a.revision]
				if !ok {
					t.Errorf("acknowledged revision %d (value %s) never reached the subscriber", a.revision, a.value)
					continue
				}
				if ev.value != a.value {
					t.Errorf("revision %d: event has %q; acknowledged %q", a.revision, ev.value, a.value)
					continue
				}
				found++
			}
			t.Logf("crash suite: %d cycles run, %d mutations acknowledged, %d found after restart, %d events delivered", n, len(acked), found, len(events))
			if found != len(acked) {
				t.Fatalf("%d acknowledged mutations missing", len(acked)-found)
			}
			// Teardown jobs queued before a crash run after it: stop
			// gracefully and look; if some are still due, run again.
			for attempt := 0; ; attempt++ {
				g.stop(t, syscall.SIGTERM)
				if teardownsDone(t, dir) || attempt == 20 {
					break
				}
				g = start(t, bin, dir, addr)
				time.Sleep(500 * time.Millisecond)
			}
			checkTeardownsDone(t, dir)
			return
		}

		// Writers configure and, now and then, disconnect and connect
		// again, until the kill.
		stop := workers(4, func(w, i int) {
			if w == 0 && i%25 == 24 {
				c.disconnect(intID)
				c.connectAgain(intID, []string{"ada@sandbox.test", "grace@sandbox.test"}[i%2])
				return
			}
			v := strconv.Itoa(5 + (cycle*4000+w*1000+i)%1400)
			if rev, ok := c.configure(intID, v); ok {
				mu.Lock()
				acked = append(acked, ack{rev, v})
				mu.Unlock()
			}
		})
		time.Sleep(time.Duration(150+r.IntN(900)) * time.Millisecond)
		g.stop(t, syscall.SIGKILL)
		stop()
		ws.close()
		if err := <-subDone; err != nil && !isClosed(err) {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		// Nothing half-applied: state, changelog and revision agree.
		rep, err := bolt.Verify(filepath.Join(dir, "switchboard.db"))
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("cycle %d: data file damaged: %v", cycle, rep.Problems)
		}
	}
}

// workers runs work(w, i), i = 0, 1, …, on n goroutines until the stop it
// returns is called; stop waits for them.
func workers(n int, work func(w, i int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				work(w, i)
			}
		})
	}
	return func() { close(done); wg.Wait() }
}

// catchUp waits until the subscriber's last revision (guarded by mu)
// reaches head.
func catchUp(t *testing.T, mu *sync.Mutex, last *uint64, head uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		at := *last
		mu.Unlock()
		if at >= head {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber stuck at revision %d; the store is at %d", at, head)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isClosed(err error) bool {
	return err == nil || websocket.IsCloseError(err, websocket.CloseGoingAway, websocket.CloseAbnormalClosure, websocket.CloseNormalClosure) ||
		strings.Contains(err.Error(), "use of closed") || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "broken pipe")
}

// ---- the gateway process ----

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// gatewayBinary builds the gateway once per test run.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "switchboard")
		build := exec.Command("go", "build", "-o", binPath, "..")
		build.Stderr = os.Stderr
		buildErr = build.Run()
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return binPath
}

type gateway struct {
	cmd   *exec.Cmd
	base  string
	token string
	dir   string
	exit  chan struct{}
}

func start(t *testing.T, bin, dir, addr string) *gateway {
	t.Helper()
	// These suites drive one demo token far harder than a client may; the
	// rate limits and socket caps have tests of their own.
	cmd := exec.Command(bin, "-addr", addr, "-data", dir, "-token-rate=-1", "-callback-rate=-1",
		"-max-sockets-per-token=-1", "-max-sockets-per-workspace=-1", "-max-pending-per-address=-1")
	cmd.Stdout = io.Discard
	logf, err := os.OpenFile(filepath.Join(dir, "gateway.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gateway{cmd: cmd, base: "http://" + addr, dir: dir, exit: make(chan struct{})}
	go func() { cmd.Wait(); close(g.exit) }()
	t.Cleanup(func() { g.stop(t, syscall.SIGKILL) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(g.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-g.exit:
			b, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
			t.Fatalf("gateway exited at start: %s", tail(string(b)))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway did not become healthy")
		}
		time.Sleep(30 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(dir, "demo-token"))
	if err != nil {
		t.Fatal(err)
	}
	g.token = strings.TrimSpace(string(tok))
	return g
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

func (g *gateway) stop(t *testing.T, sig syscall.Signal) {
	select {
	case <-g.exit:
		return
	default:
	}
	_ = g.cmd.Process.Signal(sig)
	select {
	case <-g.exit:
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		t.Errorf("gateway did not exit after %v", sig)
		<-g.exit
	}
}

func (g *gateway) revision(t *testing.T) uint64 {
	t.Helper()
	resp, err := http.Get(g.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Revision string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(h.Revision, 10, 64)
	return n
}

func openStopped(t *testing.T, dir string) *bolt.Store {
	t.Helper()
	keys, err := seal.Load(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bolt.Open(filepath.Join(dir, "switchboard.db"), bolt.Options{Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func teardownsDone(t *testing.T, dir string) bool {
	s := openStopped(t, dir)
	defer s.Close()
	jobs, err := s.DueTeardowns(context.Background(), time.Now().Add(24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(jobs) == 0
}

// checkTeardownsDone opens the stopped data file: the teardown queue is
// empty, and only the current generation holds credentials.
func checkTeardownsDone(t *testing.T, dir string) {
	t.Helper()
	s := openStopped(t, dir)
	defer s.Close()
	ctx := context.Background()
	jobs, err := s.DueTeardowns(ctx, time.Now().Add(24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 0 {
		t.Errorf("%d teardown jobs still queued after restart: %+v", len(jobs), jobs[0])
	}
	ints, err := s.FindIntegrations(ctx, "ws_demo", switchboard.IntegrationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ints {
		cur, ok := in.CurrentGeneration()
		for g := uint64(1); g <= in.Generation; g++ {
			_, err := s.FindTokens(ctx, "ws_demo", in.ID, g)
			if has := err == nil; has != (ok && g == cur) {
				t.Errorf("integration %s generation %d: credentials present %v (current %d, connected %v)", in.ID, g, has, cur, ok)
			}
		}
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ---- clients ----

type client struct {
	base  string
	token string
}

var httpc = &http.Client{Timeout: 10 * time.Second}

func (c *client) gql(query string, vars map[string]any) (map[string]any, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest("POST", c.base+"/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data   map[string]any
		Errors []struct{ Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("%s", out.Errors[0].Message)
	}
	return out.Data, nil
}

type gqlError struct{ code, message string }

// gqlErr is gql that also returns the error's extensions.code.
func (c *client) gqlErr(query string, vars map[string]any) (map[string]any, *gqlError) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest("POST", c.base+"/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, &gqlError{"TRANSPORT", err.Error()}
	}
	defer resp.Body.Close()
	var out struct {
		Data   map[string]any
		Errors []struct {
			Message    string
			Extensions struct{ Code string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, &gqlError{"DECODE", err.Error()}
	}
	if len(out.Errors) > 0 {
		return nil, &gqlError{out.Errors[0].Extensions.Code, out.Errors[0].Message}
	}
	return out.Data, nil
}

func (c *client) configure(id, value string) (uint64, bool) {
	d, err := c.gql(`mutation($id: ID!, $v: String!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: $v}]}) { revision } }`,
		map[string]any{"id": id, "v": value})
	if err != nil {
		return 0, false
	}
	rev, err := strconv.ParseUint(d["configureIntegration"].(map[string]any)["revision"].(string), 10, 64)
	return rev, err == nil
}

func (c *client) disconnect(id string) {
	_, _ = c.gql(`mutation($id: ID!) { disconnectIntegration(input: {id: $id, confirm: true}) { id } }`, map[string]any{"id": id})
}

func (c *client) connectAgain(id, email string) {
	d, err := c.gql(`mutation($e: String) { connectIntegration(input: {provider: "sandbox", loginHint: $e}) { authorizationUrl } }`, map[string]any{"e": email})
	if err != nil {
		return
	}
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar, Timeout: 10 * time.Second}).Get(d["connectIntegration"].(map[string]any)["authorizationUrl"].(string))
	if err == nil {
		resp.Body.Close()
	}
}

func (c *client) connect(t *testing.T, email string) string {
	t.Helper()
	d, err := c.gql(`mutation($e: String) { connectIntegration(input: {provider: "sandbox", loginHint: $e}) { authorizationUrl integration { id } } }`, map[string]any{"e": email})
	if err != nil {
		t.Fatal(err)
	}
	p := d["connectIntegration"].(map[string]any)
	// A browser of its own: the start link sets the flow's cookie, which
	// the callback needs.
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar, Timeout: 10 * time.Second}).Get(p["authorizationUrl"].(string))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("callback: %s", resp.Status)
	}
	return p["integration"].(map[string]any)["id"].(string)
}

type subscriber struct {
	conn *websocket.Conn
	once sync.Once
}

func (c *client) subscribe(t *testing.T, after uint64) *subscriber {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("ws"+strings.TrimPrefix(c.base, "http")+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + c.token}})
	_ = conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($after: Revision) { integrationEvents(afterRevision: $after) { revision kind integration { status settings { key value } } } }`,
		"variables": map[string]any{"after": strconv.FormatUint(after, 10)},
	}})
	return &subscriber{conn: conn}
}

func (s *subscriber) close() { s.once.Do(func() { s.conn.Close() }) }

func (s *subscriber) each(fn func(uint64, seenEvent) error) error {
	for {
		var m struct {
			Type    string
			Payload json.RawMessage
		}
		if err := s.conn.ReadJSON(&m); err != nil {
			return err
		}
		switch m.Type {
		case "connection_ack", "ping", "pong", "ka":
			if m.Type == "ping" {
				_ = s.conn.WriteJSON(map[string]string{"type": "pong"})
			}
			continue
		case "next":
		default:
			return fmt.Errorf("unexpected %s %s", m.Type, m.Payload)
		}
		var p struct {
			Data struct {
				IntegrationEvents struct {
					Revision    string
					Kind        string
					Integration struct {
						Status   string
						Settings []struct{ Key, Value string }
					}
				}
			}
			Errors []struct{ Message string }
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return err
		}
		if len(p.Errors) > 0 {
			return fmt.Errorf("subscription error: %s", p.Errors[0].Message)
		}
		e := p.Data.IntegrationEvents
		rev, _ := strconv.ParseUint(e.Revision, 10, 64)
		ev := seenEvent{kind: e.Kind, status: e.Integration.Status}
		for _, st := range e.Integration.Settings {
			if st.Key == "sync_interval_minutes" {
				ev.value = st.Value
			}
		}
		if err := fn(rev, ev); err != nil {
			return err
		}
	}
}
