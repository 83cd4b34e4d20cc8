package main

import (
	"flag"
	"fmt"
	"net"
	"strings"
	"time"
)

// connectionFlags are the flags of the connection limits
// (docs/security-limits.md).
func (m *Main) connectionFlags(fs *flag.FlagSet) {
	c := &m.Config
	fs.IntVar(&c.MaxPendingPerAddress, "max-pending-per-address", c.MaxPendingPerAddress, "websockets from one client address that have not sent connection_init yet (0: default 50; negative: no cap)")
	fs.IntVar(&c.MaxSocketsPerToken, "max-sockets-per-token", c.MaxSocketsPerToken, "open websockets per API token (0: default 100; negative: no cap)")
	fs.IntVar(&c.MaxSocketsPerWorkspace, "max-sockets-per-workspace", c.MaxSocketsPerWorkspace, "open websockets per workspace, over all its tokens (0: default 1000; negative: no cap)")
	fs.DurationVar(&c.WebsocketInitTimeout, "websocket-init-timeout", c.WebsocketInitTimeout, "time a websocket has to send connection_init before it is closed with 4408 (0: default 10s)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "time to read a request's headers (0: default 10s; negative: none)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "time to read a whole request, body included; websockets are not affected (0: default 30s; negative: none)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "time from the end of a request's headers to the end of its response; websockets are not affected (0: default 60s; negative: none)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "how long a kept-alive connection may wait for its next request (0: default 2m; negative: none)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "bound on a request's headers, in bytes (0: default 64 KiB; negative: net/http's 1 MiB)")
}

// durationOr is d, def for zero, and no limit (0 for net/http) for a
// negative d.
func durationOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func intOr(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// checkDevAddr refuses dev mode on an address that is not loopback unless
// -dev-allow-remote says so: dev mode serves the sandbox provider, whose
// console (grants of every workspace, revoke, expire) has no
// authentication, with a client secret written in the source. An address
// counts as loopback when it is a loopback IP or "localhost"; an empty
// host (":8080") listens on every interface, and other host names are not
// resolved, so they are refused too.
func (c Config) checkDevAddr(addr string) error {
	if !c.Dev || c.DevAllowRemote || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("dev mode refuses to listen on %q, which is not a loopback address: its sandbox console is unauthenticated and its sandbox client secret is fixed. "+
		"Listen on loopback (-addr 127.0.0.1:8080), run in production mode (-dev=false), or pass -dev-allow-remote to expose dev mode on purpose", addr)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
