package switchboard

import (
	"io"
	"strconv"
)

// Category groups providers the way the product's settings pages do.
type Category string

const (
	CategoryCRM           Category = "CRM"
	CategoryEmailCalendar Category = "EMAIL_CALENDAR"
	CategoryMessaging     Category = "MESSAGING"
	CategoryOther         Category = "OTHER"
)

// Valid reports whether c is a known category.
func (c Category) Valid() bool {
	switch c {
	case CategoryCRM, CategoryEmailCalendar, CategoryMessaging, CategoryOther:
		return true
	}
	return false
}

// Personal reports whether integrations of this category belong to one user
// rather than to the workspace.
func (c Category) Personal() bool { return c == CategoryEmailCalendar }

// Exclusive reports whether a workspace may have only one integration of
// this category in a status other than DISCONNECTED (one CRM per
// workspace).
func (c Category) Exclusive() bool { return c == CategoryCRM }

// SettingsLocation is where the product's settings page shows cards of this
// category.
func (c Category) SettingsLocation() string {
	switch c {
	case CategoryCRM:
		return "Settings → Integrations → CRM"
	case CategoryEmailCalendar:
		return "Personal Integrations"
	case CategoryMessaging:
		return "Settings → App Settings → Workflows & Notifications"
	}
	return "Settings → Integrations"
}

// CRMDisconnectWarning is the exact text of the CRM disconnect confirmation.
const CRMDisconnectWarning = "WARNING: This is permanent. Disconnecting your CRM connection means you will no longer have data syncing between bont and your CRM."

// DisconnectWarning is the confirmation text shown before disconnecting an
// integration of this category.
func (c Category) DisconnectWarning() string {
	switch c {
	case CategoryCRM:
		return CRMDisconnectWarning
	case CategoryEmailCalendar:
		return "WARNING: This is permanent. Disconnecting this account means you will no longer have email and calendar data syncing between bont and this account."
	case CategoryMessaging:
		return "WARNING: This is permanent. Disconnecting this workspace means bont will no longer send workflows and notifications to it."
	}
	return "WARNING: This is permanent. Disconnecting this integration means you will no longer have data syncing between bont and this app."
}

func (c Category) MarshalGQL(w io.Writer) { _, _ = io.WriteString(w, strconv.Quote(string(c))) }
func (c *Category) UnmarshalGQL(v any) error {
	return unmarshalEnum(v, (*string)(c), func(x string) bool { return Category(x).Valid() }, "IntegrationCategory")
}

// Plan is a workspace's subscription plan; it decides which categories the
// workspace may connect.
type Plan string

const (
	PlanBase  Plan = "base"
	PlanPure  Plan = "pure"
	PlanFunky Plan = "funky"
	PlanPitch Plan = "pitch"
)

// Valid reports whether p is a known plan.
func (p Plan) Valid() bool {
	switch p {
	case PlanBase, PlanPure, PlanFunky, PlanPitch:
		return true
	}
	return false
}

// Allows reports whether the plan includes integrations of category c.
// CRM: pure and funky. Email and calendar: base and pure. Messaging: pure
// and pitch. Other providers: every plan.
func (p Plan) Allows(c Category) bool {
	switch c {
	case CategoryCRM:
		return p == PlanPure || p == PlanFunky
	case CategoryEmailCalendar:
		return p == PlanBase || p == PlanPure
	case CategoryMessaging:
		return p == PlanPure || p == PlanPitch
	}
	return p.Valid()
}

// PlansAllowing lists the plans that include category c, for messages such
// as "available on the pure and funky plans".
func PlansAllowing(c Category) []Plan {
	var out []Plan
	for _, p := range []Plan{PlanBase, PlanPure, PlanFunky, PlanPitch} {
		if p.Allows(c) {
			out = append(out, p)
		}
	}
	return out
}
