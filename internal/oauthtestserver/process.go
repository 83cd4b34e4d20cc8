package oauthtestserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The environment of a process started by Start.
const (
	// EnvServe is "1" in a process that is to serve instead of doing
	// what it normally does.
	EnvServe = "SWITCHBOARD_TEST_OAUTH_SERVER"
	// EnvConfig holds its Config as JSON.
	EnvConfig = "SWITCHBOARD_TEST_OAUTH_CONFIG"
)

// startTimeout bounds how long a started process may take to listen.
const startTimeout = 15 * time.Second

// RunIfChild returns at once unless this process was started by Start. If
// it was, it serves on 127.0.0.1:0, prints its base URL as the first line
// of stdout, serves until stdin is closed (Stop, or the parent's death)
// and exits, never returning. A test binary calls it first in TestMain,
// so that the test can start its own binary as the server without a
// build step.
func RunIfChild() {
	if os.Getenv(EnvServe) != "1" {
		return
	}
	if err := serveChild(); err != nil {
		fmt.Fprintln(os.Stderr, "oauthtestserver:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveChild() error {
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv(EnvConfig)), &cfg); err != nil {
		return fmt.Errorf("%s: %w", EnvConfig, err)
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	if _, err := fmt.Fprintf(os.Stdout, "http://%s\n", ln.Addr()); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return hs.Close()
}

// Process is a server running as a child process.
type Process struct {
	// URL is the server's base URL, http://127.0.0.1:<port>.
	URL    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File
	client *http.Client
}

// Start runs executable as a server with cfg and returns once it listens.
// executable must call RunIfChild first thing (a test binary whose
// TestMain does: os.Executable() in a test). The caller must Stop it.
func Start(executable string, cfg Config) (*Process, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(executable)
	cmd.Env = append(os.Environ(), EnvServe+"=1", EnvConfig+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// An os.Pipe rather than StdoutPipe: Wait does not wait for, or close,
	// the reading end.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	w.Close()
	p := &Process{cmd: cmd, stdin: stdin, stdout: r, client: &http.Client{Timeout: 10 * time.Second}}

	line := make(chan string, 1)
	go func() {
		br := bufio.NewReader(r)
		s, _ := br.ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, br)
	}()
	select {
	case u := <-line:
		if !strings.HasPrefix(u, "http://") {
			p.Stop()
			return nil, fmt.Errorf("oauthtestserver: the process printed %q instead of its URL", u)
		}
		p.URL = u
		return p, nil
	case <-time.After(startTimeout):
		p.Stop()
		return nil, fmt.Errorf("oauthtestserver: the process did not listen within %v", startTimeout)
	}
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop kills the process and waits for it to end. It may be called more
// than once.
func (p *Process) Stop() {
	p.stdin.Close()
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.stdout.Close()
}

// Calls reads the server's call log (GET /admin/calls).
func (p *Process) Calls(ctx context.Context) (CallLog, error) {
	var log CallLog
	err := p.do(ctx, http.MethodGet, "/admin/calls", &log)
	return log, err
}

// RevokeAll revokes every grant at the server (POST /admin/revoke-all)
// and returns how many were live.
func (p *Process) RevokeAll(ctx context.Context) (int, error) {
	var out struct {
		Revoked int `json:"revoked"`
	}
	err := p.do(ctx, http.MethodPost, "/admin/revoke-all", &out)
	return out.Revoked, err
}

func (p *Process) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, p.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("oauthtestserver: " + method + " " + path + ": " + resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
