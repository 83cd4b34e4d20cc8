package main

// The GraphQL Yoga peer: a Node program in yoga/ (GraphQL Yoga with
// graphql-ws on ws), run by node as a child process like the Go
// baselines. It is optional: without node, or when its packages cannot
// be installed, the Yoga column is skipped with the reason, and nothing
// else changes.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// yogaPackages are the packages server.mjs imports; node_modules holds
// them after npm ci.
var yogaPackages = []string{"graphql-yoga", "graphql", "graphql-ws", "ws"}

// yogaPeer is the outcome of looking for the peer once per invocation.
type yogaPeer struct {
	checked bool
	node    string // node binary
	script  string // yoga/server.mjs
	skip    string // why the column is skipped; "" when it can run
}

// prepareYoga finds node and the peer's folder and installs its packages
// with npm ci when node_modules lacks them. It never fails: a reason to
// skip is recorded instead.
func prepareYoga(o *options) *yogaPeer {
	y := &o.yoga
	if y.checked {
		return y
	}
	y.checked = true
	node, err := exec.LookPath("node")
	if err != nil {
		y.skip = "node is not on PATH"
		return y
	}
	dir := o.yogaDir
	if dir == "" {
		root := o.moduleRoot
		if root == "" {
			if root, err = moduleRoot(); err != nil {
				y.skip = "its folder was not found: " + err.Error() + " (pass -yoga-dir)"
				return y
			}
		}
		dir = filepath.Join(root, "cmd", "switchboard-load", "yoga")
	}
	script := filepath.Join(dir, "server.mjs")
	if _, err := os.Stat(script); err != nil {
		y.skip = "no " + script
		return y
	}
	if missing := yogaMissing(dir); len(missing) > 0 {
		npm, err := exec.LookPath("npm")
		if err != nil {
			y.skip = fmt.Sprintf("its packages (%s) are not installed and npm is not on PATH; run npm ci in %s", strings.Join(missing, ", "), dir)
			return y
		}
		o.logf("yoga: installing its packages: npm ci --no-audit --no-fund in %s", dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = o.log, o.log
		if err := cmd.Run(); err != nil {
			y.skip = fmt.Sprintf("npm ci in %s failed: %v (its output is in the load log; run it by hand to see why)", dir, err)
			return y
		}
		if missing := yogaMissing(dir); len(missing) > 0 {
			y.skip = fmt.Sprintf("npm ci in %s left out %s", dir, strings.Join(missing, ", "))
			return y
		}
	}
	y.node, y.script = node, script
	return y
}

// yogaMissing lists the packages of yogaPackages not in dir/node_modules.
func yogaMissing(dir string) []string {
	var missing []string
	for _, p := range yogaPackages {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p, "package.json")); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

// startYoga runs the peer. Its /metrics has no goroutines (one JS
// thread); RSS comes from /proc like the others'.
func startYoga(o *options, y *yogaPeer) (*target, error) {
	c, err := startChild("yoga", o.log, listenLine, y.node, y.script)
	if err != nil {
		return nil, err
	}
	t := &target{name: "GraphQL Yoga", base: "http://" + c.addr, proc: c, pid: c.pid(), subscription: gatewaySubscription, noGoroutines: true}
	t.publish = func(ctx context.Context, hc *http.Client) error {
		_, err := gql(ctx, hc, t.base, "", `mutation { publish(kind: "CONFIGURED") { revision } }`, nil)
		return err
	}
	return t, nil
}
