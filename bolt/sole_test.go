package bolt

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/bont/switchboard/switchboard"
)

// setStatus moves an integration to status, optionally with the
// one-per-category rule.
func setStatus(ws, id string, status switchboard.Status, sole bool) switchboard.Change {
	return switchboard.Change{
		WorkspaceID:    ws,
		IntegrationID:  id,
		SoleInCategory: sole,
		SoleMessage: func(other *switchboard.Integration) string {
			return "Disconnect " + other.ProviderID + " first."
		},
		Apply: func(cur *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			cur.Status = status
			kind := switchboard.EventConnected
			if status == switchboard.StatusDisconnected {
				kind = switchboard.EventDisconnected
			} else {
				cur.Generation++
			}
			return cur, kind, nil
		},
	}
}

func TestSoleInCategoryRefusesASecond(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	mustCommit(t, s, createChange("ws", "int_a", "alpha"))
	mustCommit(t, s, createChange("ws", "int_b", "beta"))
	mustCommit(t, s, createChange("other", "int_c", "gamma"))
	// Another workspace's CRM does not count.
	mustCommit(t, s, setStatus("other", "int_c", switchboard.StatusConnected, true))
	mustCommit(t, s, setStatus("ws", "int_a", switchboard.StatusConnected, true))
	rev := mustRevision(t, s)

	_, err := s.Commit(ctx, setStatus("ws", "int_b", switchboard.StatusConnected, true))
	wantCode(t, err, switchboard.ECONFLICT)
	if !strings.Contains(switchboard.ErrorMessage(err), "Disconnect alpha first.") {
		t.Errorf("message %q does not name the other CRM", switchboard.ErrorMessage(err))
	}
	if got := mustRevision(t, s); got != rev {
		t.Errorf("a refused change wrote revision %d (was %d)", got, rev)
	}
	// Any status but DISCONNECTED counts.
	mustCommit(t, s, setStatus("ws", "int_a", switchboard.StatusReconnectRequired, false))
	_, err = s.Commit(ctx, setStatus("ws", "int_b", switchboard.StatusConnected, true))
	wantCode(t, err, switchboard.ECONFLICT)
	// Without the flag the store does not judge (other categories, other
	// kinds of change).
	mustCommit(t, s, setStatus("ws", "int_a", switchboard.StatusDisconnected, true))
	mustCommit(t, s, setStatus("ws", "int_b", switchboard.StatusConnected, true))
	// A change to the integration that holds the place is not refused by
	// itself.
	mustCommit(t, s, setStatus("ws", "int_b", switchboard.StatusError, true))
}

// Two connects racing through bbolt's Batch: exactly one wins every time.
func TestSoleInCategoryUnderConcurrency(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	const crms = 4
	for i := range crms {
		mustCommit(t, s, createChange("ws", fmt.Sprintf("int_%d", i), fmt.Sprintf("crm%d", i)))
	}
	for round := range 100 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, crms)
		for i := range crms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = s.Commit(ctx, setStatus("ws", fmt.Sprintf("int_%d", i), switchboard.StatusConnected, true))
			}()
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("round %d: int_%d and int_%d both connected", round, won, i)
			case err == nil:
				won = i
			case switchboard.ErrorCode(err) != switchboard.ECONFLICT:
				t.Fatalf("round %d: int_%d: %v", round, i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: no connect succeeded", round)
		}
		live, err := s.FindIntegrations(ctx, "ws", switchboard.IntegrationFilter{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, in := range live {
			if in.Status != switchboard.StatusDisconnected {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d CRMs connected; want 1", round, n)
		}
		mustCommit(t, s, setStatus("ws", fmt.Sprintf("int_%d", won), switchboard.StatusDisconnected, false))
	}
}
