package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// gatewaySubscription selects what the baselines send, so every server
// writes messages of the same shape and about the same size.
const gatewaySubscription = "subscription { integrationEvents { revision at kind integration { id status badge { label tone } } } }"

// gateway is the gateway under load, with the integrations the load
// command connected in its workspace.
type gateway struct {
	*target
	ids []string
	// dataDir is the data directory of a gateway this command started
	// ("" with -target).
	dataDir string
}

// buildGateway builds the gateway binary from the module root into dir,
// unless -gateway-bin names one.
func buildGateway(o *options) (string, error) {
	if o.gatewayBin != "" {
		return o.gatewayBin, nil
	}
	bin := filepath.Join(o.tmp, "switchboard")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = o.moduleRoot
	cmd.Stdout, cmd.Stderr = o.log, o.log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build the gateway in %s: %w (pass -gateway-bin)", o.moduleRoot, err)
	}
	return bin, nil
}

// startGateway starts the gateway on a fresh data directory in dev mode,
// with rate limits lifted and custom providers (served by the dev
// sandbox) so the workspace can hold o.integrations integrations, and
// connects them all. With -target it uses a running gateway instead.
func startGateway(ctx context.Context, o *options) (*gateway, error) {
	g := &gateway{target: &target{name: "switchboard", subscription: gatewaySubscription}}
	if o.targetURL != "" {
		g.base, g.token, g.pid = strings.TrimRight(o.targetURL, "/"), o.token, o.targetPID
	} else {
		bin, err := buildGateway(o)
		if err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		data, err := os.MkdirTemp(o.tmp, "gateway-data-")
		if err != nil {
			return nil, err
		}
		providers := filepath.Join(data, "providers.yaml")
		if err := os.WriteFile(providers, []byte(providersFile(base, o.integrations-1)), 0o600); err != nil {
			return nil, err
		}
		c, err := startChild("gateway", o.log, func(line string) (string, bool) {
			if _, u, ok := strings.Cut(line, "Playground  "); ok {
				return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(u), "http://"), "/playground"), true
			}
			return "", false
		}, bin, "-addr", "127.0.0.1:"+strconv.Itoa(port), "-data", data, "-dev", "-providers", providers,
			"-token-rate=-1", "-callback-rate=-1",
			// Every socket is the demo token's, opened many at a time.
			"-max-sockets-per-token=-1", "-max-sockets-per-workspace=-1", "-max-pending-per-address=-1")
		if err != nil {
			return nil, err
		}
		tok, err := os.ReadFile(filepath.Join(data, "demo-token"))
		if err != nil {
			c.stop()
			return nil, err
		}
		g.base, g.token, g.proc, g.pid = "http://"+c.addr, strings.TrimSpace(string(tok)), c, c.pid()
		g.adminSock = filepath.Join(data, "admin.sock")
		g.dataDir = data
	}
	hc := newHTTPClient(8)
	if err := g.connectAll(ctx, hc, o.targetURL == ""); err != nil {
		g.stop()
		return nil, err
	}
	g.publish = func(ctx context.Context, hc *http.Client) error {
		_, err := g.configure(ctx, hc, g.ids[0])
		return err
	}
	return g, nil
}

// providersFile declares n custom providers (category OTHER) that use the
// dev sandbox as their authorization server.
func providersFile(base string, n int) string {
	var b strings.Builder
	b.WriteString("providers:\n")
	for i := range n {
		fmt.Fprintf(&b, `  - id: load%02d
    name: Load test %02d
    category: OTHER
    clientId: switchboard-dev
    clientSecret: sandbox-dev-secret
    authUrl: %[3]s/sandbox/authorize
    tokenUrl: %[3]s/sandbox/token
    revokeUrl: %[3]s/sandbox/revoke
    userinfoUrl: %[3]s/sandbox/userinfo
    identity: {id: sub, name: name, email: email}
    scopes: [contacts.read]
    authStyle: header
    settings:
      - {key: sync_interval_minutes, label: Sync interval, type: INTEGER, default: "15", min: 5, max: 1440}
`, i, i, base)
	}
	return b.String()
}

// connectAll connects every available provider (through the sandbox, as
// the OAuth window would) unless already connected, and records the ids.
func (g *gateway) connectAll(ctx context.Context, hc *http.Client, all bool) error {
	data, err := gql(ctx, hc, g.base, g.token, `{ providers { id available } integrations { id status provider { id } } }`, nil)
	if err != nil {
		return fmt.Errorf("gateway setup: %w", err)
	}
	var d struct {
		Providers []struct {
			ID        string
			Available bool
		}
		Integrations []struct {
			ID, Status string
			Provider   struct{ ID string }
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return err
	}
	connected := map[string]bool{}
	for _, in := range d.Integrations {
		if in.Status != "DISCONNECTED" {
			connected[in.Provider.ID] = true
			g.ids = append(g.ids, in.ID)
		}
	}
	for _, p := range d.Providers {
		if !p.Available || connected[p.ID] || (!all && len(g.ids) > 0) || !(p.ID == "sandbox" || strings.HasPrefix(p.ID, "load")) {
			continue
		}
		data, err := gql(ctx, hc, g.base, g.token, `mutation($p: ID!) { connectIntegration(input: {provider: $p, loginHint: "ada@sandbox.test"}) { authorizationUrl integration { id } } }`, map[string]any{"p": p.ID})
		if err != nil {
			return fmt.Errorf("connect %s: %w", p.ID, err)
		}
		var c struct {
			ConnectIntegration struct {
				AuthorizationURL string
				Integration      struct{ ID string }
			}
		}
		_ = json.Unmarshal(data, &c)
		jar, _ := cookiejar.New(nil)
		resp, err := (&http.Client{Jar: jar, Timeout: 10 * time.Second}).Get(c.ConnectIntegration.AuthorizationURL)
		if err != nil {
			return fmt.Errorf("authorize %s: %w", p.ID, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("authorize %s: callback answered %d", p.ID, resp.StatusCode)
		}
		g.ids = append(g.ids, c.ConnectIntegration.Integration.ID)
	}
	if len(g.ids) == 0 {
		return fmt.Errorf("gateway setup: no integration could be connected")
	}
	return nil
}

// configure changes an integration's sync interval to a value it does
// not have yet, so every call commits (and publishes) one event.
func (g *gateway) configure(ctx context.Context, hc *http.Client, id string) (json.RawMessage, error) {
	v := 5 + seq.Add(1)%1436
	return gql(ctx, hc, g.base, g.token, `mutation($id: ID!, $v: String!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: $v}]}) { revision } }`,
		map[string]any{"id": id, "v": strconv.FormatInt(v, 10)})
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
