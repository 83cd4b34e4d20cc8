package oauthflow

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bont/switchboard/switchboard"
)

// Setting definitions shared by the built-in providers.
var (
	crmSettings = []switchboard.SettingDefinition{
		{Key: "sync_interval_minutes", Label: "Sync interval (minutes)", Type: switchboard.SettingInteger, Default: "15", Min: 5, Max: 1440},
		{Key: "sync_deals", Label: "Sync deals", Type: switchboard.SettingBoolean, Default: "true"},
	}
	mailSettings = []switchboard.SettingDefinition{
		{Key: "sync_email", Label: "Sync email", Type: switchboard.SettingBoolean, Default: "true"},
		{Key: "sync_calendar", Label: "Sync calendar", Type: switchboard.SettingBoolean, Default: "true"},
	}
	messagingSettings = []switchboard.SettingDefinition{
		{Key: "notification_channel", Label: "Notification channel", Type: switchboard.SettingString, Default: "", MaxLength: 80},
	}
)

// BuiltinProviders returns the providers Switchboard knows without
// configuration, in catalogue order, all without credentials. Every
// endpoint, scope and quirk is checked against the provider's
// documentation; docs/design-decisions.md ("Provider catalogue") names the
// pages and how each deviation from OAuth 2.0 is handled.
//
// Microsoft 365 and Teams have no revocation endpoint (Microsoft offers
// none that revokes one grant): their revocation succeeds at once and
// disconnecting only deletes the stored tokens.
func BuiltinProviders() []ProviderConfig {
	ms := func(scopes ...string) []string { return scopes }
	ps := []ProviderConfig{
		{
			ID: "hubspot", Name: "HubSpot", Category: switchboard.CategoryCRM,
			AuthURL: "https://app.hubspot.com/oauth/authorize",
			// v1 token endpoint: 30-minute access tokens, no scope field
			// in the answer. HubSpot retires v1 on 2027-02-16; the dated
			// endpoints take the same form parameters.
			TokenURL: "https://api.hubapi.com/oauth/v1/token",
			// RFC 7009 shaped: token, token_type_hint, client_id and
			// client_secret in the form body.
			RevokeURL: "https://api.hubapi.com/oauth/2026-03/token/revoke",
			// The access-token metadata endpoint takes the token in the
			// path and answers user (email), user_id, hub_id, hub_domain.
			UserinfoURL:        "https://api.hubapi.com/oauth/v1/access-tokens/" + TokenPlaceholder,
			Identity:           IdentityFields{ID: "user_id", Name: "user", Email: "user"},
			AuthStyle:          AuthStyleParams,
			Scopes:             ms("crm.objects.contacts.read", "crm.objects.deals.read"),
			OptionalScopes:     ms("oauth"), // HubSpot may omit it from the granted list
			SettingDefinitions: crmSettings,
		},
		{
			// login.salesforce.com serves production orgs; a sandbox org
			// (test.salesforce.com) or a My Domain login URL is set with
			// authUrl/tokenUrl/revokeUrl/userinfoUrl in the providers file.
			ID: "salesforce", Name: "Salesforce", Category: switchboard.CategoryCRM,
			AuthURL:     "https://login.salesforce.com/services/oauth2/authorize",
			TokenURL:    "https://login.salesforce.com/services/oauth2/token",
			RevokeURL:   "https://login.salesforce.com/services/oauth2/revoke",
			UserinfoURL: "https://login.salesforce.com/services/oauth2/userinfo",
			Identity:    IdentityFields{ID: "user_id", Name: "name", Email: "email"},
			AuthStyle:   AuthStyleParams,
			// refresh_token is Salesforce's name for offline access; id
			// opens the identity services (userinfo).
			Scopes:         ms("api", "refresh_token"),
			OptionalScopes: ms("id"),
			// No expires_in: the refresher refreshes on a schedule.
			ExtraFields:        []string{"instance_url", "id", "issued_at"},
			SettingDefinitions: crmSettings,
		},
		{
			// Scopes are chosen in the app's registration; the token
			// answer lists them comma-separated.
			ID: "pipedrive", Name: "Pipedrive", Category: switchboard.CategoryCRM,
			AuthURL:            "https://oauth.pipedrive.com/oauth/authorize",
			TokenURL:           "https://oauth.pipedrive.com/oauth/token",
			RevokeURL:          "https://oauth.pipedrive.com/oauth/revoke",
			UserinfoURL:        "https://api.pipedrive.com/v1/users/me",
			Identity:           IdentityFields{ID: "data.id", Name: "data.name", Email: "data.email"},
			AuthStyle:          AuthStyleHeader,
			Scopes:             ms("contacts:read", "deals:read"),
			ExtraFields:        []string{"api_domain"},
			SettingDefinitions: crmSettings,
		},
		{
			ID: "google", Name: "Google", Category: switchboard.CategoryEmailCalendar,
			AuthURL:        "https://accounts.google.com/o/oauth2/v2/auth",
			TokenURL:       "https://oauth2.googleapis.com/token",
			RevokeURL:      "https://oauth2.googleapis.com/revoke",
			UserinfoURL:    "https://openidconnect.googleapis.com/v1/userinfo",
			AuthStyle:      AuthStyleParams,
			Scopes:         ms("https://www.googleapis.com/auth/gmail.readonly", "https://www.googleapis.com/auth/calendar.readonly"),
			OptionalScopes: ms("openid", "email", "profile"),
			// A refresh token only comes with offline access, and only on
			// consent.
			AuthParams:         map[string]string{"access_type": "offline", "prompt": "consent"},
			SettingDefinitions: mailSettings,
		},
		{
			// Refresh tokens rotate on every use; the old one is not
			// revoked, but only the newest is kept.
			ID: "microsoft", Name: "Microsoft 365", Category: switchboard.CategoryEmailCalendar,
			AuthURL:            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
			TokenURL:           "https://login.microsoftonline.com/common/oauth2/v2.0/token",
			UserinfoURL:        "https://graph.microsoft.com/v1.0/me",
			Identity:           IdentityFields{ID: "id", Name: "displayName", Email: "mail"},
			AuthStyle:          AuthStyleParams,
			Scopes:             ms("Mail.Read", "Calendars.Read", "User.Read"),
			OptionalScopes:     ms("openid", "profile", "email", "offline_access"),
			SettingDefinitions: mailSettings,
		},
		{
			ID: "slack", Name: "Slack", Category: switchboard.CategoryMessaging,
			AuthURL:  "https://slack.com/oauth/v2/authorize",
			TokenURL: "https://slack.com/api/oauth.v2.access",
			// auth.revoke takes the access token itself (as a bearer
			// token), not RFC 7009's form.
			RevokeURL:   "https://slack.com/api/auth.revoke",
			RevokeStyle: RevokeStyleBearer,
			// auth.test names the workspace the bot token belongs to.
			// Slack answers errors as HTTP 200 {"ok":false,"error":...}:
			// x/oauth2 reports the token endpoint's with the error code,
			// and userinfo and revocation read them too.
			UserinfoURL: "https://slack.com/api/auth.test",
			Identity:    IdentityFields{ID: "team_id", Name: "team", Email: "email"},
			// Slack asks for HTTP Basic client authentication over form
			// parameters.
			AuthStyle:          AuthStyleHeader,
			Scopes:             ms("chat:write", "channels:read"),
			SettingDefinitions: messagingSettings,
		},
		{
			ID: "teams", Name: "Microsoft Teams", Category: switchboard.CategoryMessaging,
			AuthURL:            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
			TokenURL:           "https://login.microsoftonline.com/common/oauth2/v2.0/token",
			UserinfoURL:        "https://graph.microsoft.com/v1.0/me",
			Identity:           IdentityFields{ID: "id", Name: "displayName", Email: "mail"},
			AuthStyle:          AuthStyleParams,
			Scopes:             ms("ChannelMessage.Send", "Team.ReadBasic.All", "User.Read"),
			OptionalScopes:     ms("openid", "profile", "offline_access"),
			SettingDefinitions: messagingSettings,
		},
	}
	for i := range ps {
		ps[i] = *ps[i].clone() // no aliasing of the shared definitions
	}
	return ps
}

// fileProvider is one entry of the providers file.
type fileProvider struct {
	ID             string            `yaml:"id"`
	Name           string            `yaml:"name"`
	Category       string            `yaml:"category"`
	ClientID       string            `yaml:"clientId"`
	ClientSecret   string            `yaml:"clientSecret"`
	AuthURL        string            `yaml:"authUrl"`
	TokenURL       string            `yaml:"tokenUrl"`
	RevokeURL      string            `yaml:"revokeUrl"`
	UserinfoURL    string            `yaml:"userinfoUrl"`
	RevokeStyle    string            `yaml:"revokeStyle"`
	Identity       *fileIdentity     `yaml:"identity"`
	Scopes         []string          `yaml:"scopes"`
	OptionalScopes []string          `yaml:"optionalScopes"`
	AuthStyle      string            `yaml:"authStyle"`
	AuthParams     map[string]string `yaml:"authParams"`
	ExtraFields    []string          `yaml:"extraFields"`
	RefreshMargin  string            `yaml:"refreshMargin"`
	Settings       []fileSetting     `yaml:"settings"`
}

type fileIdentity struct {
	ID    string `yaml:"id"`
	Name  string `yaml:"name"`
	Email string `yaml:"email"`
}

type fileSetting struct {
	Key       string   `yaml:"key"`
	Label     string   `yaml:"label"`
	Type      string   `yaml:"type"`
	Options   []string `yaml:"options"`
	Default   string   `yaml:"default"`
	Min       int64    `yaml:"min"`
	Max       int64    `yaml:"max"`
	MaxLength int      `yaml:"maxLength"`
}

type providersFile struct {
	Providers []fileProvider `yaml:"providers"`
}

// LoadProviders reads the providers file at path (see ParseProviders),
// expanding ${VAR} from the environment. An empty path yields the
// built-in providers without credentials.
func LoadProviders(path string) ([]ProviderConfig, error) {
	if path == "" {
		return BuiltinProviders(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("providers file: %w", err)
	}
	ps, err := ParseProviders(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("providers file %s: %w", path, err)
	}
	return ps, nil
}

// ParseProviders reads a providers file: the built-in providers, with the
// fields the file gives for them replacing their defaults, followed by the
// file's custom providers in file order. ${VAR} in any value is replaced by
// lookup(VAR) (unset: empty), after YAML parsing, so a value cannot change
// the file's structure; $$ stands for $. Unknown keys are errors, so a
// misspelt clientSecret does not pass silently. The ids "sandbox" and "sandbox-mail" are
// reserved for the dev-mode sandbox.
func ParseProviders(data []byte, lookup func(string) (string, bool)) ([]ProviderConfig, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	// Unknown keys and wrong types are caught on the file as written, so
	// yaml's "line N: ..." is the line in the file.
	var f providersFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// Values are expanded in the parsed tree, after parsing, so a value
	// cannot change the file's structure, and decoded from that tree.
	expandNode(&root, lookup)
	f = providersFile{}
	if err := root.Decode(&f); err != nil {
		return nil, err
	}
	lines := providerLines(&root)

	out := BuiltinProviders()
	index := make(map[string]int, len(out))
	for i, p := range out {
		index[p.ID] = i
	}
	builtin := len(out)
	seen := map[string]bool{}
	for n, fp := range f.Providers {
		where := fmt.Sprintf("providers[%d]", n)
		if n < len(lines) {
			where = fmt.Sprintf("line %d: %s", lines[n], where)
		}
		if fp.ID != "" {
			where += " (" + fp.ID + ")"
		}
		if fp.ID == "" {
			return nil, fmt.Errorf("%s: id is missing", where)
		}
		if fp.ID == "sandbox" || fp.ID == "sandbox-mail" {
			return nil, fmt.Errorf("%s: the id %s is reserved for the built-in dev sandbox", where, fp.ID)
		}
		if seen[fp.ID] {
			return nil, fmt.Errorf("%s: id %s appears twice", where, fp.ID)
		}
		seen[fp.ID] = true
		i, ok := index[fp.ID]
		if !ok || i >= builtin {
			if fp.Name == "" || fp.Category == "" || fp.AuthURL == "" || fp.TokenURL == "" {
				return nil, fmt.Errorf("%s: a custom provider needs name, category, authUrl and tokenUrl", where)
			}
			out = append(out, ProviderConfig{ID: fp.ID})
			i = len(out) - 1
			index[fp.ID] = i
		}
		if err := fp.apply(&out[i]); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		// Catch what NewRegistry would refuse now, with the file position.
		check := out[i].clone()
		if err := normalize(check); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return out, nil
}

// apply overrides p with the fields fp gives.
func (fp *fileProvider) apply(p *ProviderConfig) error {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&p.Name, fp.Name)
	if fp.Category != "" {
		p.Category = switchboard.Category(fp.Category)
	}
	set(&p.ClientID, fp.ClientID)
	set(&p.ClientSecret, fp.ClientSecret)
	set(&p.AuthURL, fp.AuthURL)
	set(&p.TokenURL, fp.TokenURL)
	set(&p.RevokeURL, fp.RevokeURL)
	set(&p.UserinfoURL, fp.UserinfoURL)
	if fp.RevokeStyle != "" {
		p.RevokeStyle = RevokeStyle(fp.RevokeStyle)
	}
	if fp.Identity != nil {
		p.Identity = IdentityFields{ID: fp.Identity.ID, Name: fp.Identity.Name, Email: fp.Identity.Email}
	}
	if fp.Scopes != nil {
		p.Scopes = fp.Scopes
	}
	if fp.OptionalScopes != nil {
		p.OptionalScopes = fp.OptionalScopes
	}
	if fp.AuthStyle != "" {
		p.AuthStyle = AuthStyle(fp.AuthStyle)
	}
	if fp.AuthParams != nil {
		p.AuthParams = fp.AuthParams
	}
	if fp.ExtraFields != nil {
		p.ExtraFields = fp.ExtraFields
	}
	if fp.RefreshMargin != "" {
		d, err := time.ParseDuration(fp.RefreshMargin)
		if err != nil {
			return fmt.Errorf("refreshMargin %q is not a duration such as 5m", fp.RefreshMargin)
		}
		p.RefreshMargin = d
	}
	if fp.Settings != nil {
		p.SettingDefinitions = nil
		for _, s := range fp.Settings {
			t := switchboard.SettingType(s.Type)
			switch t {
			case switchboard.SettingBoolean, switchboard.SettingInteger, switchboard.SettingString, switchboard.SettingEnum:
			default:
				return fmt.Errorf("setting %q: type %q is not BOOLEAN, INTEGER, STRING or ENUM", s.Key, s.Type)
			}
			label := s.Label
			if label == "" {
				label = s.Key
			}
			p.SettingDefinitions = append(p.SettingDefinitions, switchboard.SettingDefinition{
				Key: s.Key, Label: label, Type: t, Options: s.Options, Default: s.Default,
				Min: s.Min, Max: s.Max, MaxLength: s.MaxLength,
			})
		}
	} else if p.SettingDefinitions == nil {
		switch p.Category {
		case switchboard.CategoryCRM:
			p.SettingDefinitions = slices.Clone(crmSettings)
		case switchboard.CategoryEmailCalendar:
			p.SettingDefinitions = slices.Clone(mailSettings)
		case switchboard.CategoryMessaging:
			p.SettingDefinitions = slices.Clone(messagingSettings)
		}
	}
	return nil
}

// providerLines returns the line of each entry of the providers list.
func providerLines(root *yaml.Node) []int {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "providers" && doc.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, item := range doc.Content[i+1].Content {
				out = append(out, item.Line)
			}
			return out
		}
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandNode replaces ${VAR} in every scalar value (not keys).
func expandNode(n *yaml.Node, lookup func(string) (string, bool)) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!str" || n.Tag == "" {
			n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
				if m == "$$" {
					return "$"
				}
				v, _ := lookup(m[2 : len(m)-1])
				return v
			})
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			expandNode(n.Content[i], lookup)
		}
	default:
		for _, c := range n.Content {
			expandNode(c, lookup)
		}
	}
}
