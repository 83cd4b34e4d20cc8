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
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/seal"
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
	mux.HandleFunc("GET /secrets", m.adminSecrets)
	mux.HandleFunc("POST /rekey", m.adminRekey)
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
// (default: the data directory's, through the gateway if it is running),
// then that the configured keys (SWITCHBOARD_SECRET_KEY, else the data
// directory's secret.key) open every stored secret, naming those they do
// not.
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
	c := adminClient(*data)
	if fs.NArg() > 0 {
		target, c = fs.Arg(0), nil
		rep, err = bolt.Verify(target)
	} else if c != nil {
		rep, err = verifyThrough(c)
	} else {
		rep, err = bolt.Verify(target)
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard check:", err)
		return 1
	}
	where := target
	if c != nil {
		where += " (through the running gateway)"
	}
	fmt.Fprintf(stdout, "%s: revision %d, %d workspaces, %d integrations, %d events\n", where, rep.Revision, rep.Workspaces, rep.Integrations, rep.Events)
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "problem:", p)
	}
	secretsOK, err := checkSecrets(stdout, *data, target, c)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard check:", err)
		return 1
	}
	if !rep.OK() || !secretsOK {
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// checkSecrets reports which key seals the secrets of target and names
// those the configured keys do not open. Through a running gateway (c not
// nil), the gateway opens them with its keys, counting only those whose ids
// are configured here and whose key checks these keys open.
func checkSecrets(w io.Writer, dataDir, target string, c *http.Client) (bool, error) {
	kr, from, err := seal.LoadConfigured(dataDir)
	if err != nil {
		return false, err
	}
	if kr == nil {
		fmt.Fprintf(w, "secrets: not checked: no key configured (%s is unset and there is no %s)\n", seal.EnvVar, filepath.Join(dataDir, seal.KeyFileName))
		return true, nil
	}
	var rep *bolt.SecretsReport
	if c == nil {
		if rep, err = bolt.CheckSecretsFile(context.Background(), target, kr); err != nil {
			return false, err
		}
	} else {
		ids := kr.IDs()
		for {
			if rep, err = secretsThrough(c, ids); err != nil {
				return false, err
			}
			var good []string
			for _, id := range ids {
				if check, ok := rep.KeyChecks[id]; ok && !bolt.KeyCheckOpens(kr, id, check) {
					fmt.Fprintf(w, "key %s from %s is not the key the data file uses under that id\n", id, from)
					continue
				}
				good = append(good, id)
			}
			if len(good) == len(ids) {
				break
			}
			ids = good
		}
	}
	fmt.Fprintf(w, "secrets by key id (keys from %s: %s):\n", from, strings.Join(kr.IDs(), ", "))
	printKeyUsage(w, rep.Usage, kr.CurrentID())
	for _, ref := range rep.Unopenable {
		fmt.Fprintln(w, "unopenable:", ref)
	}
	if n := rep.UnopenableCount - len(rep.Unopenable); n > 0 {
		fmt.Fprintf(w, "unopenable: %d more\n", n)
	}
	if !rep.OK() {
		fmt.Fprintf(w, "%d secrets are sealed with keys these keys do not open: add those keys to %s (after the current one) before starting with these keys\n", rep.UnopenableCount, seal.EnvVar)
	}
	return rep.OK(), nil
}

func secretsThrough(c *http.Client, ids []string) (*bolt.SecretsReport, error) {
	return getThrough[bolt.SecretsReport](c, "http://switchboard/secrets?keys="+url.QueryEscape(strings.Join(ids, ",")))
}

func verifyThrough(c *http.Client) (*bolt.Report, error) {
	return getThrough[bolt.Report](c, "http://switchboard/verify")
}

// getThrough GETs u from the gateway's admin socket and decodes its JSON.
func getThrough[T any](c *http.Client, u string) (*T, error) {
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := gatewayRefusal(resp); err != nil {
		return nil, err
	}
	var v T
	return &v, json.NewDecoder(resp.Body).Decode(&v)
}

// gatewayRefusal is the error for an admin-socket answer other than 200
// (nil for 200), quoting the start of its body.
func gatewayRefusal(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return fmt.Errorf("gateway answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
}

func errOrProblems(err error, rep *bolt.Report) error {
	if err != nil {
		return err
	}
	return errors.New(strings.Join(rep.Problems, "; "))
}

// adminSecrets answers GET /secrets?keys=ID,ID: which key seals each
// stored secret, and the secrets that the gateway's keys with those ids
// (all of them without keys=) do not open.
func (m *Main) adminSecrets(w http.ResponseWriter, r *http.Request) {
	var ids []string
	if q := r.URL.Query(); q.Has("keys") {
		ids = []string{}
		for _, id := range strings.Split(q.Get("keys"), ",") {
			if id = strings.TrimSpace(id); id != "" {
				ids = append(ids, id)
			}
		}
	}
	rep, err := m.store.CheckSecrets(r.Context(), ids)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rep)
}

// rekeyLine is one line of POST /rekey's answer: progress after each
// batch, then the report (with an error if the run stopped early).
type rekeyLine struct {
	Progress *bolt.RekeyProgress `json:"progress,omitempty"`
	Report   *bolt.RekeyReport   `json:"report,omitempty"`
	Error    string              `json:"error,omitempty"`
}

// adminRekey answers POST /rekey?batch=N by re-sealing the store's secrets
// under the current key, streaming a JSON line per batch. A client that
// hangs up stops the run after the batch in progress; running it again
// finishes it.
func (m *Main) adminRekey(w http.ResponseWriter, r *http.Request) {
	batch := 0
	if v := r.URL.Query().Get("batch"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxRekeyBatch {
			http.Error(w, fmt.Sprintf("batch must be a number from 1 to %d", maxRekeyBatch), http.StatusBadRequest)
			return
		}
		batch = n
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(l rekeyLine) {
		_ = enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	rep, err := m.store.Rekey(r.Context(), bolt.RekeyOptions{BatchSize: batch, Progress: func(p bolt.RekeyProgress) {
		send(rekeyLine{Progress: &p})
	}})
	l := rekeyLine{Report: rep}
	if err != nil {
		l.Error = err.Error()
		m.Logger.Warn("rekey stopped", "err", err, "resealed", rep.Resealed)
	} else {
		m.Logger.Info("rekey", "resealed", rep.Resealed, "batches", rep.Batches, "retired", rep.Retired, "unopenable", rep.UnopenableCount)
	}
	send(l)
}
