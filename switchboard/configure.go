package switchboard

import (
	"context"
	"fmt"
	"maps"
	"strings"
)

// ConfigureInput sets some of an integration's settings.
type ConfigureInput struct {
	ID               string
	Settings         []SettingInput
	ExpectedRevision uint64
}

// Configure validates settings against the provider's definitions and
// stores them. Keys not given keep their values. With ExpectedRevision it
// fails with ECONFLICT if the integration changed since.
func (s *Service) Configure(ctx context.Context, in ConfigureInput) (*Integration, error) {
	// Who may configure depends only on what never changes about the
	// integration (identity.go), so it is checked without a read of the
	// store once the integration has been seen.
	p, providerID, err := s.manageableID(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	pv, err := s.Provider(providerID)
	if err != nil {
		return nil, err
	}
	// Validate before the transaction so a bad key fails without a write
	// (and without a batch rolled back for it). Whether the input is
	// valid does not depend on the current values.
	if _, err := pv.ApplySettings(nil, in.Settings); err != nil {
		return nil, err
	}
	ev, err := s.Commit(ctx, Change{
		WorkspaceID:      p.WorkspaceID,
		IntegrationID:    in.ID,
		ExpectedRevision: in.ExpectedRevision,
		Apply: func(c *Integration) (*Integration, EventKind, error) {
			if c.Status == StatusDisconnected {
				return nil, "", Errorf(ECONFLICT, "This integration is disconnected; connect it before configuring it.")
			}
			next, err := pv.ApplySettings(c.SettingValues, in.Settings)
			if err != nil {
				return nil, "", err
			}
			if maps.Equal(next, c.SettingValues) {
				return nil, "", nil
			}
			c.SettingValues = next
			return c, EventConfigured, nil
		},
		Audit: func(ev *Event) *AuditEntry {
			keys := make([]string, len(in.Settings))
			for i, st := range in.Settings {
				keys[i] = st.Key
			}
			return auditEntry(p, ev.At, "configureIntegration", in.ID, fmt.Sprintf("settings %s, revision %d", strings.Join(keys, " "), ev.Revision))
		},
	})
	if err != nil {
		return nil, err
	}
	if ev == nil {
		return s.Store.FindIntegrationByID(ctx, p.WorkspaceID, in.ID)
	}
	return ev.Integration, nil
}
