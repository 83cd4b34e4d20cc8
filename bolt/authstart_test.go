package bolt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// A start link is stored with its state, lives as long as it, and dies
// when the state is taken; a take its accept refuses leaves both as they
// were.
func TestAuthStartLinks(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)
	s := mustOpenWith(t, filepath.Join(t.TempDir(), "db"), Options{Keyring: mustKeyring(t, "k1"), Now: func() time.Time { return now }})
	put := func(state, startID string, expires time.Time) {
		t.Helper()
		st := &switchboard.AuthState{State: state, WorkspaceID: "ws1", StartID: startID, BrowserBinding: []byte("b"), ExpiresAt: expires,
			Start: &switchboard.AuthStart{ID: startID, State: state, ProviderURL: "https://p/authorize?state=" + state, BrowserSecret: "secret-" + state, WorkspaceID: "ws1", TokenID: "tok", ExpiresAt: expires}}
		if err := s.PutAuthState(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	put("st-1", "start-1", now.Add(10*time.Minute))

	got, err := s.FindAuthStart(ctx, "start-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "st-1" || got.BrowserSecret != "secret-st-1" || got.ProviderURL != "https://p/authorize?state=st-1" || got.TokenID != "tok" {
		t.Fatalf("got %+v; want the stored link", got)
	}
	_, err = s.FindAuthStart(ctx, "st-1") // a state is not a start link
	wantCode(t, err, switchboard.ENOTFOUND)

	// Refused: nothing taken.
	refused := switchboard.Errorf(switchboard.EFORBIDDEN, "no")
	if _, err := s.TakeAuthState(ctx, "st-1", func(*switchboard.AuthState) error { return refused }); err != refused {
		t.Fatalf("got %v; want accept's error", err)
	}
	if _, err := s.FindAuthStart(ctx, "start-1"); err != nil {
		t.Fatalf("start link after a refused take: %v", err)
	}
	// Accepted: the state and its link go together.
	st, err := s.TakeAuthState(ctx, "st-1", func(st *switchboard.AuthState) error {
		if string(st.BrowserBinding) != "b" {
			t.Errorf("accept saw binding %q", st.BrowserBinding)
		}
		return nil
	})
	if err != nil || st.StartID != "start-1" {
		t.Fatalf("take: %+v, %v", st, err)
	}
	_, err = s.FindAuthStart(ctx, "start-1")
	wantCode(t, err, switchboard.ENOTFOUND)

	// Expired links are returned until the sweep removes them with their
	// states.
	put("st-2", "start-2", now.Add(-time.Second))
	put("st-3", "start-3", now.Add(time.Minute))
	if got, err := s.FindAuthStart(ctx, "start-2"); err != nil || !got.ExpiresAt.Before(now) {
		t.Fatalf("expired link: %+v, %v; want it returned for the caller to report", got, err)
	}
	if n, err := s.DeleteExpiredAuthStates(ctx, now); err != nil || n != 2 {
		t.Fatalf("sweep: %d, %v; want the expired state and its link", n, err)
	}
	_, err = s.FindAuthStart(ctx, "start-2")
	wantCode(t, err, switchboard.ENOTFOUND)
	if _, err := s.FindAuthStart(ctx, "start-3"); err != nil {
		t.Fatalf("live link swept: %v", err)
	}
	// A link must name its own state.
	bad := &switchboard.AuthState{State: "st-4", Start: &switchboard.AuthStart{ID: "start-4", State: "other"}}
	wantCode(t, s.PutAuthState(ctx, bad), switchboard.EINVALID)
	wantCode(t, s.PutAuthState(ctx, &switchboard.AuthState{State: "st-5", Start: &switchboard.AuthStart{ID: "start-3", State: "st-5"}}), switchboard.ECONFLICT)
}
