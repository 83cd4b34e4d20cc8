package sandbox

import (
	"slices"
	"strings"

	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/switchboard"
)

// CRMProvider returns the catalogue entry for the CRM product of a
// sandbox served at baseURL (e.g. http://127.0.0.1:8080/sandbox).
func CRMProvider(baseURL, clientID, secret string) oauthflow.ProviderConfig {
	p := productEntry(baseURL, clientID, secret)
	p.ID, p.Name, p.Category = "sandbox", CRMName, switchboard.CategoryCRM
	p.Scopes = slices.Clone(crmScopes)
	p.SettingDefinitions = []switchboard.SettingDefinition{
		{Key: "sync_interval_minutes", Label: "Sync interval (minutes)", Type: switchboard.SettingInteger, Default: "15", Min: 5, Max: 1440},
		{Key: "sync_deals", Label: "Sync deals", Type: switchboard.SettingBoolean, Default: "true"},
		{Key: "pipeline", Label: "Pipeline", Type: switchboard.SettingEnum, Options: []string{"sales", "renewals", "all"}, Default: "sales"},
	}
	return p
}

// MailProvider returns the catalogue entry for the mail and calendar
// product of the same sandbox: a personal integration (EMAIL_CALENDAR) that
// each user connects for themselves. It has its own client registration.
func MailProvider(baseURL, clientID, secret string) oauthflow.ProviderConfig {
	p := productEntry(baseURL, clientID, secret)
	p.ID, p.Name, p.Category = "sandbox-mail", MailName, switchboard.CategoryEmailCalendar
	p.Scopes = slices.Clone(mailScopes)
	p.SettingDefinitions = []switchboard.SettingDefinition{
		{Key: "calendar_sync_days", Label: "Calendar sync window (days)", Type: switchboard.SettingInteger, Default: "30", Min: 1, Max: 365},
		{Key: "include_shared_calendars", Label: "Include shared calendars", Type: switchboard.SettingBoolean, Default: "false"},
	}
	return p
}

// productEntry is what every product of a sandbox shares: its
// endpoints, identity fields and client authentication.
func productEntry(baseURL, clientID, secret string) oauthflow.ProviderConfig {
	base := strings.TrimRight(baseURL, "/")
	return oauthflow.ProviderConfig{
		ClientID:     clientID,
		ClientSecret: secret,
		AuthURL:      base + "/authorize",
		TokenURL:     base + "/token",
		RevokeURL:    base + "/revoke",
		UserinfoURL:  base + "/userinfo",
		Identity:     oauthflow.IdentityFields{ID: "sub", Name: "name", Email: "email"},
		AuthStyle:    oauthflow.AuthStyleHeader,
	}
}

// Provider returns the catalogue entry for this sandbox's CRM.
func (s *Server) Provider() oauthflow.ProviderConfig {
	return CRMProvider(s.cfg.BaseURL, s.cfg.ClientID, s.cfg.ClientSecret)
}

// MailProvider returns the catalogue entry for this sandbox's mail client;
// ok is false when none is registered.
func (s *Server) MailProvider() (p oauthflow.ProviderConfig, ok bool) {
	if s.cfg.MailClientID == "" {
		return oauthflow.ProviderConfig{}, false
	}
	return MailProvider(s.cfg.BaseURL, s.cfg.MailClientID, s.cfg.MailClientSecret), true
}
