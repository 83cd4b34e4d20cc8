package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/bont/switchboard/httpapi"
	"github.com/bont/switchboard/switchboard"
)

// Abuse limits that must hold whatever the transport (issue 13, findings 2,
// 4 and 9). Limits are checked by counting what is answered and refused,
// never by timing.

// metricValue returns the value of one sample of /metrics ("" if absent).
func metricValue(t *testing.T, m *Main, sample string) string {
	t.Helper()
	resp, err := http.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestWebsocketOperationsShareTheTokenRateLimit sends 300 queries at once
// on one socket, after a few HTTP requests with the same token: they meet
// the HTTP requests' limiter, so exactly what is left of the burst is
// answered and every other operation gets an error with RATE_LIMITED for
// its id, on a socket that stays open; HTTP then gets 429.
func TestWebsocketOperationsShareTheTokenRateLimit(t *testing.T) {
	const burst, viaHTTP, ops = 10, 3, 300
	m := mustStart(t, "", func(m *Main) {
		// A rate so slow that no request comes back during the test:
		// the burst is all there is.
		m.Config.TokenRate, m.Config.TokenBurst = 0.0001, burst
	})
	body, _ := json.Marshal(map[string]any{"query": "{ viewer { role } }"})
	for i, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		t.Run(proto, func(t *testing.T) {
			tok := addUser(t, m, DemoWorkspaceID, "usr_burst"+strconv.Itoa(i), switchboard.RoleAdmin, fullScopes...)
			for range viaHTTP {
				if resp, b := post(t, m.URL, tok, body); resp.StatusCode != http.StatusOK {
					t.Fatalf("HTTP within the burst: %d %s", resp.StatusCode, b)
				}
			}
			ws, err := dialWS(t, m, proto, tok, nil) // connection_init takes one too
			if err != nil {
				t.Fatal(err)
			}
			start := "subscribe"
			if proto == "graphql-ws" {
				start = "start"
			}
			for i := range ops {
				ws.send(wsMessage{ID: strconv.Itoa(i), Type: start, Payload: mustJSON(map[string]any{"query": "{ viewer { role } }"})})
			}
			answered, limited := map[string]bool{}, map[string]bool{}
			done := map[string]bool{}
			for len(done) < ops {
				msg, err := ws.read(20 * time.Second)
				if err != nil {
					t.Fatalf("after %d answers and %d refusals: %v", len(answered), len(limited), err)
				}
				switch msg.Type {
				case "next", "data":
					answered[msg.ID] = true
				case "complete":
					done[msg.ID] = true
				case "error":
					var one gqlError
					var many []gqlError
					if json.Unmarshal(msg.Payload, &many) == nil && len(many) > 0 {
						one = many[0]
					} else {
						_ = json.Unmarshal(msg.Payload, &one)
					}
					if one.Code() != httpapi.CodeRateLimited {
						t.Fatalf("operation %s: error %s; want %s", msg.ID, msg.Payload, httpapi.CodeRateLimited)
					}
					if ra, _ := one.Extensions["retryAfter"].(float64); ra < 1 {
						t.Errorf("operation %s: retryAfter %v; want at least 1", msg.ID, one.Extensions["retryAfter"])
					}
					limited[msg.ID] = true
					done[msg.ID] = true
				default:
					t.Fatalf("unexpected %s %s", msg.Type, msg.Payload)
				}
			}
			expect(t, "operations answered", len(answered), burst-viaHTTP-1)
			expect(t, "operations refused with RATE_LIMITED", len(limited), ops-(burst-viaHTTP-1))
			for id := range answered {
				if limited[id] {
					t.Errorf("operation %s both answered and refused", id)
				}
			}
			// The socket lives on, and HTTP finds the bucket empty.
			if proto == "graphql-transport-ws" {
				ws.send(wsMessage{Type: "ping"})
				ws.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				var pong wsMessage
				if err := ws.conn.ReadJSON(&pong); err != nil || pong.Type != "pong" {
					t.Errorf("after the refusals: %+v %v; want pong", pong, err)
				}
			}
			if resp, _ := post(t, m.URL, tok, body); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("HTTP after the socket spent the burst: %d; want 429", resp.StatusCode)
			}
		})
	}
	if v := metricValue(t, m, `switchboard_limit_refusals_total{limit="token_rate"}`); v != strconv.Itoa(2*(ops-(burst-viaHTTP-1)+1)) {
		t.Errorf("token_rate refusals metric: %q; want %d", v, 2*(ops-(burst-viaHTTP-1)+1))
	}
}

// TestUnauthenticatedSocketsPerAddress opens websockets that never send
// connection_init: past the cap, the next one is closed at once with 4429;
// a socket that authenticates frees its place.
func TestUnauthenticatedSocketsPerAddress(t *testing.T) {
	const capacity = 5
	m := mustStart(t, "", func(m *Main) {
		m.Config.MaxPendingPerAddress = capacity
		m.Config.WebsocketInitTimeout = time.Minute // they would wait that long
	})
	var held []*websocket.Conn
	for range capacity {
		held = append(held, rawWS(t, m, "graphql-transport-ws"))
	}
	// Each accepted socket is counted before the handshake's answer, so
	// the next one sees them all.
	expect(t, "close of one socket too many", closeCode(t, rawWS(t, m, "graphql-ws"), 5*time.Second), httpapi.CloseTooMany)

	// Authenticating one frees a place.
	ws := &wsClient{t: t, conn: held[0], proto: "graphql-transport-ws"}
	ws.send(wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"authorization": "Bearer " + m.DemoToken})})
	if msg, err := ws.read(5 * time.Second); err != nil || msg.Type != "connection_ack" {
		t.Fatalf("init: %+v %v", msg, err)
	}
	next := &wsClient{t: t, conn: rawWS(t, m, "graphql-transport-ws"), proto: "graphql-transport-ws"}
	next.send(wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"authorization": "Bearer " + m.DemoToken})})
	if msg, err := next.read(5 * time.Second); err != nil || msg.Type != "connection_ack" {
		t.Fatalf("a socket after one authenticated: %+v %v; want connection_ack", msg, err)
	}
	// So does closing one (the server sees it close a moment later).
	held[1].Close()
	waitFor(t, "a place after a pending socket closed", func() bool {
		conn := rawWS(t, m, "graphql-transport-ws")
		defer conn.Close()
		c := &wsClient{t: t, conn: conn, proto: "graphql-transport-ws"}
		c.send(wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"authorization": "Bearer " + m.DemoToken})})
		msg, err := c.read(5 * time.Second)
		return err == nil && msg.Type == "connection_ack"
	})
	if v := metricValue(t, m, `switchboard_limit_refusals_total{limit="pending_per_address"}`); v == "" || v == "0" {
		t.Errorf("pending_per_address refusals metric: %q; want at least 1", v)
	}
}

// initClose sends connection_init with token on a new socket and returns
// the close code and reason, or 0 when the socket is acknowledged.
func initClose(t *testing.T, m *Main, token string) (int, string, *websocket.Conn) {
	t.Helper()
	conn := rawWS(t, m, "graphql-transport-ws")
	_ = conn.WriteJSON(wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"authorization": "Bearer " + token})})
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var msg wsMessage
	err := conn.ReadJSON(&msg)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text, conn
	} else if err != nil {
		t.Fatal(err)
	}
	if msg.Type != "connection_ack" {
		t.Fatalf("got %s %s; want connection_ack or a close", msg.Type, msg.Payload)
	}
	return 0, "", conn
}

// TestSocketsPerTokenAndWorkspace: a token, and a workspace over all its
// tokens, hold at most so many websockets; the one over is closed with
// 4429 and a reason naming the cap; another workspace is not affected.
func TestSocketsPerTokenAndWorkspace(t *testing.T) {
	const perToken, perWorkspace = 3, 5
	m := mustStart(t, "", func(m *Main) {
		m.Config.MaxSocketsPerToken, m.Config.MaxSocketsPerWorkspace = perToken, perWorkspace
	})
	a := addUser(t, m, DemoWorkspaceID, "usr_a", switchboard.RoleAdmin, fullScopes...)
	b := addUser(t, m, DemoWorkspaceID, "usr_b", switchboard.RoleAdmin, fullScopes...)
	addWorkspace(t, m, "ws_other", "Other")
	other := addUser(t, m, "ws_other", "usr_o", switchboard.RoleAdmin, fullScopes...)

	var aConns []*websocket.Conn
	for i := range perToken {
		code, reason, conn := initClose(t, m, a)
		if code != 0 {
			t.Fatalf("socket %d of token a: closed %d %s", i, code, reason)
		}
		aConns = append(aConns, conn)
	}
	if code, reason, _ := initClose(t, m, a); code != httpapi.CloseTooMany || !strings.Contains(reason, "API token") {
		t.Errorf("token over its cap: %d %q; want %d naming the API token", code, reason, httpapi.CloseTooMany)
	}
	for i := range perWorkspace - perToken {
		if code, reason, _ := initClose(t, m, b); code != 0 {
			t.Fatalf("socket %d of token b: closed %d %s", i, code, reason)
		}
	}
	if code, reason, _ := initClose(t, m, b); code != httpapi.CloseTooMany || !strings.Contains(reason, "workspace") {
		t.Errorf("workspace over its cap: %d %q; want %d naming the workspace", code, reason, httpapi.CloseTooMany)
	}
	if code, reason, _ := initClose(t, m, other); code != 0 {
		t.Errorf("another workspace: closed %d %s", code, reason)
	}
	// A socket closed is a place free.
	aConns[0].Close()
	waitFor(t, "a place after a socket closed", func() bool {
		code, _, conn := initClose(t, m, b)
		conn.Close()
		return code == 0
	})
	for _, limit := range []string{"sockets_per_token", "sockets_per_workspace"} {
		if v := metricValue(t, m, `switchboard_limit_refusals_total{limit="`+limit+`"}`); v == "" || v == "0" {
			t.Errorf("%s refusals metric: %q; want at least 1", limit, v)
		}
	}
}

// trickle sends head, then one byte of body at a time, until the server
// cuts the connection; it returns what the server answered and whether it
// closed the connection (false: still open when the client gave up).
func trickle(t *testing.T, m *Main, head string) (string, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(m.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	// Far beyond the server's read timeout: a connection still open then
	// was not cut.
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return string(got), false
	}
	return string(got), true
}

// TestSlowBodyIsCut: a body that trickles in is cut at the server's read
// timeout (on a page and on /graphql), and a websocket is not: it outlives
// the read, write and idle timeouts.
func TestSlowBodyIsCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	m := mustStart(t, "", func(m *Main) {
		m.Config.ReadTimeout, m.Config.WriteTimeout, m.Config.IdleTimeout = timeout, timeout, timeout
	})
	host := strings.TrimPrefix(m.URL, "http://")
	t.Run("settings sign-in", func(t *testing.T) {
		_, closed := trickle(t, m, "POST /settings/signin HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		if !closed {
			t.Error("a trickling body to /settings/signin held its connection")
		}
	})
	t.Run("graphql", func(t *testing.T) {
		got, closed := trickle(t, m, "POST /graphql HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: Bearer "+m.DemoToken+"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		if !closed {
			t.Error("a trickling body to /graphql held its connection")
		}
		if got != "" && !strings.Contains(got, "400") {
			t.Errorf("answer to a cut body: %s; want 400 or none", trim([]byte(got)))
		}
		if v := metricValue(t, m, `switchboard_limit_refusals_total{limit="body_timeout"}`); v != "1" {
			t.Errorf("body_timeout refusals metric: %q; want 1", v)
		}
	})
	t.Run("a websocket outlives the timeouts", func(t *testing.T) {
		ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.subscribe("1", eventsSubscription, nil)
		time.Sleep(4 * timeout) // past every server deadline
		ws.send(wsMessage{Type: "ping"})
		ws.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			var msg wsMessage
			if err := ws.conn.ReadJSON(&msg); err != nil {
				t.Fatalf("websocket after the server's timeouts: %v", err)
			}
			if msg.Type == "pong" {
				break
			}
		}
	})
}

// TestOversizedHeaders: headers over -max-header-bytes are refused with
// 431 before any handler.
func TestOversizedHeaders(t *testing.T) {
	m := mustStart(t, "")
	req, _ := http.NewRequest("GET", m.URL+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 2*DefaultMaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect(t, "status", resp.StatusCode, http.StatusRequestHeaderFieldsTooLarge)
}

// TestDevModeRefusesARemoteAddress: dev mode does not start on an address
// that is not loopback without -dev-allow-remote, and says how to fix it.
// Nothing is bound: the check comes before the store and the listener.
func TestDevModeRefusesARemoteAddress(t *testing.T) {
	dir := t.TempDir()
	m := NewMain()
	m.Stdout = io.Discard
	// TEST-NET-1 (RFC 5737): not this machine's, so nothing could be
	// bound there even if the check were missing.
	if err := m.ParseFlags([]string{"-addr", "192.0.2.1:8080", "-data", dir}); err != nil {
		t.Fatal(err)
	}
	err := m.Run(t.Context())
	if err == nil {
		m.Close()
		t.Fatal("dev mode started on a non-loopback address")
	}
	m.Close()
	for _, want := range []string{"192.0.2.1:8080", "-dev-allow-remote", "-dev=false", "127.0.0.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the data directory was written to before the refusal: %d entries", len(entries))
	}

	for _, tt := range []struct {
		addr        string
		dev, remote bool
		ok          bool
	}{
		{"127.0.0.1:8080", true, false, true},
		{"127.1.2.3:8080", true, false, true},
		{"[::1]:8080", true, false, true},
		{"localhost:8080", true, false, true},
		{":8080", true, false, false},
		{"0.0.0.0:8080", true, false, false},
		{"[::]:8080", true, false, false},
		{"192.0.2.1:8080", true, false, false},
		{"gateway.example:8080", true, false, false},
		{"0.0.0.0:8080", true, true, true},
		{"0.0.0.0:8080", false, false, true},
	} {
		t.Run(fmt.Sprintf("%s dev=%v allow-remote=%v", tt.addr, tt.dev, tt.remote), func(t *testing.T) {
			err := Config{Dev: tt.dev, DevAllowRemote: tt.remote}.checkDevAddr(tt.addr)
			if (err == nil) != tt.ok {
				t.Errorf("got %v; want ok %v", err, tt.ok)
			}
		})
	}
	var m2 Main
	if err := m2.ParseFlags([]string{"-dev-allow-remote"}); err != nil || !m2.Config.DevAllowRemote {
		t.Errorf("-dev-allow-remote: %v %v", err, m2.Config.DevAllowRemote)
	}
}
