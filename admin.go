package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bont/switchboard/bolt"
)

// The admin socket: a unix socket in the data directory (mode 0600, so the
// file system decides who may use it) through which the command line talks
// to a running gateway — a backup of a live store cannot be taken by
// opening the file, which the gateway holds locked.
const adminSocketName = "admin.sock"

func adminSocketPath(dataDir string) string { return filepath.Join(dataDir, adminSocketName) }

// serveAdmin listens on the admin socket. A stale socket file from a
// crashed process is replaced; the data file's lock, taken before this,
// guarantees no other gateway is using the directory.
func (m *Main) serveAdmin() (*http.Server, error) {
	path := adminSocketPath(m.Config.DataDir)
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := m.store.WriteTo(w); err != nil {
			m.Logger.Error("backup", "err", err)
		}
	})
	mux.HandleFunc("GET /verify", func(w http.ResponseWriter, r *http.Request) {
		rep, err := m.store.Verify()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	// Profiles, for the owner of the data directory only (the socket is
	// 0600), never on the public listener: e.g.
	// curl --unix-socket data/admin.sock http://admin/debug/pprof/profile?seconds=10
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// adminClient returns an HTTP client speaking over the admin socket of
// dataDir, or nil if no gateway is running there.
func adminClient(dataDir string) *http.Client {
	path := adminSocketPath(dataDir)
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil
	}
	conn.Close()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

// runBackup is `switchboard backup -o FILE`: a consistent copy of the data
// file, through the running gateway if there is one, then verified.
func runBackup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switchboard backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	out := fs.String("o", "", "file to write the backup to (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "switchboard backup: -o FILE is required")
		return 2
	}
	tmp := *out + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard backup:", err)
		return 1
	}
	n, how, err := copyStore(*data, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, *out)
	}
	if err != nil {
		os.Remove(tmp)
		fmt.Fprintln(stderr, "switchboard backup:", err)
		return 1
	}
	rep, err := bolt.Verify(*out)
	if err != nil || !rep.OK() {
		fmt.Fprintf(stderr, "switchboard backup: the copy does not verify: %v\n", errOrProblems(err, rep))
		return 1
	}
	fmt.Fprintf(stdout, "backup written to %s (%d bytes, %s, revision %d, %d integrations)\n", *out, n, how, rep.Revision, rep.Integrations)
	return 0
}

func copyStore(dataDir string, w io.Writer) (int64, string, error) {
	if c := adminClient(dataDir); c != nil {
		resp, err := c.Get("http://switchboard/backup")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, "", fmt.Errorf("gateway answered %s", resp.Status)
		}
		n, err := io.Copy(w, resp.Body)
		return n, "from the running gateway", err
	}
	n, err := bolt.Backup(filepath.Join(dataDir, "switchboard.db"), w)
	return n, "from the stopped data file", err
}

// runCheck is `switchboard check [-data DIR] [FILE]`: verifies a data file
// (default: the data directory's, through the gateway if it is running).
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switchboard check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var rep *bolt.Report
	var err error
	target := filepath.Join(*data, "switchboard.db")
	if fs.NArg() > 0 {
		target = fs.Arg(0)
		rep, err = bolt.Verify(target)
	} else if c := adminClient(*data); c != nil {
		target += " (through the running gateway)"
		rep, err = verifyThrough(c)
	} else {
		rep, err = bolt.Verify(target)
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard check:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: revision %d, %d workspaces, %d integrations, %d events\n", target, rep.Revision, rep.Workspaces, rep.Integrations, rep.Events)
	if !rep.OK() {
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, "problem:", p)
		}
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

func verifyThrough(c *http.Client) (*bolt.Report, error) {
	resp, err := c.Get("http://switchboard/verify")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("gateway answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var rep bolt.Report
	return &rep, json.NewDecoder(resp.Body).Decode(&rep)
}

func errOrProblems(err error, rep *bolt.Report) error {
	if err != nil {
		return err
	}
	return errors.New(strings.Join(rep.Problems, "; "))
}
