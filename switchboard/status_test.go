package switchboard

import (
	"slices"
	"testing"
)

func TestBadgeAndActions(t *testing.T) {
	tests := []struct {
		status  Status
		badge   Badge
		actions []Action
	}{
		{StatusConnected, Badge{"Connected", ToneSuccess}, []Action{ActionConfigure, ActionDisconnect}},
		{StatusReconnectRequired, Badge{"Reconnect", ToneWarning}, []Action{ActionReconnect, ActionConfigure, ActionDisconnect}},
		{StatusError, Badge{"Error", ToneDanger}, []Action{ActionReconnect, ActionConfigure, ActionDisconnect}},
		{StatusDisconnected, Badge{"Not connected", ToneNeutral}, []Action{ActionConnect}},
		{Status("BOGUS"), Badge{"BOGUS", ToneNeutral}, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.status), func(t *testing.T) {
			if got := BadgeFor(tt.status); got != tt.badge {
				t.Errorf("BadgeFor: got %+v; want %+v", got, tt.badge)
			}
			if got := ActionsFor(tt.status); !slices.Equal(got, tt.actions) {
				t.Errorf("ActionsFor: got %v; want %v", got, tt.actions)
			}
			for _, a := range []Action{ActionConnect, ActionConfigure, ActionReconnect, ActionDisconnect} {
				if got, want := tt.status.Allows(a), slices.Contains(tt.actions, a); got != want {
					t.Errorf("Allows(%s): got %v; want %v", a, got, want)
				}
			}
		})
	}
}

func TestPlanRules(t *testing.T) {
	tests := []struct {
		plan Plan
		want map[Category]bool
	}{
		{PlanBase, map[Category]bool{CategoryCRM: false, CategoryEmailCalendar: true, CategoryMessaging: false, CategoryOther: true}},
		{PlanPure, map[Category]bool{CategoryCRM: true, CategoryEmailCalendar: true, CategoryMessaging: true, CategoryOther: true}},
		{PlanFunky, map[Category]bool{CategoryCRM: true, CategoryEmailCalendar: false, CategoryMessaging: false, CategoryOther: true}},
		{PlanPitch, map[Category]bool{CategoryCRM: false, CategoryEmailCalendar: false, CategoryMessaging: true, CategoryOther: true}},
		{Plan("gold"), map[Category]bool{CategoryCRM: false, CategoryEmailCalendar: false, CategoryMessaging: false, CategoryOther: false}},
	}
	for _, tt := range tests {
		for c, want := range tt.want {
			if got := tt.plan.Allows(c); got != want {
				t.Errorf("%s.Allows(%s): got %v; want %v", tt.plan, c, got, want)
			}
		}
	}
	if got, want := PlansAllowing(CategoryCRM), []Plan{PlanPure, PlanFunky}; !slices.Equal(got, want) {
		t.Errorf("PlansAllowing(CRM): got %v; want %v", got, want)
	}
}

func TestCategoryTexts(t *testing.T) {
	if got := CategoryCRM.DisconnectWarning(); got != "WARNING: This is permanent. Disconnecting your CRM connection means you will no longer have data syncing between bont and your CRM." {
		t.Errorf("CRM warning: got %q", got)
	}
	for c, want := range map[Category]string{
		CategoryCRM:           "Settings → Integrations → CRM",
		CategoryEmailCalendar: "Personal Integrations",
		CategoryMessaging:     "Settings → App Settings → Workflows & Notifications",
		CategoryOther:         "Settings → Integrations",
	} {
		if got := c.SettingsLocation(); got != want {
			t.Errorf("%s.SettingsLocation: got %q; want %q", c, got, want)
		}
	}
	if !CategoryEmailCalendar.Personal() || CategoryCRM.Personal() {
		t.Error("only email and calendar integrations are personal")
	}
}

func TestCurrentGeneration(t *testing.T) {
	tests := []struct {
		in     Integration
		gen    uint64
		exists bool
	}{
		{Integration{Status: StatusConnected, Generation: 3}, 3, true},
		{Integration{Status: StatusReconnectRequired, Generation: 3}, 3, true},
		{Integration{Status: StatusError, Generation: 1}, 1, true},
		{Integration{Status: StatusDisconnected, Generation: 3}, 0, false},
		{Integration{Status: StatusDisconnected, Generation: 0}, 0, false},
	}
	for _, tt := range tests {
		gen, ok := tt.in.CurrentGeneration()
		if gen != tt.gen || ok != tt.exists {
			t.Errorf("%s gen %d: got (%d, %v); want (%d, %v)", tt.in.Status, tt.in.Generation, gen, ok, tt.gen, tt.exists)
		}
	}
}

func TestErrorCode(t *testing.T) {
	if got := ErrorCode(nil); got != "" {
		t.Errorf("nil: got %q", got)
	}
	if got := ErrorCode(Errorf(ECONFLICT, "x")); got != ECONFLICT {
		t.Errorf("got %q; want %q", got, ECONFLICT)
	}
	wrapped := errorsJoin(Errorf(ENOTFOUND, "gone"))
	if got := ErrorCode(wrapped); got != ENOTFOUND {
		t.Errorf("wrapped: got %q; want %q", got, ENOTFOUND)
	}
	plain := errString("disk on fire: /var/lib/secret")
	if got := ErrorCode(plain); got != EINTERNAL {
		t.Errorf("plain: got %q; want %q", got, EINTERNAL)
	}
	if got := ErrorMessage(plain); got != "Internal error." {
		t.Errorf("internal text leaked: %q", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

type wrapErr struct{ err error }

func (w wrapErr) Error() string { return "outer: " + w.err.Error() }
func (w wrapErr) Unwrap() error { return w.err }

func errorsJoin(err error) error { return wrapErr{err} }
