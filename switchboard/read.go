package switchboard

import (
	"context"
	"fmt"
	"strings"
)

// Providers lists the catalogue as the viewer's workspace sees it: a
// provider is available only if it is configured and on the plan.
func (s *Service) Providers(ctx context.Context, category *Category) ([]*Provider, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	ws, err := s.Store.FindWorkspaceByID(ctx, p.WorkspaceID)
	if err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	var out []*Provider
	for _, base := range s.Catalogue.Providers() {
		if category != nil && base.Category != *category {
			continue
		}
		out = append(out, s.providerFor(ws, base))
	}
	return out, nil
}

// providerFor returns a copy of base with availability for ws's plan. The
// plan's reason wins over a missing configuration: configuring the provider
// would not help a workspace whose plan lacks the category.
func (s *Service) providerFor(ws *Workspace, base *Provider) *Provider {
	pv := *base
	if !ws.Plan.Allows(pv.Category) {
		pv.Available = false
		pv.UnavailableReason = planReason(ws.Plan, pv.Category)
	}
	return &pv
}

func planReason(plan Plan, c Category) string {
	var names []string
	for _, p := range PlansAllowing(c) {
		names = append(names, string(p))
	}
	return fmt.Sprintf("%s integrations are part of the %s plans; this workspace is on the %s plan.",
		categoryNoun(c), strings.Join(names, " and "), plan)
}

func categoryNoun(c Category) string {
	switch c {
	case CategoryCRM:
		return "CRM"
	case CategoryEmailCalendar:
		return "Email and calendar"
	case CategoryMessaging:
		return "Slack and Microsoft Teams"
	}
	return "These"
}

// Provider returns the catalogue entry for id, for rendering an
// integration's provider field. It does not apply plan rules.
func (s *Service) Provider(id string) (*Provider, error) {
	pv, ok := s.Catalogue.Provider(id)
	if !ok {
		// An integration whose provider was removed from the providers
		// file still renders, as unavailable.
		return &Provider{ID: id, Name: id, Category: CategoryOther,
			UnavailableReason: "This provider is no longer configured."}, nil
	}
	return pv, nil
}

// Integrations lists the viewer's workspace's integrations and the viewer's
// own personal ones.
func (s *Service) Integrations(ctx context.Context, f IntegrationFilter) ([]*Integration, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	uid := p.UserID
	f.OwnerUserID = &uid
	return s.Store.FindIntegrations(ctx, p.WorkspaceID, f)
}

// Integration returns one integration the viewer may see. Integrations of
// other workspaces, and other users' personal ones, are ENOTFOUND exactly
// like IDs that do not exist.
func (s *Service) Integration(ctx context.Context, id string) (*Integration, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	return s.findVisible(ctx, p, id)
}

// Settings returns every setting of in's provider with its effective value.
func (s *Service) Settings(in *Integration) []Setting {
	pv, err := s.Provider(in.ProviderID)
	if err != nil {
		return nil
	}
	return pv.EffectiveSettings(in.SettingValues)
}
