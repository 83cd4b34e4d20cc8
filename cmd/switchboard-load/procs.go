package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// raiseFDLimit lifts the soft file-descriptor limit to the hard one: every
// socket is a descriptor, on both ends.
func raiseFDLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// child is a server process the load command started.
type child struct {
	name string
	cmd  *exec.Cmd
	addr string // host:port it listens on
	done chan struct{}
}

// startChild runs bin with args and waits for a line "LISTEN host:port"
// (the baselines) or for match to find the address in a line (the
// gateway's log). stderr goes to logw.
func startChild(name string, logw io.Writer, match func(line string) (string, bool), bin string, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logw
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := match(line); ok {
				select {
				case found <- a:
				default:
				}
			}
			fmt.Fprintln(logw, line)
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { _ = cmd.Wait(); close(c.done) }()
	select {
	case c.addr = <-found:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s exited before listening (see its log)", name)
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, fmt.Errorf("%s did not listen within 30s", name)
	}
}

func listenLine(line string) (string, bool) {
	a, ok := strings.CutPrefix(line, "LISTEN ")
	return a, ok
}

// stop ends the child: SIGTERM, then SIGKILL after 10s.
func (c *child) stop() {
	if c == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// rssBytes reads VmRSS of a process from /proc.
func rssBytes(pid int) (int64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("no process to measure")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// promGauges reads the named gauges from a Prometheus text endpoint.
func promGauges(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if v, ok := strings.CutPrefix(line, n+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err == nil {
					out[n] = f
				}
			}
		}
	}
	return out, sc.Err()
}
