package switchboard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// The sync engine's side of an integration. Tokens with the sync scope act
// for the whole workspace, personal integrations included: the sync engine
// syncs every user's mailbox. Every call names the integration's
// generation; a call for a generation that is over, or for a disconnected
// integration, fails with ECONFLICT. That is how "no new data flows in or
// out after a disconnect" is enforced: the sync engine can neither get a
// token nor move a checkpoint for a connection that ended.

// SyncToken is what the sync engine gets to call the provider's API.
type SyncToken struct {
	IntegrationID string
	ProviderID    string
	Generation    uint64
	AccessToken   string
	// TokenID names AccessToken in reports (see TokenID).
	TokenID   string
	TokenType string
	// ExpiresAt is zero when the provider gave no expiry.
	ExpiresAt time.Time
	// Extra holds provider values the API calls need (Salesforce's
	// instance_url, Pipedrive's api_domain).
	Extra map[string]string
	// Status is the integration's status after the call.
	Status Status
}

// SyncState is where an integration's sync stands.
type SyncState struct {
	Integration *Integration
	Generation  uint64
}

// SyncProgress is a progress report: the checkpoint to resume from, and
// when the data it covers was synced.
type SyncProgress struct {
	Generation uint64
	Checkpoint string
	SyncedAt   time.Time
}

// AuthFailure reports that the provider's API refused the access token.
type AuthFailure struct {
	Generation uint64
	// TokenID names the refused token (SyncToken.TokenID). When it was
	// already replaced, the replacement is returned without a refresh.
	// Empty: refresh regardless.
	TokenID string
	// HTTPStatus and Body are what the provider's API answered; Body is
	// logged (shortened, control characters dropped), never stored.
	HTTPStatus int
	Body       string
}

// MaxCheckpointBytes bounds a sync checkpoint.
const MaxCheckpointBytes = 4096

// maxClockSkew is how far in the future a reported syncedAt may be.
const maxClockSkew = 5 * time.Minute

func (s *Service) syncPrincipal(ctx context.Context) (*Principal, error) {
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if !p.HasScope(ScopeSync) {
		return nil, Errorf(EFORBIDDEN, "This API needs a token with the %q scope.", ScopeSync)
	}
	return p, nil
}

func (s *Service) syncIntegration(ctx context.Context, p *Principal, id string) (*Integration, error) {
	in, err := s.Store.FindIntegrationByID(ctx, p.WorkspaceID, id)
	if ErrorCode(err) == ENOTFOUND {
		return nil, notFound(id)
	}
	return in, err
}

// TokenSource hands out usable credentials for a connection: the
// refresher, which refreshes them first when they are due. Implementations
// must be safe for concurrent use.
type TokenSource interface {
	// Token returns usable credentials for the generation (0: the current
	// one) and the integration as it stands after the call. With force
	// (the provider's API refused a token) it refreshes, unless failedID
	// names a token (TokenID) that was already replaced. The result is
	// stored before it is returned. It fails with ECONFLICT when the
	// generation is not current or the connection needs a reconnect,
	// EUNAVAILABLE when the provider cannot be reached (or the next
	// refresh may not start yet), and ENOTFOUND for an unknown
	// integration.
	Token(ctx context.Context, workspaceID, integrationID string, generation uint64, force bool, failedID string) (*TokenSet, *Integration, error)
}

func (s *Service) tokenSource() (TokenSource, error) {
	if s.TokenSource == nil {
		return nil, fmt.Errorf("sync: no token source configured (Service.TokenSource)")
	}
	return s.TokenSource, nil
}

// SyncAccessToken returns a usable access token for the integration's
// current generation (or the given one; 0 means current), refreshing it
// first when it expires within the provider's margin. The refreshed tokens
// are stored before they are returned.
func (s *Service) SyncAccessToken(ctx context.Context, id string, generation uint64) (*SyncToken, error) {
	return s.syncToken(ctx, id, generation, false, "")
}

func (s *Service) syncToken(ctx context.Context, id string, generation uint64, force bool, failedID string) (*SyncToken, error) {
	p, err := s.syncPrincipal(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.tokenSource()
	if err != nil {
		return nil, err
	}
	if _, err := s.syncIntegration(ctx, p, id); err != nil {
		return nil, err
	}
	t, in, err := r.Token(ctx, p.WorkspaceID, id, generation, force, failedID)
	if err != nil {
		return nil, err
	}
	return &SyncToken{
		IntegrationID: in.ID,
		ProviderID:    in.ProviderID,
		Generation:    in.Generation,
		AccessToken:   t.AccessToken,
		TokenID:       TokenID(t.AccessToken),
		TokenType:     t.TokenType,
		ExpiresAt:     t.Expiry,
		Extra:         t.Extra,
		Status:        in.Status,
	}, nil
}

// SyncStatus returns the integration as the sync engine needs it: its
// generation, status and checkpoint.
func (s *Service) SyncStatus(ctx context.Context, id string) (*Integration, error) {
	p, err := s.syncPrincipal(ctx)
	if err != nil {
		return nil, err
	}
	return s.syncIntegration(ctx, p, id)
}

// ReportSyncProgress stores the checkpoint and lastSyncedAt of the
// generation named. It commits one SYNCED event when either changed (the
// checkpoint must be durable before it is acknowledged, and the card's
// "last synced" updates live); a report that changes nothing writes
// nothing. lastSyncedAt never moves backwards. Reports are accepted in
// every status but DISCONNECTED: a sync that finishes while the badge
// says Reconnect still moved the checkpoint.
func (s *Service) ReportSyncProgress(ctx context.Context, id string, in SyncProgress) (*Integration, error) {
	p, err := s.syncPrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if in.Generation == 0 {
		return nil, &Error{Code: EINVALID, Field: "generation", Message: "A progress report must name the generation it belongs to."}
	}
	if len(in.Checkpoint) > MaxCheckpointBytes {
		return nil, &Error{Code: EINVALID, Field: "checkpoint", Message: fmt.Sprintf("The checkpoint is longer than %d bytes.", MaxCheckpointBytes)}
	}
	now := s.now()
	if in.SyncedAt.IsZero() {
		in.SyncedAt = now
	}
	if in.SyncedAt.After(now.Add(maxClockSkew)) {
		return nil, &Error{Code: EINVALID, Field: "syncedAt", Message: "syncedAt is in the future; check the sync engine's clock."}
	}
	syncedAt := in.SyncedAt.UTC()
	if _, err := s.syncIntegration(ctx, p, id); err != nil {
		return nil, err
	}
	ev, err := s.Commit(ctx, Change{
		WorkspaceID:   p.WorkspaceID,
		IntegrationID: id,
		At:            now,
		Apply: func(c *Integration) (*Integration, EventKind, error) {
			gen, ok := c.CurrentGeneration()
			if !ok {
				return nil, "", Errorf(ECONFLICT, "Integration %s is disconnected; its sync has stopped and no progress is recorded.", id)
			}
			if gen != in.Generation {
				return nil, "", Errorf(ECONFLICT, "Generation %d of integration %s is over (current generation %d); this report is not recorded.", in.Generation, id, gen)
			}
			changed := c.SyncCheckpoint != in.Checkpoint
			c.SyncCheckpoint = in.Checkpoint
			if c.LastSyncedAt == nil || syncedAt.After(*c.LastSyncedAt) {
				t := syncedAt
				c.LastSyncedAt = &t
				changed = true
			}
			if !changed {
				return nil, "", nil
			}
			return c, EventSynced, nil
		},
	})
	if err != nil {
		return nil, err
	}
	if ev == nil {
		return s.Store.FindIntegrationByID(ctx, p.WorkspaceID, id)
	}
	return ev.Integration, nil
}

// ReportAuthFailure handles the provider's API refusing an access token:
// it refreshes at once (unless the refused token was already replaced) and
// classifies the outcome as a scheduled refresh would. On success it
// returns the new token; otherwise the error says what the badge now
// shows (ECONFLICT when a reconnect is required, EUNAVAILABLE when the
// provider cannot be reached).
func (s *Service) ReportAuthFailure(ctx context.Context, id string, f AuthFailure) (*SyncToken, error) {
	p, err := s.syncPrincipal(ctx)
	if err != nil {
		return nil, err
	}
	if f.Generation == 0 {
		return nil, &Error{Code: EINVALID, Field: "generation", Message: "An authorization failure report must name the generation it belongs to."}
	}
	s.Log().Info("sync engine reports an authorization failure", "workspace", p.WorkspaceID, "integration", id,
		"generation", f.Generation, "status", f.HTTPStatus, "body", sanitize(f.Body, 300))
	return s.syncToken(ctx, id, f.Generation, true, f.TokenID)
}

// TokenID names an access token without revealing it: the first 16 hex
// digits of its SHA-256. The sync API returns it with every token, and an
// authorization failure report names the token that failed by it.
func TokenID(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return hex.EncodeToString(sum[:8])
}
