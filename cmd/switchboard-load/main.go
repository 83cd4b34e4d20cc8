// Command switchboard-load puts the gateway under load next to baselines
// of its own and prints one table of the targets, each figure
// also as a ratio to its baseline measured in the same invocation.
//
//	go -C cmd/switchboard-load run . all            # every scenario, default sizes
//	go -C cmd/switchboard-load run . fanout -subscribers 200 -events 20
//	go -C cmd/switchboard-load run . -h
//
// Scenarios: fanout (one event to every subscriber, then sustained),
// idle (RSS and goroutines per idle socket), scale (many subscriptions
// per socket), mutations (durable configureIntegration), query (the
// integrations list over HTTP), churn (connect/subscribe/disconnect
// cycles), resume (a subscriber resuming 10,000 events back, over a
// websocket), all. The baselines are the bare-write server, stock gqlgen
// and plain net/http handlers (subcommands of this binary) and GraphQL
// Yoga with graphql-ws on Node (yoga/, when node and its packages are
// there). Traffic goes to 127.0.0.1 only; every scenario stops by
// itself after a count or a time limit.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

type options struct {
	scenarios []string
	runs      int

	subscribers, latencyEvents, events int
	idleSockets                        int
	scaleSockets, scalePerSocket       int
	mutationClients, queryClients      int
	requests                           int64
	duration                           time.Duration
	dataSmall, dataLarge               int
	churnCycles                        int
	integrations                       int
	peers                              string
	yogaSubscribers                    int
	yogaDir                            string
	yoga                               yogaPeer
	resumeEvents, resumeRuns           int
	resumeClients                      int

	targetURL, token string
	targetPID        int
	gatewayBin       string
	moduleRoot       string
	self             string
	tmp              string
	keep             bool
	profileDir       string
	profileTime      time.Duration
	profilePrefix    string // scenario and run, for profile file names
	log              io.Writer
	quiet            bool
}

func (o *options) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(o.log, "load:", msg)
	if !o.quiet {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), msg)
	}
}

var allScenarios = []string{"fanout", "idle", "scale", "mutations", "query", "churn", "resume"}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		if err := runBaseline(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard-load:", err)
		os.Exit(1)
	}
}

func usage(fs *flag.FlagSet) func() {
	return func() {
		fmt.Fprintf(fs.Output(), "usage: switchboard-load [flags] SCENARIO...\n\nscenarios: %s, all\n\n", strings.Join(allScenarios, ", "))
		fs.PrintDefaults()
	}
}

func run(args []string) error {
	o := &options{}
	fs := flag.NewFlagSet("switchboard-load", flag.ContinueOnError)
	fs.Usage = usage(fs)
	fs.IntVar(&o.runs, "runs", 1, "runs of each scenario; the table shows medians")
	fs.IntVar(&o.subscribers, "subscribers", 10000, "fanout: sockets, one subscription each")
	fs.IntVar(&o.latencyEvents, "latency-events", 5, "fanout: events published one at a time, each waiting for the last subscriber")
	fs.IntVar(&o.events, "events", 20, "fanout: events published back to back for deliveries/s")
	fs.IntVar(&o.idleSockets, "idle", 10000, "idle: sockets, one subscription each")
	fs.IntVar(&o.scaleSockets, "scale-sockets", 15000, "scale: sockets")
	fs.IntVar(&o.scalePerSocket, "scale-per-socket", 7, "scale: subscriptions per socket (15,000 × 7 = 105,000)")
	fs.IntVar(&o.mutationClients, "mutation-clients", 256, "mutations: concurrent clients")
	fs.IntVar(&o.queryClients, "query-clients", 32, "query: concurrent clients")
	fs.Int64Var(&o.requests, "requests", 200000, "mutations, query: at most this many requests per server")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "mutations, query: at most this long per server")
	fs.IntVar(&o.dataSmall, "data-small", 1000, "datasize: integrations in the small file")
	fs.IntVar(&o.dataLarge, "data-large", 1000000, "datasize: integrations in the large file (10 per workspace)")
	fs.IntVar(&o.churnCycles, "cycles", 10000, "churn: connect/subscribe/disconnect cycles")
	fs.IntVar(&o.integrations, "integrations", 20, "integrations in the workspace (the sandbox and custom providers served by it)")
	fs.StringVar(&o.peers, "peers", "bare,gqlgen,yoga", "fan-out baselines to run next to the gateway (bare, gqlgen, yoga)")
	fs.IntVar(&o.yogaSubscribers, "yoga-subscribers", 5000, "fanout, idle: sockets of the GraphQL Yoga peer (one Node thread), at most the scenario's own")
	fs.StringVar(&o.yogaDir, "yoga-dir", "", "folder of the GraphQL Yoga peer (default: cmd/switchboard-load/yoga of the module)")
	fs.IntVar(&o.resumeEvents, "resume-events", 10000, "resume: events replayed to each resuming subscriber (the gateway keeps 10,000 per workspace)")
	fs.IntVar(&o.resumeRuns, "resume-runs", 5, "resume: resumes measured per server; the table shows their median")
	fs.IntVar(&o.resumeClients, "resume-clients", 64, "resume: concurrent clients committing the events first")
	fs.StringVar(&o.targetURL, "target", "", "load a running gateway at this URL instead of starting one")
	fs.StringVar(&o.token, "token", "", "with -target: an admin API token of the workspace")
	fs.IntVar(&o.targetPID, "target-pid", 0, "with -target: the gateway's process id, for RSS")
	fs.StringVar(&o.gatewayBin, "gateway-bin", "", "gateway binary (default: go build the module)")
	fs.StringVar(&o.profileDir, "profile", "", "save the gateway's CPU, heap and goroutine profiles (pprof, through its admin socket) into this directory")
	fs.DurationVar(&o.profileTime, "profile-time", 10*time.Second, "length of each CPU profile")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data, logs)")
	fs.BoolVar(&o.quiet, "q", false, "no progress on stderr")
	// Flags may come before or after the scenarios.
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	for _, s := range rest {
		if s == "all" {
			o.scenarios = append(o.scenarios, allScenarios...)
			continue
		}
		if !contains(allScenarios, s) && s != "datasize" { // datasize is long: only by name
			fs.Usage()
			return fmt.Errorf("unknown scenario %q", s)
		}
		o.scenarios = append(o.scenarios, s)
	}
	if len(o.scenarios) == 0 {
		fs.Usage()
		return fmt.Errorf("name a scenario")
	}
	if o.targetURL != "" && o.token == "" {
		return fmt.Errorf("-target needs -token")
	}
	if o.integrations < 1 {
		return fmt.Errorf("-integrations must be at least 1")
	}
	raiseFDLimit()

	var err error
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	if o.self, err = os.Executable(); err != nil {
		return err
	}
	if o.tmp, err = os.MkdirTemp("", "switchboard-load-"); err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(o.tmp)
	}
	logf, err := os.Create(filepath.Join(o.tmp, "load.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	o.log = logf
	if o.keep {
		fmt.Fprintln(os.Stderr, "logs and data in", o.tmp)
	}
	if o.targetURL == "" && o.gatewayBin == "" {
		if o.moduleRoot, err = moduleRoot(); err != nil {
			return err
		}
		if o.gatewayBin, err = buildGateway(o); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tab := &table{o: o}
	for _, s := range o.scenarios {
		if err := runScenario(ctx, o, tab, s); err != nil {
			tab.print(os.Stdout)
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	tab.print(os.Stdout)
	return nil
}

// moduleRoot finds the gateway's module (the go.mod of
// github.com/bont/switchboard, this module's parent) from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modulePath(b) == "github.com/bont/switchboard" {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the switchboard checkout; run from it or pass -gateway-bin")
		}
		dir = parent
	}
}

// modulePath is the module path a go.mod declares.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }

// runScenario runs one scenario o.runs times against the gateway and its
// baselines, one server at a time (so they do not share the cores), and
// records the figures in tab.
func runScenario(ctx context.Context, o *options, tab *table, scenario string) error {
	peers := []string{}
	for _, p := range strings.Split(o.peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			peers = append(peers, p)
		}
	}
	for run := 1; run <= o.runs; run++ {
		o.logf("== %s, run %d of %d", scenario, run, o.runs)
		o.profilePrefix = fmt.Sprintf("%s-run%d", scenario, run)
		switch scenario {
		case "fanout", "idle", "scale":
			sockets, per, lat, ev := o.subscribers, 1, o.latencyEvents, o.events
			switch scenario {
			case "idle":
				sockets, lat, ev = o.idleSockets, 0, 0
			case "scale":
				sockets, per = o.scaleSockets, o.scalePerSocket
				ev = 0
			}
			for _, name := range append([]string{"switchboard"}, peers...) {
				if scenario == "scale" && name != "switchboard" && name != "bare" {
					continue // the target compares with the bare-write baseline only
				}
				n := sockets
				if name == "yoga" {
					// One Node thread: the issue measured it at 5,000.
					n = min(sockets, o.yogaSubscribers)
					if y := prepareYoga(o); y.skip != "" {
						tab.note("GraphQL Yoga column skipped: " + y.skip)
						continue
					}
				}
				t, err := startTarget(ctx, o, name)
				if err != nil {
					return err
				}
				r, err := runFanout(ctx, o, t, n, per, lat, ev)
				t.stop()
				if err != nil {
					return err
				}
				tab.addFanout(scenario, name, r)
			}
		case "mutations", "query":
			g, err := startGateway(ctx, o)
			if err != nil {
				return err
			}
			var gw, base, small *rateResult
			var sizes writeSizes
			if scenario == "query" {
				gw, base, err = runQuery(ctx, o, g)
			} else {
				gw, base, small, sizes, err = runMutations(ctx, o, g)
			}
			g.stop()
			if err != nil {
				return err
			}
			tab.addRate(scenario, gw, base)
			if small != nil {
				tab.addSmallWrite(small, sizes)
			}
		case "datasize":
			r, err := runDatasize(ctx, o)
			if err != nil {
				return err
			}
			tab.addDatasize(r)
		case "resume":
			for _, name := range []string{"switchboard", "bare", "gqlgen"} {
				if name != "switchboard" && !contains(peers, name) {
					continue
				}
				r, err := runResume(ctx, o, name)
				if err != nil {
					return err
				}
				tab.addResume(name, r)
			}
		case "churn":
			for _, name := range []string{"switchboard", "gqlgen"} {
				if name == "gqlgen" && !contains(peers, "gqlgen") {
					continue
				}
				t, err := startTarget(ctx, o, name)
				if err != nil {
					return err
				}
				r, err := runChurn(ctx, o, t, o.churnCycles)
				t.stop()
				if err != nil {
					return err
				}
				tab.addChurn(name, r)
			}
		}
	}
	return nil
}

func startTarget(ctx context.Context, o *options, name string) (*target, error) {
	if name == "switchboard" {
		g, err := startGateway(ctx, o)
		if err != nil {
			return nil, err
		}
		return g.target, nil
	}
	if name == "yoga" {
		return startYoga(o, prepareYoga(o))
	}
	return startBaseline(ctx, o, name)
}
