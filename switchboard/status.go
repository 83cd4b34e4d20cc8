package switchboard

import (
	"io"
	"strconv"
)

// Status is the state of an integration's connection. Badge and actions are
// derived from it, never stored.
type Status string

const (
	StatusConnected         Status = "CONNECTED"
	StatusReconnectRequired Status = "RECONNECT_REQUIRED"
	StatusError             Status = "ERROR"
	StatusDisconnected      Status = "DISCONNECTED"
)

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusConnected, StatusReconnectRequired, StatusError, StatusDisconnected:
		return true
	}
	return false
}

// Status reasons: machine-readable causes carried with every status change.
const (
	ReasonAuthorized          = "AUTHORIZED"
	ReasonTokenRevoked        = "TOKEN_REVOKED"
	ReasonTokenExpired        = "TOKEN_EXPIRED"
	ReasonRefreshFailed       = "REFRESH_FAILED"
	ReasonMissingScopes       = "MISSING_SCOPES"
	ReasonProviderUnavailable = "PROVIDER_UNAVAILABLE"
	ReasonUserDisconnected    = "USER_DISCONNECTED"
	ReasonNeverConnected      = "NEVER_CONNECTED"
	// ReasonRefreshInterrupted: a refresh was sent to a provider that
	// rotates refresh tokens, its answer was lost (the gateway stopped, or
	// the request timed out), and the provider now refuses the previous
	// refresh token as reused.
	ReasonRefreshInterrupted = "REFRESH_INTERRUPTED"
)

// BadgeTone is the colour family of a badge.
type BadgeTone string

const (
	ToneSuccess BadgeTone = "SUCCESS"
	ToneWarning BadgeTone = "WARNING"
	ToneDanger  BadgeTone = "DANGER"
	ToneNeutral BadgeTone = "NEUTRAL"
)

// Badge is what a card shows for a status.
type Badge struct {
	Label string
	Tone  BadgeTone
}

// Action is something a person can do to an integration from its card.
type Action string

const (
	ActionConnect    Action = "CONNECT"
	ActionConfigure  Action = "CONFIGURE"
	ActionReconnect  Action = "RECONNECT"
	ActionDisconnect Action = "DISCONNECT"
)

// BadgeFor returns the badge for a status. Unknown statuses get a neutral
// badge that names them, so a bug shows rather than hides.
func BadgeFor(s Status) Badge {
	switch s {
	case StatusConnected:
		return Badge{Label: "Connected", Tone: ToneSuccess}
	case StatusReconnectRequired:
		return Badge{Label: "Reconnect", Tone: ToneWarning}
	case StatusError:
		return Badge{Label: "Error", Tone: ToneDanger}
	case StatusDisconnected:
		return Badge{Label: "Not connected", Tone: ToneNeutral}
	}
	return Badge{Label: string(s), Tone: ToneNeutral}
}

// ActionsFor returns the actions a status offers, in the order a card shows
// them, before any filtering by what the viewer may do.
func ActionsFor(s Status) []Action {
	switch s {
	case StatusConnected:
		return []Action{ActionConfigure, ActionDisconnect}
	case StatusReconnectRequired, StatusError:
		return []Action{ActionReconnect, ActionConfigure, ActionDisconnect}
	case StatusDisconnected:
		return []Action{ActionConnect}
	}
	return nil
}

// Allows reports whether the status offers action a.
func (s Status) Allows(a Action) bool {
	for _, x := range ActionsFor(s) {
		if x == a {
			return true
		}
	}
	return false
}

// MarshalGQL and UnmarshalGQL let gqlgen bind the GraphQL enums to these
// types directly. They use only the standard library.

func (s Status) MarshalGQL(w io.Writer) { _, _ = io.WriteString(w, strconv.Quote(string(s))) }
func (s *Status) UnmarshalGQL(v any) error {
	return unmarshalEnum(v, (*string)(s), func(x string) bool { return Status(x).Valid() }, "IntegrationStatus")
}
func (t BadgeTone) MarshalGQL(w io.Writer) { _, _ = io.WriteString(w, strconv.Quote(string(t))) }
func (t *BadgeTone) UnmarshalGQL(v any) error {
	return unmarshalEnum(v, (*string)(t), func(x string) bool {
		switch BadgeTone(x) {
		case ToneSuccess, ToneWarning, ToneDanger, ToneNeutral:
			return true
		}
		return false
	}, "BadgeTone")
}
func (a Action) MarshalGQL(w io.Writer) { _, _ = io.WriteString(w, strconv.Quote(string(a))) }
func (a *Action) UnmarshalGQL(v any) error {
	return unmarshalEnum(v, (*string)(a), func(x string) bool {
		switch Action(x) {
		case ActionConnect, ActionConfigure, ActionReconnect, ActionDisconnect:
			return true
		}
		return false
	}, "IntegrationAction")
}

func unmarshalEnum(v any, dst *string, valid func(string) bool, name string) error {
	s, ok := v.(string)
	if !ok || !valid(s) {
		return Errorf(EINVALID, "%v is not a valid %s", v, name)
	}
	*dst = s
	return nil
}
