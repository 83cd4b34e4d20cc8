package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

// datasizeResult: one workspace's list and the gateway's start-up at two
// file sizes.
type datasizeResult struct {
	small, large           int           // integrations in the file
	listSmall, listLarge   time.Duration // median FindIntegrations of the gateway's workspace, in process
	httpSmall, httpLarge   time.Duration // p50 of the integrations query over HTTP
	startSmall, startLarge time.Duration
	fileLarge              int64
}

// runDatasize builds a data file by the gateway's own commit code, in
// large transactions (bolt.BulkCommit): the gateway's workspace (its
// integrations connected through the sandbox) plus generated workspaces
// of 10 connected integrations each, first to o.dataSmall integrations in
// all, then to o.dataLarge. At each size it measures the gateway's start-up
// (exec to /readyz 200), the workspace's list over HTTP and in process.
func runDatasize(ctx context.Context, o *options) (*datasizeResult, error) {
	o.integrations = 10
	g, err := startGateway(ctx, o)
	if err != nil {
		return nil, err
	}
	data := filepath.Dir(g.adminSock)
	wsID, ids := "ws_demo", len(g.ids)
	g.stop()
	r := &datasizeResult{}
	total := ids
	next := 0 // generated workspaces so far
	for phase, want := range []int{o.dataSmall, o.dataLarge} {
		start := time.Now()
		n, err := generate(ctx, data, &next, (want-total)/10)
		if err != nil {
			return nil, err
		}
		total += n
		o.logf("datasize: %d integrations in the file (%d generated in %s)", total, n, time.Since(start).Round(time.Millisecond))
		up, httpP50, err := startAndList(ctx, o, data)
		if err != nil {
			return nil, err
		}
		list, err := listInProcess(ctx, data, wsID)
		if err != nil {
			return nil, err
		}
		o.logf("datasize: %d integrations: start-up %s, list of %s (%d integrations) %s in process, p50 %s over HTTP; token schedule %s", total, up, wsID, ids, list, httpP50, scheduleLoad)
		if phase == 0 {
			r.small, r.startSmall, r.listSmall, r.httpSmall = total, up, list, httpP50
		} else {
			r.large, r.startLarge, r.listLarge, r.httpLarge = total, up, list, httpP50
			if fi, err := os.Stat(filepath.Join(data, "switchboard.db")); err == nil {
				r.fileLarge = fi.Size()
			}
		}
	}
	return r, nil
}

// generate adds workspaces of 10 connected integrations (with sealed
// credentials) to the data file in data, as the gateway's commits would
// write them, in transactions of 10,000 changes.
func generate(ctx context.Context, data string, next *int, workspaces int) (int, error) {
	if workspaces <= 0 {
		return 0, nil
	}
	kr, err := seal.Load(data, true)
	if err != nil {
		return 0, err
	}
	s, err := bolt.Open(filepath.Join(data, "switchboard.db"), bolt.Options{Keyring: kr})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	now := time.Now().UTC()
	var batch []switchboard.Change
	flush := func() error {
		_, err := s.BulkCommit(ctx, batch)
		batch = batch[:0]
		return err
	}
	n := 0
	for range workspaces {
		*next++
		ws := fmt.Sprintf("ws_gen_%07d", *next)
		for i := range 10 {
			id := fmt.Sprintf("int_gen_%07d_%02d", *next, i)
			provider := fmt.Sprintf("load%02d", i) // the gateway's providers file declares load00..load08
			if i == 9 {
				provider = "sandbox"
			}
			connected := now
			batch = append(batch, switchboard.Change{
				WorkspaceID: ws, IntegrationID: id, Create: true, At: now,
				Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
					return &switchboard.Integration{
						ID: id, WorkspaceID: ws, ProviderID: provider, Category: switchboard.CategoryOther,
						Status: switchboard.StatusConnected, StatusMessage: "Connected.", Generation: 1,
						Account:       &switchboard.Account{ID: "acct-" + id, Name: "Ada", Email: "ada@sandbox.test"},
						GrantedScopes: []string{"contacts.read"}, ConnectedAt: &connected,
						SettingValues: map[string]string{"sync_interval_minutes": "15"},
					}, switchboard.EventConnected, nil
				},
				Tokens: &switchboard.TokenSet{AccessToken: "at-" + id, RefreshToken: "rt-" + id, TokenType: "Bearer",
					Expiry: now.Add(time.Hour), Scopes: []string{"contacts.read"}},
			})
			n++
		}
		if len(batch) >= 10000 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// startAndList starts the gateway on data, times exec to the first
// /readyz 200, measures the integrations query, and stops it.
func startAndList(ctx context.Context, o *options, data string) (time.Duration, time.Duration, error) {
	bin, err := buildGateway(o)
	if err != nil {
		return 0, 0, err
	}
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "-addr", "127.0.0.1:"+strconv.Itoa(port), "-data", data, "-dev",
		"-providers", filepath.Join(data, "providers.yaml"), "-token-rate=-1", "-callback-rate=-1")
	cmd.Stdout, cmd.Stderr = o.log, o.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	hc := &http.Client{Timeout: time.Second}
	var up time.Duration
	for deadline := start.Add(60 * time.Second); ; {
		resp, err := hc.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				up = time.Since(start)
				break
			}
		}
		select {
		case <-done:
			return 0, 0, fmt.Errorf("gateway exited before it was ready")
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("gateway not ready within 60 s")
		}
	}
	tok, err := os.ReadFile(filepath.Join(data, "demo-token"))
	if err != nil {
		return 0, 0, err
	}
	token := strings.TrimSpace(string(tok))
	lc := newHTTPClient(8)
	res := runClosedLoop(ctx, 8, 20000, 5*time.Second, func(ctx context.Context, _ int) error {
		_, err := gql(ctx, lc, base, token, integrationsQuery, nil)
		return err
	})
	if res.errors > 0 {
		return 0, 0, fmt.Errorf("integrations query: %d errors", res.errors)
	}
	return up, res.p50, nil
}

// listInProcess opens the file (the gateway stopped) and returns the
// median time of FindIntegrations for workspace ws over 2,000 calls.
func listInProcess(ctx context.Context, data, ws string) (time.Duration, error) {
	kr, err := seal.Load(data, true)
	if err != nil {
		return 0, err
	}
	s, err := bolt.Open(filepath.Join(data, "switchboard.db"), bolt.Options{Keyring: kr})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	d := make([]time.Duration, 2000)
	for i := range d {
		t := time.Now()
		if _, err := s.FindIntegrations(ctx, ws, switchboard.IntegrationFilter{}); err != nil {
			return 0, err
		}
		d[i] = time.Since(t)
	}
	slices.Sort(d)
	// The refresher's schedule load reads every connection; the gateway
	// does it in the background after it is ready.
	t, n := time.Now(), 0
	if err := s.TokenSchedule(ctx, func(*switchboard.TokenMeta) error { n++; return nil }); err != nil {
		return 0, err
	}
	scheduleLoad = fmt.Sprintf("%d connections in %s", n, time.Since(t).Round(time.Millisecond))
	return d[len(d)/2], nil
}

// scheduleLoad is what the last listInProcess saw of TokenSchedule.
var scheduleLoad string
