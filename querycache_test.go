package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/bont/switchboard/switchboard"
)

// commitIntegration writes an integration straight to the store, as the
// lifecycle does, and returns once the commit is durable.
func commitIntegration(t *testing.T, m *Main, in switchboard.Integration, create bool) {
	t.Helper()
	_, err := m.store.Commit(context.Background(), switchboard.Change{WorkspaceID: DemoWorkspaceID, IntegrationID: in.ID, Create: create,
		Apply: func(cur *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			next := in
			if cur != nil {
				next.Generation = cur.Generation
			}
			return &next, switchboard.EventConnected, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestQueryCacheNeverLeaksAndSeesCommits: cached integrations queries
// answer every viewer with their own bytes (role and scopes decide the
// actions, the user the personal integrations), repeat exactly while
// nothing changes, and show a commit on the very next query.
func TestQueryCacheNeverLeaksAndSeesCommits(t *testing.T) {
	m := mustStart(t, "")
	const q = `{ integrations { id status statusReason actions provider { id } } }`
	readOnly := addUser(t, m, DemoWorkspaceID, "usr_ro", switchboard.RoleAdmin, switchboard.ScopeIntegrationsRead)
	mia := addUser(t, m, DemoWorkspaceID, "usr_mia", switchboard.RoleMember, switchboard.ScopeIntegrationsRead, switchboard.ScopeIntegrationsWrite)
	ben := addUser(t, m, DemoWorkspaceID, "usr_ben", switchboard.RoleMember, switchboard.ScopeIntegrationsRead, switchboard.ScopeIntegrationsWrite)
	commitIntegration(t, m, switchboard.Integration{ID: "int_crm", WorkspaceID: DemoWorkspaceID, ProviderID: "sandbox", Category: switchboard.CategoryCRM,
		Status: switchboard.StatusConnected, StatusReason: switchboard.ReasonAuthorized, Generation: 1}, true)
	commitIntegration(t, m, switchboard.Integration{ID: "int_mail", WorkspaceID: DemoWorkspaceID, ProviderID: "sandbox-mail", Category: switchboard.CategoryEmailCalendar,
		OwnerUserID: "usr_mia", Status: switchboard.StatusConnected, StatusReason: switchboard.ReasonAuthorized, Generation: 1}, true)

	viewers := map[string]*client{
		"admin": newClient(t, m, m.DemoToken), "read-only admin": newClient(t, m, readOnly),
		"mia": newClient(t, m, mia), "ben": newClient(t, m, ben),
	}
	first := map[string][]byte{}
	// Interleaved, twice: the second round is answered from the cache.
	for round := range 2 {
		for name, c := range viewers {
			raw, _, errs := c.do(q, nil)
			if len(errs) > 0 {
				t.Fatalf("%s: %v", name, errs)
			}
			if round == 0 {
				first[name] = raw
			} else if !bytes.Equal(raw, first[name]) {
				t.Fatalf("%s: round 2 got %s; want the same bytes as round 1 %s", name, raw, first[name])
			}
		}
	}
	has := func(name, s string) bool { return strings.Contains(string(first[name]), s) }
	for name, want := range map[string][2]bool{
		// name: {sees int_mail, has any action}; members manage only their own
		"admin": {false, true}, "read-only admin": {false, false}, "mia": {true, true}, "ben": {false, false},
	} {
		if got := has(name, `"int_mail"`); got != want[0] {
			t.Errorf("%s sees int_mail: %v; want %v (%s)", name, got, want[0], first[name])
		}
		if got := has(name, `"actions":["`); got != want[1] {
			t.Errorf("%s has actions: %v; want %v (%s)", name, got, want[1], first[name])
		}
	}
	if bytes.Equal(first["admin"], first["read-only admin"]) || bytes.Equal(first["mia"], first["ben"]) {
		t.Fatal("viewers with different roles, scopes or users got the same bytes")
	}

	// A commit is visible on the very next query, for every viewer.
	commitIntegration(t, m, switchboard.Integration{ID: "int_crm", WorkspaceID: DemoWorkspaceID, ProviderID: "sandbox", Category: switchboard.CategoryCRM,
		Status: switchboard.StatusReconnectRequired, StatusReason: switchboard.ReasonTokenRevoked}, false)
	for name, c := range viewers {
		raw, _, _ := c.do(q, nil)
		if !strings.Contains(string(raw), `"RECONNECT_REQUIRED"`) {
			t.Fatalf("%s after the commit: %s", name, raw)
		}
	}
	// The cache must not change other answers: an unknown field is an
	// error every time, never a cached success.
	for range 2 {
		if _, _, errs := viewers["admin"].do(`{ integrations { id nope } }`, nil); len(errs) == 0 {
			t.Fatal("a query with an unknown field succeeded")
		}
	}
}
