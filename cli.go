package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
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
