package main

import (
	"context"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/switchboard"
)

// TestMain lets the test binary serve as the baselines' binary: the load
// command starts them as `<itself> baseline KIND`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		if err := runBaseline(os.Args[2:]); err != nil {
			os.Stderr.WriteString("baseline: " + err.Error() + "\n")
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// testOptions are small sizes for scenarios run from tests.
func testOptions(t *testing.T) *options {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &options{log: io.Discard, quiet: true, tmp: t.TempDir(), self: self, integrations: 3, runs: 1}
}

// The resume scenario at a small size, through the gateway (built from
// this module) and the stock gqlgen baseline: every resume must bring
// every committed event back in order, with no gap or duplicate.
func TestResumeScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the gateway")
	}
	o := testOptions(t)
	o.resumeEvents, o.resumeRuns, o.resumeClients, o.peers = 300, 2, 8, "bare,gqlgen"
	var err error
	if o.moduleRoot, err = moduleRoot(); err != nil {
		t.Fatal(err)
	}
	if o.gatewayBin, err = buildGateway(o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tab := &table{o: o}
	if err := runScenario(ctx, o, tab, "resume"); err != nil {
		t.Fatal(err)
	}
	for _, server := range []string{"switchboard", "bare", "gqlgen"} {
		n, ok := tab.get("resume/" + server + "/events")
		if !ok || n < 300 {
			t.Errorf("%s: %v events replayed; want at least 300", server, n)
		}
		if v, _ := tab.get("resume/" + server + "/total"); v <= 0 {
			t.Errorf("%s: no resume time recorded", server)
		}
	}
	var out strings.Builder
	tab.print(&out)
	if !strings.Contains(out.String(), "resume over a websocket") {
		t.Errorf("the table has no resume row:\n%s", out.String())
	}
}

func TestCheckReplay(t *testing.T) {
	ours := []uint64{11, 12, 14}
	for _, c := range []struct {
		name string
		got  []uint64
		ok   bool
	}{
		{"all, with one of the gateway's own", []uint64{11, 12, 13, 14}, true},
		{"exactly ours", []uint64{11, 12, 14}, true},
		{"gap", []uint64{11, 14}, false},
		{"duplicate", []uint64{11, 12, 12, 14}, false},
		{"out of order", []uint64{12, 11, 14}, false},
		{"at or before afterRevision", []uint64{10, 11, 12, 14}, false},
		{"nothing", nil, false},
	} {
		if err := checkReplay(c.got, 10, ours); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// The GraphQL Yoga peer at a small size, when node and its packages are
// installed (npm ci in yoga/); skipped otherwise.
func TestYogaPeer(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH")
	}
	dir, err := filepath.Abs("yoga")
	if err != nil {
		t.Fatal(err)
	}
	if m := yogaMissing(dir); len(m) > 0 {
		t.Skipf("the Yoga peer's packages are not installed (npm ci in %s): %v", dir, m)
	}
	o := testOptions(t)
	o.yogaDir = dir
	y := prepareYoga(o)
	if y.skip != "" {
		t.Fatal(y.skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tg, err := startYoga(o, y)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.stop()
	r, err := runFanout(ctx, o, tg, 40, 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r.missing != 0 || r.failed != 0 || !r.throughputComplete || r.latencyDeliveries != 80 {
		t.Fatalf("missing %d, failed %d, complete %v, %d latency deliveries (want 0, 0, true, 80)", r.missing, r.failed, r.throughputComplete, r.latencyDeliveries)
	}
	if _, err := tg.rss(); err != nil {
		t.Errorf("RSS of the Node process: %v", err)
	}
}

// Without node, or without the peer's folder, the Yoga column is skipped
// with a reason; nothing fails.
func TestYogaSkipped(t *testing.T) {
	o := testOptions(t)
	o.yogaDir = t.TempDir()
	if _, err := exec.LookPath("node"); err == nil {
		if y := prepareYoga(o); !strings.Contains(y.skip, "server.mjs") {
			t.Errorf("an empty folder: skip %q", y.skip)
		}
	}
	t.Setenv("PATH", t.TempDir())
	o = testOptions(t)
	if y := prepareYoga(o); y.skip != "node is not on PATH" {
		t.Errorf("no node: skip %q", y.skip)
	}

	// node but no packages: without npm, and with an npm that fails.
	node, err := exec.LookPath("node")
	if err != nil {
		return
	}
	bin, peer := t.TempDir(), t.TempDir()
	if err := os.Symlink(node, filepath.Join(bin, "node")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(peer, "server.mjs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	o = testOptions(t)
	o.yogaDir = peer
	if y := prepareYoga(o); !strings.Contains(y.skip, "npm is not on PATH") {
		t.Errorf("no npm: skip %q", y.skip)
	}
	if err := os.WriteFile(filepath.Join(bin, "npm"), []byte("#!/bin/sh\necho no registry >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o = testOptions(t)
	o.yogaDir = peer
	if y := prepareYoga(o); !strings.Contains(y.skip, "npm ci in "+peer+" failed") {
		t.Errorf("npm fails: skip %q", y.skip)
	}
}

// The providers file the command writes must stay one the gateway reads.
func TestProvidersFileParses(t *testing.T) {
	ps, err := oauthflow.ParseProviders([]byte(providersFile("http://127.0.0.1:8080", 19)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range ps {
		if len(p.ID) > 4 && p.ID[:4] == "load" {
			n++
			if p.Category != switchboard.CategoryOther || len(p.SettingDefinitions) != 1 || p.SettingDefinitions[0].Key != "sync_interval_minutes" {
				t.Fatalf("provider %s: %+v", p.ID, p)
			}
		}
	}
	if n != 19 {
		t.Fatalf("got %d custom providers; want 19", n)
	}
}

func TestEventAt(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	msg := []byte(`{"id":"1","type":"next","payload":{"data":{"integrationEvents":{"revision":"7","at":"` + at.Format(time.RFC3339Nano) + `","kind":"CONFIGURED"}}}}`)
	got, ok := eventAt(msg)
	if !ok || !got.Equal(at) {
		t.Fatalf("got %v %v; want %v", got, ok, at)
	}
	if _, ok := eventAt([]byte(`{"type":"next","payload":{"data":{}}}`)); ok {
		t.Fatal("found a timestamp in a message without one")
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(d, c.q); got != c.want {
			t.Errorf("percentile(%v) = %v; want %v", c.q, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}

// Every row of the table has the header's columns; the Yoga cell names
// its size when it differs; a resume smaller than the target's 10,000
// events gets no verdict.
func TestTableColumns(t *testing.T) {
	tab := &table{o: &options{integrations: 20, churnCycles: 10}}
	for _, s := range []string{"fanout", "idle"} {
		for _, server := range []string{"switchboard", "bare", "gqlgen", "yoga"} {
			n := 10000
			if server == "yoga" {
				n = 5000
			}
			r := &fanoutResult{sockets: n, subs: n, rssPerSocket: 20 << 10, goroutinesPerSock: 1, p50: time.Millisecond, p99: 2 * time.Millisecond, max: 3 * time.Millisecond, latencyDeliveries: n, deliveriesPerSec: 1000}
			if server == "yoga" {
				r.goroutinesPerSock = math.NaN()
			}
			tab.addFanout(s, server, r)
		}
	}
	for _, server := range []string{"switchboard", "bare", "gqlgen"} {
		tab.addResume(server, &resumeResult{events: 1000, total: 50 * time.Millisecond, first: time.Millisecond, min: 40 * time.Millisecond, max: 60 * time.Millisecond, resumes: 3})
	}
	tab.note("GraphQL Yoga column skipped: test")
	var out strings.Builder
	tab.print(&out)
	var cols int
	seen := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		for _, p := range []string{"| sustained", "| one status", "| idle", "| resume over"} {
			if strings.HasPrefix(line, p) {
				seen[p] = true
			}
		}
		if cols == 0 {
			cols = strings.Count(line, "|")
		}
		if strings.Count(line, "|") != cols {
			t.Errorf("%d columns, want %d: %s", strings.Count(line, "|")-1, cols-1, line)
		}
		if strings.HasPrefix(line, "| sustained") && !strings.Contains(line, "1000/s (5000 sockets, 5000 subscriptions)") {
			t.Errorf("the Yoga cell does not name its size: %s", line)
		}
		if strings.HasPrefix(line, "| idle") && (!strings.Contains(line, "one JS thread") || !strings.Contains(line, "Yoga 1.00×")) {
			t.Errorf("idle row: %s", line)
		}
		if strings.HasPrefix(line, "| resume over") && !strings.HasSuffix(line, "| — |") {
			t.Errorf("a 1,000-event resume got a verdict: %s", line)
		}
	}
	if cols != 10 {
		t.Errorf("header has %d columns; want 9", cols-1)
	}
	if len(seen) != 4 {
		t.Errorf("rows found: %v; want sustained, one status, idle, resume over:\n%s", seen, out.String())
	}
	if !strings.Contains(out.String(), "GraphQL Yoga column skipped: test") {
		t.Error("the skip note is missing")
	}
}
