package switchboard

import (
	"context"
	"io"
	"strconv"
	"time"
)

// User is a person of a workspace. API tokens act as a user: personal
// integrations belong to the user, and the token's role is the user's.
type User struct {
	ID          string
	WorkspaceID string
	Name        string
	Email       string
	Role        Role
	CreatedAt   time.Time
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleMember || r == RoleSupport }

// KnownScopes lists every token scope.
var KnownScopes = []string{ScopeIntegrationsRead, ScopeIntegrationsWrite, ScopeSync, ScopeTokensAdmin}

// EventWorkspaceWiped is the kind of the events a workspace wipe writes, one
// per integration, all in the wipe's transaction. It tells the product's
// sync engine to delete everything synced for that integration.
const EventWorkspaceWiped EventKind = "WORKSPACE_WIPED"

// ReasonWorkspaceWiped is the status reason of a wiped integration.
const ReasonWorkspaceWiped = "WORKSPACE_WIPED"

// AuditEntry records one change: who (user, role, token), what (action,
// target, detail) and when. Entries are kept per workspace, bounded.
type AuditEntry struct {
	Seq         uint64 // assigned by the store, increasing per workspace
	WorkspaceID string
	At          time.Time
	UserID      string
	TokenID     string
	Role        Role
	Action      string // the mutation, e.g. "disconnectIntegration"
	Target      string // the ID acted on
	Detail      string
}

// IdempotencyRecord is the first result of a mutation sent with an
// idempotency key. It is scoped to the workspace and the token that sent
// it, and expires.
type IdempotencyRecord struct {
	WorkspaceID string
	TokenID     string
	Key         string
	Operation   string
	// InputHash is the SHA-256 of the operation and its input; a repeat
	// with another input is ECONFLICT.
	InputHash []byte
	// Result is the JSON of the first result. It may hold a secret (a
	// created API token), so stores keep it sealed.
	Result    []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// WipeResult is what a workspace wipe did, in its one transaction.
type WipeResult struct {
	// Workspace is the wiped workspace (set by the service).
	Workspace *Workspace
	// Events are the WORKSPACE_WIPED events, one per integration, in
	// revision order (contiguous); each must be published.
	Events []*Event
	// Teardowns is the number of teardown jobs queued (one per integration
	// that had a connection).
	Teardowns int
	// DeletedTokenIDs are the API tokens deleted.
	DeletedTokenIDs []string
}

// AccessStore is the part of the Store that holds who may do what: users,
// API tokens, the audit log and idempotency records. Every method is
// scoped by workspace.
type AccessStore interface {
	// CreateUser fails with ECONFLICT when the ID exists in the workspace.
	CreateUser(ctx context.Context, u *User) error
	// FindUserByID returns ENOTFOUND when there is no such user in the
	// workspace.
	FindUserByID(ctx context.Context, workspaceID, id string) (*User, error)
	// FindUsers lists a workspace's users ordered by ID.
	FindUsers(ctx context.Context, workspaceID string) ([]*User, error)

	// FindAPITokenByID returns ENOTFOUND when there is no such token in
	// the workspace.
	FindAPITokenByID(ctx context.Context, workspaceID, id string) (*APIToken, error)
	// FindAPITokens lists a workspace's tokens ordered by ID.
	FindAPITokens(ctx context.Context, workspaceID string) ([]*APIToken, error)
	// RevokeAPIToken sets RevokedAt (once; revoking again keeps the first
	// time) and returns the token.
	RevokeAPIToken(ctx context.Context, workspaceID, id string, at time.Time) (*APIToken, error)
	// TouchAPIToken records a use of the token.
	TouchAPIToken(ctx context.Context, workspaceID, id string, at time.Time) error

	// AppendAudit stores e, assigning e.Seq.
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// FindAudit returns up to limit entries of a workspace with Seq <
	// before (0: from the newest), newest first.
	FindAudit(ctx context.Context, workspaceID string, before uint64, limit int) ([]*AuditEntry, error)

	// FindIdempotency returns the record for (workspace, token, key), or
	// ENOTFOUND when there is none or it expired.
	FindIdempotency(ctx context.Context, workspaceID, tokenID, key string) (*IdempotencyRecord, error)
	// PutIdempotency stores r unless a live record for the same key exists
	// (then it returns that one, and stores nothing).
	PutIdempotency(ctx context.Context, r *IdempotencyRecord) (*IdempotencyRecord, error)

	// WipeWorkspace, in one transaction: turns every integration of the
	// workspace DISCONNECTED with reason WORKSPACE_WIPED and its account
	// history and settings cleared, queues a teardown for each that had a
	// connection, replaces the changelog by one WORKSPACE_WIPED event per
	// integration, and deletes the workspace's API tokens (but those with
	// the sync scope, which must read the wipe's events) and idempotency
	// records. ENOTFOUND for an unknown workspace.
	WipeWorkspace(ctx context.Context, workspaceID string, at time.Time) (*WipeResult, error)
}

func (r Role) MarshalGQL(w io.Writer) { _, _ = io.WriteString(w, strconv.Quote(string(r))) }
func (r *Role) UnmarshalGQL(v any) error {
	return unmarshalEnum(v, (*string)(r), func(x string) bool { return Role(x).Valid() }, "Role")
}
