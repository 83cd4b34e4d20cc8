package switchboard

import (
	"testing"
	"time"
)

func TestApplyGrant(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	ada := Account{ID: "1", Name: "Ada", Email: "ada@x"}
	grace := Account{ID: "2", Name: "Grace", Email: "grace@x"}
	pv := &Provider{ID: "p", Name: "P", Scopes: []string{"a", "b"}}
	connected := func() *Integration {
		at := t0
		return &Integration{
			Status: StatusReconnectRequired, Generation: 2, SyncCheckpoint: "cursor-9",
			Account: &ada, ConnectedAt: &at,
			AccountHistory: []AccountPeriod{{Account: ada, From: t0}},
		}
	}
	disconnected := func() *Integration {
		until := t0
		return &Integration{
			Status: StatusDisconnected, Generation: 2, SyncCheckpoint: "cursor-9",
			AccountHistory: []AccountPeriod{{Account: ada, From: t0, Until: &until}},
		}
	}

	t.Run("connect after disconnect starts a new generation", func(t *testing.T) {
		st := &AuthState{Intent: IntentConnect, Generation: 2}
		next, kind, err := applyGrant(disconnected(), st, pv, &Grant{Account: grace, GrantedScopes: []string{"a", "b"}}, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if kind != EventConnected || next.Status != StatusConnected || next.Generation != 3 {
			t.Errorf("got kind %s status %s gen %d; want CONNECTED CONNECTED 3", kind, next.Status, next.Generation)
		}
		if next.SyncCheckpoint != "" {
			t.Errorf("checkpoint: got %q; want a fresh one", next.SyncCheckpoint)
		}
		if len(next.AccountHistory) != 2 || next.AccountHistory[1].Account != grace || next.AccountHistory[1].Until != nil {
			t.Errorf("history: got %+v", next.AccountHistory)
		}
	})
	t.Run("reconnect as the same account keeps generation and checkpoint", func(t *testing.T) {
		st := &AuthState{Intent: IntentReconnect, Generation: 2}
		next, kind, err := applyGrant(connected(), st, pv, &Grant{Account: ada, GrantedScopes: []string{"a", "b"}}, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if kind != EventReconnected || next.Generation != 2 || next.SyncCheckpoint != "cursor-9" || next.Status != StatusConnected {
			t.Errorf("got kind %s gen %d checkpoint %q status %s", kind, next.Generation, next.SyncCheckpoint, next.Status)
		}
		if len(next.AccountHistory) != 1 || !next.ConnectedAt.Equal(t0) {
			t.Errorf("history %+v connectedAt %v; want unchanged", next.AccountHistory, next.ConnectedAt)
		}
	})
	t.Run("reconnect as another account flips identity and keeps history", func(t *testing.T) {
		st := &AuthState{Intent: IntentReconnect, Generation: 2}
		next, kind, err := applyGrant(connected(), st, pv, &Grant{Account: grace, GrantedScopes: []string{"a", "b"}}, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if kind != EventAccountChanged || next.Account.ID != "2" || next.SyncCheckpoint != "cursor-9" {
			t.Errorf("got kind %s account %v checkpoint %q", kind, next.Account, next.SyncCheckpoint)
		}
		h := next.AccountHistory
		if len(h) != 2 || h[0].Account != ada || h[0].Until == nil || !h[0].Until.Equal(now) || h[1].Account != grace || h[1].Until != nil {
			t.Errorf("history: got %+v", h)
		}
	})
	t.Run("missing scopes is ERROR naming them", func(t *testing.T) {
		st := &AuthState{Intent: IntentReconnect, Generation: 2}
		next, _, err := applyGrant(connected(), st, pv, &Grant{Account: ada, GrantedScopes: []string{"a"}}, []string{"b"}, now)
		if err != nil {
			t.Fatal(err)
		}
		if next.Status != StatusError || next.StatusReason != ReasonMissingScopes || len(next.MissingScopes) != 1 {
			t.Errorf("got %s %s %v", next.Status, next.StatusReason, next.MissingScopes)
		}
	})
	for name, tc := range map[string]struct {
		cur *Integration
		st  *AuthState
	}{
		"stale generation":           {disconnected(), &AuthState{Intent: IntentConnect, Generation: 1}},
		"connect while connected":    {connected(), &AuthState{Intent: IntentConnect, Generation: 2}},
		"reconnect after disconnect": {disconnected(), &AuthState{Intent: IntentReconnect, Generation: 2}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := applyGrant(tc.cur, tc.st, pv, &Grant{Account: ada}, nil, now)
			if ErrorCode(err) != ECONFLICT {
				t.Errorf("got %v; want CONFLICT", err)
			}
		})
	}
}
