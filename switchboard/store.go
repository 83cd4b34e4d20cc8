package switchboard

import (
	"context"
	"strconv"
	"time"
)

// TokenSet is an integration's OAuth credentials. Stores keep it encrypted,
// bound to workspace, integration and generation; it never appears in a
// GraphQL response or a log.
type TokenSet struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	Expiry       time.Time // zero: the provider gave no expires_in
	Scopes       []string
	// Extra keeps provider-specific values such as Salesforce's instance_url.
	Extra map[string]string
	// Serial numbers the credential writes of a generation: each write
	// (a connect, a reconnect, a refresh) gets the next one. The store
	// fills it in on FindTokens and PutTokens; it is not part of the
	// sealed value. A reconnect keeps the generation, so a refresh names
	// the Serial of the credentials it started from, and the store refuses
	// its writes once a reconnect has replaced them (see PutTokens,
	// PutRefreshState and Change.IfCredentials).
	Serial uint64 `json:"-"`
}

// AuthIntent says what an authorization was started for.
type AuthIntent string

const (
	IntentConnect   AuthIntent = "CONNECT"
	IntentReconnect AuthIntent = "RECONNECT"
)

// AuthState is a pending OAuth authorization, keyed by the random state
// parameter sent to the provider. It is one-time: TakeAuthState removes it.
type AuthState struct {
	State         string
	WorkspaceID   string
	IntegrationID string
	ProviderID    string
	UserID        string
	// TokenID and Role are who started it, for the audit log.
	TokenID string
	Role    Role
	Intent  AuthIntent
	// Generation is the integration's generation when the authorization
	// started; the callback commits only if it is still the same.
	Generation   uint64
	CodeVerifier string // PKCE; secret
	ReturnTo     string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	// StartID is the ID of the start link that sets the browser's cookie
	// (AuthStart); taking the state deletes the link too.
	StartID string
	// BrowserBinding is the SHA-256 of the secret the start link puts in
	// the browser's cookie. The callback must present that secret: a
	// callback URL replayed by another client, which lacks the cookie, is
	// refused without consuming the state.
	BrowserBinding []byte
	// Start, when set, is stored by PutAuthState in the same transaction.
	Start *AuthStart `json:"-"`
}

// AuthStart is the gateway's start link for a pending authorization: what
// authorizationUrl points at. Opening it sets a short-lived cookie holding
// BrowserSecret in that browser, then sends it to ProviderURL. It lives as
// long as its state and no longer: once the state is taken or expires, the
// link is dead.
type AuthStart struct {
	ID          string
	State       string
	ProviderURL string // the provider's authorization URL (state, PKCE challenge)
	// BrowserSecret is the cookie's value; its SHA-256 is the state's
	// BrowserBinding. Secret.
	BrowserSecret string
	WorkspaceID   string
	IntegrationID string
	// TokenID is the API token that started the flow; the flow dies with it.
	TokenID   string
	ExpiresAt time.Time
}

// TeardownJob revokes and deletes the credentials of one generation after a
// disconnect. It is queued in the disconnect's own transaction.
type TeardownJob struct {
	ID            uint64 // assigned by the store
	WorkspaceID   string
	IntegrationID string
	ProviderID    string
	Generation    uint64
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
}

// Change is one transaction on one integration: new state, changelog event
// and revision together, plus optional credentials and teardown job.
type Change struct {
	WorkspaceID   string
	IntegrationID string
	// Create allows the integration not to exist yet; Apply then gets nil.
	// The store refuses (ECONFLICT) a second integration for the same
	// provider and owner.
	Create bool
	// ExpectedRevision, when non-zero, must equal the integration's current
	// Revision, or the change fails with ECONFLICT.
	ExpectedRevision uint64
	// Apply computes the next state from a private copy of the current one.
	// It may run more than once (bbolt's Batch), so it must depend on its
	// input only. Returning an error aborts the change with nothing written;
	// returning a nil Integration also writes nothing and Commit returns
	// (nil, nil).
	Apply func(cur *Integration) (next *Integration, kind EventKind, err error)
	// Tokens, when set, are written for next's generation in the same
	// transaction.
	Tokens *TokenSet
	// Teardown, when set, is queued in the same transaction.
	Teardown *TeardownJob
	// SoleInCategory, when set, makes the store refuse the change with
	// ECONFLICT if next is in any status but DISCONNECTED while another
	// integration of the workspace with next's category is too. The check
	// runs inside the change's own transaction, so two changes racing to
	// connect a workspace's CRM cannot both succeed. SoleMessage, when
	// set, words the refusal for the other integration found.
	SoleInCategory bool
	SoleMessage    func(other *Integration) string
	At             time.Time
	// IfCredentials, when set, makes the store refuse the change with
	// ECONFLICT unless the current generation's credentials have this
	// Serial (0: none written with a serial). A verdict on credentials
	// (the provider refused them) then never lands on newer ones.
	IfCredentials *uint64
	// Audit, when set, is called with the event being committed and the
	// entry it returns (if not nil) is appended to the workspace's audit
	// log in the same transaction, so a change and its audit record are
	// durable together and cost one fsync. Like Apply it may run more than
	// once and must depend on its input only.
	Audit func(ev *Event) *AuditEntry
}

// Store is Switchboard's durable state. All methods are safe for concurrent
// use. Every key is scoped by workspace; nothing reads across workspaces
// except the lookups by random secret (tokens, OAuth states) and the
// teardown queue.
//
// Semantics an implementation must keep (bbolt now, etcd later):
//   - One global revision, increased by exactly one for each committed
//     Change; the state, the changelog entry and the revision are written
//     in one transaction, and Commit returns only once that is durable.
//   - Committed revisions are contiguous: every revision belongs to one
//     event that Commit returned.
//   - The changelog is kept per workspace and bounded; EventsAfter below
//     the compaction point fails with ECOMPACTED.
type Store interface {
	CreateWorkspace(ctx context.Context, w *Workspace) error
	FindWorkspaceByID(ctx context.Context, id string) (*Workspace, error)

	// CreateAPIToken stores t under the SHA-256 hash of its secret.
	CreateAPIToken(ctx context.Context, t *APIToken, secretHash []byte) error
	// FindAPITokenByHash returns ENOTFOUND for an unknown hash.
	FindAPITokenByHash(ctx context.Context, secretHash []byte) (*APIToken, error)

	// FindIntegrationByID returns ENOTFOUND if the integration does not
	// exist in that workspace.
	FindIntegrationByID(ctx context.Context, workspaceID, id string) (*Integration, error)
	// FindIntegrationByProvider finds the integration for a provider and
	// owner (empty owner: the workspace's), or ENOTFOUND.
	FindIntegrationByProvider(ctx context.Context, workspaceID, providerID, ownerUserID string) (*Integration, error)
	// FindIntegrations lists a workspace's integrations, ordered by ID.
	FindIntegrations(ctx context.Context, workspaceID string, f IntegrationFilter) ([]*Integration, error)

	// Commit applies c and returns the committed event. See Change.
	Commit(ctx context.Context, c Change) (*Event, error)

	// Revision returns the latest committed revision.
	Revision(ctx context.Context) (uint64, error)
	// EventsAfter returns up to limit events of a workspace with revision
	// > after, in order. It fails with ECOMPACTED when events after
	// `after` have been dropped by retention, and EINVALID when after is
	// beyond the latest revision.
	EventsAfter(ctx context.Context, workspaceID string, after uint64, limit int) ([]*Event, error)

	// FindTokens returns the credentials of one generation, or ENOTFOUND.
	FindTokens(ctx context.Context, workspaceID, integrationID string, generation uint64) (*TokenSet, error)
	// PutTokens replaces the credentials of a generation that have Serial
	// replaces; it fails with ECONFLICT unless generation is the
	// integration's current generation and its credentials still have
	// that Serial (nobody wrote others meanwhile). It also records their
	// TokenMeta (expiry, issue time, the next Serial, also set in t) and
	// clears the generation's RefreshState, in the same transaction.
	PutTokens(ctx context.Context, workspaceID, integrationID string, generation, replaces uint64, t *TokenSet) error

	// PutAuthState stores a pending authorization, and its start link
	// (s.Start) when set, in one transaction.
	PutAuthState(ctx context.Context, s *AuthState) error
	// TakeAuthState returns and deletes the pending authorization, in one
	// transaction, so a state can be used once. Unknown or already used
	// states return ENOTFOUND. Expired ones are returned (and deleted) so
	// the caller can say they expired. accept, when not nil, runs inside
	// the transaction on the stored state: when it returns an error,
	// nothing is deleted and TakeAuthState returns that error (with a nil
	// state), so a callback that may not use the state cannot burn it.
	// Taking a state also deletes its start link.
	TakeAuthState(ctx context.Context, state string, accept func(*AuthState) error) (*AuthState, error)
	// FindAuthStart returns a start link by ID, or ENOTFOUND when it is
	// unknown or its state was already taken. Expired links are returned
	// so the caller can say they expired.
	FindAuthStart(ctx context.Context, id string) (*AuthStart, error)
	// DeleteExpiredAuthStates removes states and start links that expired
	// before now.
	DeleteExpiredAuthStates(ctx context.Context, now time.Time) (int, error)

	// DueTeardowns returns up to limit queued teardown jobs due at now.
	DueTeardowns(ctx context.Context, now time.Time, limit int) ([]*TeardownJob, error)
	// RescheduleTeardown records a failed attempt.
	RescheduleTeardown(ctx context.Context, id uint64, next time.Time, lastError string) error
	// CompleteTeardown deletes the job and the credentials of its
	// generation. It never touches another generation's credentials.
	CompleteTeardown(ctx context.Context, id uint64) error

	RefreshStore
	AccessStore
}

// Broker fans committed events out to subscribers.
type Broker interface {
	// Publish hands over a committed event. It must be called once for
	// every event Commit returned, right after the commit, and never
	// blocks. Events may arrive out of revision order (concurrent commits
	// in one batch); the broker delivers them in order.
	Publish(ev *Event)
	// Subscribe replays the workspace's changelog after req.AfterRevision
	// and then streams live events, with no gap and no duplicate. The
	// subscription ends when ctx ends (unless req.EndByCall), when End is
	// called, or when the subscriber is cut off; then Err tells why.
	Subscribe(ctx context.Context, req SubscribeRequest) (*Subscription, error)
}

// SubscribeRequest says what a subscriber wants.
type SubscribeRequest struct {
	WorkspaceID string
	// AfterRevision nil means live events only.
	AfterRevision *uint64
	// Match, when set, keeps only events it returns true for (category,
	// visibility to the viewer). It runs on the publisher's path: keep it
	// cheap and non-blocking.
	Match func(*Event) bool
	// Notify, when set, is called after each event is queued and after
	// the subscription ends, so that a consumer can take events with
	// Subscription.Poll without a goroutine parked anywhere. It runs on
	// the publisher's path, possibly under the broker's lock: it must not
	// block, and must not call the broker.
	Notify func()
	// EndByCall, when set, makes Subscription.End the only way the
	// caller ends the subscription: ctx's end no longer does (it still
	// bounds Subscribe's own first read). A consumer that knows when it
	// is done (a transport stopping a subscription) thus spares the
	// broker a registration on ctx per subscription.
	EndByCall bool
}

// Subscription is a live stream of events, taken with Poll: the broker
// queues them in memory that grows only as the consumer falls behind, up
// to its bound, and calls the request's Notify after each one.
type Subscription struct {
	// Poll takes the next event without blocking: ev is non-nil when one
	// was queued; ev nil and more true means none yet (Notify will be
	// called when one is); ev nil and more false means the subscription
	// has ended and every event was taken. Safe to call from one
	// goroutine at a time.
	Poll func() (ev *Event, more bool)
	// Err returns why the subscription ended: nil when ctx ended or End
	// was called, an *Error with ECOMPACTED or a *CutoffError otherwise.
	// Valid once Poll returned more false.
	Err func() error
	// End ends the subscription now, as ctx's end would; calling it
	// again, or after the subscription ended, does nothing.
	End func()
}

// CutoffError is why a subscriber was dropped: it fell too far behind.
// It may resume with AfterRevision = LastRevision and lose nothing.
type CutoffError struct {
	LastRevision uint64
}

func (e *CutoffError) Error() string {
	return "subscriber fell too far behind; resume after revision " + strconv.FormatUint(e.LastRevision, 10)
}

// TokenMeta is what the refresher needs to schedule one connection's
// refreshes, kept in clear beside the sealed credentials so that a restart
// can rebuild the schedule of every connection without opening a single
// token. Nothing in it is secret.
type TokenMeta struct {
	WorkspaceID   string
	IntegrationID string
	ProviderID    string
	Generation    uint64
	Status        Status
	StatusReason  string
	// Expiry is the access token's expiry; zero when the provider gave no
	// expires_in (Salesforce).
	Expiry time.Time
	// HasRefreshToken is false for tokens that cannot be refreshed.
	HasRefreshToken bool
	// IssuedAt is when these credentials were stored.
	IssuedAt time.Time
	// Serial is the credentials' TokenSet.Serial.
	Serial uint64
	// Known is false when no metadata was ever written for the current
	// generation's credentials (written before the metadata existed): the
	// refresher then reads the tokens once.
	Known bool
	RefreshState
}

// RefreshState is the refresher's durable bookkeeping for one generation.
// Writing credentials (PutTokens, or a Change with Tokens) clears it.
type RefreshState struct {
	// FailingSince is the first transient failure of the current streak;
	// the ERROR badge comes once it is older than the failure window, and
	// survives restarts because it is stored.
	FailingSince *time.Time `json:",omitempty"`
	// RefreshStartedAt is set just before a refresh request is sent to
	// the provider and cleared when its answer is stored. Found set at
	// start, it means the process stopped while the provider may already
	// have rotated the refresh token.
	RefreshStartedAt *time.Time `json:",omitempty"`
}

// RefreshStore is the part of the Store the refresher uses beyond
// credentials. Listing is global (like the teardown queue): the refresher
// serves every workspace.
type RefreshStore interface {
	// TokenSchedule calls fn for every integration that has a current
	// generation (not DISCONNECTED), in no particular order, without
	// opening sealed credentials. An error from fn stops the walk.
	TokenSchedule(ctx context.Context, fn func(*TokenMeta) error) error
	// PutRefreshState replaces the refresh state of the credentials of a
	// generation that have Serial serial; like PutTokens it fails with
	// ECONFLICT unless generation is current and its credentials still
	// have that Serial.
	PutRefreshState(ctx context.Context, workspaceID, integrationID string, generation, serial uint64, st RefreshState) error
}
