package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

// Subcommands of the switchboard binary. They operate on the data file
// directly, so they need the server stopped (bbolt allows one process per
// file) and the same key (SWITCHBOARD_SECRET_KEY, or in dev mode the
// data directory's secret.key).

const cliUsage = `usage: switchboard token create --workspace W --role admin|member|support [flags]

Creates an API token and prints its secret once, on stdout. The workspace
(with --plan) and the user are created when missing: this is how a new
deployment gets its first admin token.
`

// runCLI runs a subcommand and returns the exit code.
func runCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "token" || args[1] != "create" {
		fmt.Fprint(stderr, cliUsage)
		return 2
	}
	if err := tokenCreate(context.Background(), args[2:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "switchboard token create:", err)
		return 1
	}
	return 0
}

func tokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("switchboard token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wsID := fs.String("workspace", "", "workspace ID (required)")
	wsName := fs.String("workspace-name", "", "name of a new workspace (default: its ID)")
	plan := fs.String("plan", "", "plan of a new workspace: base, pure, funky or pitch (required when the workspace does not exist)")
	role := fs.String("role", "", "admin, member or support (required)")
	userID := fs.String("user", "", "the user the token acts as (default: a new user)")
	userName := fs.String("user-name", "", "name of a new user")
	email := fs.String("email", "", "email of a new user")
	name := fs.String("name", "", "token name (default: \"<role> token (CLI)\")")
	scopes := fs.String("scopes", "", "comma-separated scopes (default: admin: integrations:read,integrations:write,tokens:admin; others: integrations:read,integrations:write)")
	expires := fs.Duration("expires", 0, "lifetime, e.g. 720h (default: no expiry)")
	dataDir := fs.String("data", "data", "data directory of the gateway")
	dev := fs.Bool("dev", true, "dev mode: read the key from <data>/secret.key when SWITCHBOARD_SECRET_KEY is unset")
	fs.Usage = func() { fmt.Fprint(stderr, cliUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	r := switchboard.Role(strings.ToUpper(*role))
	if *wsID == "" || !r.Valid() {
		fs.Usage()
		return errors.New("--workspace and --role (admin, member or support) are required")
	}
	var scopeList []string
	switch {
	case *scopes != "":
		for _, s := range strings.Split(*scopes, ",") {
			if s = strings.TrimSpace(s); s != "" {
				scopeList = append(scopeList, s)
			}
		}
	case r == switchboard.RoleAdmin:
		scopeList = []string{switchboard.ScopeIntegrationsRead, switchboard.ScopeIntegrationsWrite, switchboard.ScopeTokensAdmin}
	}
	for _, s := range scopeList {
		if !contains(switchboard.KnownScopes, s) {
			return fmt.Errorf("unknown scope %q; scopes are %s", s, strings.Join(switchboard.KnownScopes, ", "))
		}
	}

	keyring, err := seal.Load(*dataDir, *dev)
	if err != nil {
		return err
	}
	store, err := bolt.Open(filepath.Join(*dataDir, "switchboard.db"), bolt.Options{Keyring: keyring})
	if err != nil {
		// Includes "in use by another switchboard process" when the
		// server is running.
		return err
	}
	defer store.Close()

	now := time.Now().UTC()
	ws, err := store.FindWorkspaceByID(ctx, *wsID)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		p := switchboard.Plan(strings.ToLower(*plan))
		if !p.Valid() {
			return fmt.Errorf("workspace %s does not exist; give --plan (base, pure, funky or pitch) to create it", *wsID)
		}
		n := *wsName
		if n == "" {
			n = *wsID
		}
		ws = &switchboard.Workspace{ID: *wsID, Name: n, Plan: p, CreatedAt: now}
		if err := store.CreateWorkspace(ctx, ws); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created workspace %s (%q, plan %s)\n", ws.ID, ws.Name, ws.Plan)
	} else if err != nil {
		return err
	}

	var u *switchboard.User
	if *userID != "" {
		u, err = store.FindUserByID(ctx, ws.ID, *userID)
		if err == nil && u.Role != r {
			return fmt.Errorf("user %s has the %s role, not %s", u.ID, u.Role, r)
		} else if err != nil && switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
			return err
		}
	}
	if u == nil {
		id := *userID
		if id == "" {
			id = switchboard.NewID("usr")
		}
		un := *userName
		if un == "" {
			un = strings.ToLower(string(r)) + " (created with the CLI)"
		}
		u = &switchboard.User{ID: id, WorkspaceID: ws.ID, Name: un, Email: *email, Role: r, CreatedAt: now}
		if err := store.CreateUser(ctx, u); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created user %s (%s)\n", u.ID, u.Role)
	}

	t := &switchboard.APIToken{WorkspaceID: ws.ID, UserID: u.ID, Name: *name, Role: r, Scopes: scopeList}
	if t.Name == "" {
		t.Name = strings.ToLower(string(r)) + " token (CLI)"
	}
	if *expires > 0 {
		exp := now.Add(*expires)
		t.ExpiresAt = &exp
	}
	svc := &switchboard.Service{Store: store}
	secret, err := svc.CreateAPIToken(ctx, t)
	if err != nil {
		return err
	}
	if err := store.AppendAudit(ctx, &switchboard.AuditEntry{WorkspaceID: ws.ID, At: now, UserID: u.ID, TokenID: t.ID, Role: r,
		Action: "cli:tokenCreate", Target: t.ID, Detail: "created with the command line"}); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "created token %s for user %s in workspace %s (role %s); the secret is shown once:\n", t.ID, u.ID, ws.ID, r)
	fmt.Fprintln(stdout, secret)
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// maxRekeyBatch bounds -batch: one batch holds the write lock of a live
// gateway while it runs.
const maxRekeyBatch = 10000

const rekeyUsage = `usage: switchboard rekey [-data DIR] [-batch N]

Re-seals every stored secret (OAuth tokens of every generation, idempotency
records) under the current key, the first of SWITCHBOARD_SECRET_KEY, and
reports how many secrets each key id seals before and after. Through the
running gateway if there is one (its keys), else on the stopped data file
(this command's keys). It works in batches and can be stopped and run
again; once nothing uses an old key, the data file stops asking for it and
the key can be removed from SWITCHBOARD_SECRET_KEY.
`

// runRekey is `switchboard rekey`.
func runRekey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switchboard rekey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	batch := fs.Int("batch", bolt.DefaultRekeyBatch, fmt.Sprintf("secrets re-sealed per write transaction (1 to %d)", maxRekeyBatch))
	fs.Usage = func() { fmt.Fprint(stderr, rekeyUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *batch <= 0 || *batch > maxRekeyBatch {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := func(p bolt.RekeyProgress) {
		fmt.Fprintf(stderr, "batch %d: %d secrets visited, %d re-sealed\n", p.Batches, p.Visited, p.Resealed)
	}
	var (
		rep *bolt.RekeyReport
		how string
		err error
	)
	if c := adminClient(*data); c != nil {
		how = "through the running gateway"
		rep, err = rekeyThrough(ctx, c, *batch, progress)
	} else {
		how = "on the stopped data file"
		rep, err = rekeyFile(ctx, *data, *batch, progress)
	}
	if rep != nil {
		printRekeyReport(stdout, rep, how)
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard rekey:", err)
		if rep != nil && rep.Batches > 0 {
			fmt.Fprintln(stderr, "switchboard rekey: what was re-sealed stays so; run the command again to finish")
		}
		return 1
	}
	if rep.UnopenableCount > 0 {
		return 1
	}
	return 0
}

func rekeyFile(ctx context.Context, dataDir string, batch int, progress func(bolt.RekeyProgress)) (*bolt.RekeyReport, error) {
	kr, _, err := seal.LoadConfigured(dataDir)
	if err != nil {
		return nil, err
	}
	if kr == nil {
		return nil, fmt.Errorf("no key configured: set %s to the new key followed by the old ones (%s=new-id:new-key,old-id:old-key)", seal.EnvVar, seal.EnvVar)
	}
	path := filepath.Join(dataDir, "switchboard.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no data file: %w", err)
	}
	store, err := bolt.Open(path, bolt.Options{Keyring: kr})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	return store.Rekey(ctx, bolt.RekeyOptions{BatchSize: batch, Progress: progress})
}

func rekeyThrough(ctx context.Context, c *http.Client, batch int, progress func(bolt.RekeyProgress)) (*bolt.RekeyReport, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://switchboard/rekey?batch="+strconv.Itoa(batch), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := gatewayRefusal(resp); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var l rekeyLine
		if err := dec.Decode(&l); err != nil {
			if err == io.EOF {
				err = errors.New("the gateway ended the answer without a report")
			}
			return nil, err
		}
		switch {
		case l.Progress != nil:
			progress(*l.Progress)
		case l.Report != nil && l.Error != "":
			return l.Report, errors.New(l.Error)
		case l.Report != nil:
			return l.Report, nil
		}
	}
}

func printRekeyReport(w io.Writer, rep *bolt.RekeyReport, how string) {
	fmt.Fprintf(w, "rekey %s: %d secrets re-sealed under key %s in %d batches\n", how, rep.Resealed, rep.CurrentKey, rep.Batches)
	if rep.Before != nil {
		fmt.Fprintln(w, "before:")
		printKeyUsage(w, rep.Before, rep.CurrentKey)
	}
	if rep.After == nil {
		return
	}
	fmt.Fprintln(w, "after:")
	printKeyUsage(w, rep.After, rep.CurrentKey)
	for _, ref := range rep.Unopenable {
		fmt.Fprintln(w, "not re-sealed:", ref)
	}
	if n := rep.UnopenableCount - len(rep.Unopenable); n > 0 {
		fmt.Fprintf(w, "not re-sealed: %d more\n", n)
	}
	for _, id := range rep.Retired {
		fmt.Fprintf(w, "key %s seals nothing any more: the data file no longer needs it; remove it from %s (keep it with any backup taken before now)\n", id, seal.EnvVar)
	}
	for _, id := range rep.After.IDs() {
		if id != rep.CurrentKey && id != "" {
			fmt.Fprintf(w, "key %s is still in use (%s); run rekey again later\n", id, rep.After[id])
		}
	}
}

// printKeyUsage prints one line per key id in use.
func printKeyUsage(w io.Writer, u bolt.KeyUsage, current string) {
	ids := u.IDs()
	if len(ids) == 0 {
		fmt.Fprintln(w, "  no secrets stored")
	}
	for _, id := range ids {
		name := "key " + id
		switch {
		case id == "":
			name = "no key id (malformed)"
		case id == current:
			name += " (current)"
		}
		fmt.Fprintf(w, "  %s: %s\n", name, u[id])
	}
}
