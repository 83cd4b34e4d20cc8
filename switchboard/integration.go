package switchboard

import (
	"slices"
	"time"
)

// Integration is one card: a workspace's (or, for personal categories, one
// user's) connection to one provider. Its ID stays the same across
// disconnects and connects; each connect starts a new Generation.
type Integration struct {
	ID          string
	WorkspaceID string
	ProviderID  string
	Category    Category
	// OwnerUserID is the user a personal integration belongs to; empty for
	// workspace integrations.
	OwnerUserID string

	Status        Status
	StatusReason  string
	StatusMessage string

	// Generation is bumped by every connect. Credentials, teardown jobs and
	// sync reports name the generation they belong to; the store refuses
	// writes for a generation that is not current (see CurrentGeneration).
	Generation uint64

	Account        *Account
	AccountHistory []AccountPeriod
	GrantedScopes  []string
	MissingScopes  []string
	ConnectedAt    *time.Time
	LastSyncedAt   *time.Time
	// SyncCheckpoint is the sync engine's cursor for the current
	// generation. Reconnect keeps it; connect after disconnect clears it.
	SyncCheckpoint string

	// SettingValues holds the values set through configureIntegration, by
	// setting key. Unset keys take their definition's default.
	SettingValues map[string]string

	CreatedAt time.Time
	UpdatedAt time.Time
	// Revision is the store revision of the integration's latest change.
	Revision uint64
}

// CurrentGeneration returns the generation that may write credentials and
// sync reports, and false when none may: a disconnected integration has no
// current generation.
func (i *Integration) CurrentGeneration() (uint64, bool) {
	if i.Status == StatusDisconnected || i.Generation == 0 {
		return 0, false
	}
	return i.Generation, true
}

// Badge is derived from Status.
func (i *Integration) Badge() Badge { return BadgeFor(i.Status) }

// DisconnectWarning is the confirmation text for this integration.
func (i *Integration) DisconnectWarning() string { return i.Category.DisconnectWarning() }

// Clone returns a deep copy, so a store's Apply function can change it
// without touching the caller's value.
func (i *Integration) Clone() *Integration {
	if i == nil {
		return nil
	}
	c := *i
	if i.Account != nil {
		a := *i.Account
		c.Account = &a
	}
	c.AccountHistory = make([]AccountPeriod, len(i.AccountHistory))
	for k, p := range i.AccountHistory {
		c.AccountHistory[k] = p.clone()
	}
	c.GrantedScopes = slices.Clone(i.GrantedScopes)
	c.MissingScopes = slices.Clone(i.MissingScopes)
	c.ConnectedAt = cloneTime(i.ConnectedAt)
	c.LastSyncedAt = cloneTime(i.LastSyncedAt)
	if i.SettingValues != nil {
		c.SettingValues = make(map[string]string, len(i.SettingValues))
		for k, v := range i.SettingValues {
			c.SettingValues[k] = v
		}
	}
	return &c
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// Account is the provider-side identity an integration is connected as.
type Account struct {
	ID    string
	Name  string
	Email string
}

// AccountPeriod is a span during which an integration acted as Account.
// Until is nil for the current account.
type AccountPeriod struct {
	Account Account
	From    time.Time
	Until   *time.Time
}

func (p AccountPeriod) clone() AccountPeriod {
	p.Until = cloneTime(p.Until)
	return p
}

// IntegrationFilter narrows FindIntegrations. Nil fields match anything.
type IntegrationFilter struct {
	Category *Category
	Status   *Status
	// OwnerUserID, when set, keeps workspace integrations and the personal
	// integrations of that user only.
	OwnerUserID *string
}

// Match reports whether i passes the filter.
func (f IntegrationFilter) Match(i *Integration) bool {
	if f.Category != nil && i.Category != *f.Category {
		return false
	}
	if f.Status != nil && i.Status != *f.Status {
		return false
	}
	if f.OwnerUserID != nil && i.OwnerUserID != "" && i.OwnerUserID != *f.OwnerUserID {
		return false
	}
	return true
}

// EventKind names what happened in an Event.
type EventKind string

const (
	EventCreated           EventKind = "CREATED"
	EventConnected         EventKind = "CONNECTED"
	EventReconnected       EventKind = "RECONNECTED"
	EventAccountChanged    EventKind = "ACCOUNT_CHANGED"
	EventReconnectRequired EventKind = "RECONNECT_REQUIRED"
	EventError             EventKind = "ERROR"
	EventRecovered         EventKind = "RECOVERED"
	EventConfigured        EventKind = "CONFIGURED"
	EventDisconnected      EventKind = "DISCONNECTED"
	EventSynced            EventKind = "SYNCED"
)

// Event is one committed change to one integration, as kept in the
// changelog under its Revision. Integration is the state as of Revision.
type Event struct {
	Revision       uint64
	At             time.Time
	WorkspaceID    string
	Kind           EventKind
	Integration    *Integration
	PreviousStatus *Status
}
