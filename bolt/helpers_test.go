package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

func mustKeyring(t *testing.T, id string) *seal.Keyring {
	t.Helper()
	key, err := seal.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.NewKeyring(seal.Key{ID: id, Secret: key})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// mustOpen opens a store on a fresh file with a fresh key.
func mustOpen(t *testing.T) *Store {
	t.Helper()
	return mustOpenWith(t, filepath.Join(t.TempDir(), "switchboard.db"), Options{Keyring: mustKeyring(t, "k1")})
}

// mustOpenWith opens a store at path; it is closed when the test ends.
func mustOpenWith(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCommit(t *testing.T, s *Store, c switchboard.Change) *switchboard.Event {
	t.Helper()
	ev, err := s.Commit(context.Background(), c)
	if err != nil {
		t.Fatalf("Commit(%s/%s): %v", c.WorkspaceID, c.IntegrationID, err)
	}
	if ev == nil {
		t.Fatalf("Commit(%s/%s): got nil event; want one", c.WorkspaceID, c.IntegrationID)
	}
	return ev
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := switchboard.ErrorCode(err); got != code {
		t.Fatalf("got %v (code %q); want code %q", err, got, code)
	}
}

func mustRevision(t *testing.T, s *Store) uint64 {
	t.Helper()
	rev, err := s.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func mustEvents(t *testing.T, s *Store, ws string, after uint64, limit int) []*switchboard.Event {
	t.Helper()
	evs, err := s.EventsAfter(context.Background(), ws, after, limit)
	if err != nil {
		t.Fatalf("EventsAfter(%s, %d, %d): %v", ws, after, limit, err)
	}
	return evs
}

func revisions(evs []*switchboard.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Revision
	}
	return out
}

var errExists = errors.New("integration exists")

// createChange creates a disconnected workspace integration (owner empty).
func createChange(ws, id, provider string) switchboard.Change {
	return createOwnedChange(ws, id, provider, "")
}

func createOwnedChange(ws, id, provider, owner string) switchboard.Change {
	return switchboard.Change{
		WorkspaceID:   ws,
		IntegrationID: id,
		Create:        true,
		Apply: func(cur *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			if cur != nil {
				return nil, "", errExists
			}
			cat := switchboard.CategoryCRM
			if owner != "" {
				cat = switchboard.CategoryEmailCalendar
			}
			return &switchboard.Integration{
				ID:           id,
				WorkspaceID:  ws,
				ProviderID:   provider,
				Category:     cat,
				OwnerUserID:  owner,
				Status:       switchboard.StatusDisconnected,
				StatusReason: switchboard.ReasonNeverConnected,
			}, switchboard.EventCreated, nil
		},
	}
}

// updateChange changes an existing integration with fn.
func updateChange(ws, id string, kind switchboard.EventKind, fn func(in *switchboard.Integration)) switchboard.Change {
	return switchboard.Change{
		WorkspaceID:   ws,
		IntegrationID: id,
		Apply: func(cur *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			fn(cur)
			return cur, kind, nil
		},
	}
}

// connectChange starts a new generation with tokens.
func connectChange(ws, id string, account string, tokens *switchboard.TokenSet) switchboard.Change {
	c := updateChange(ws, id, switchboard.EventConnected, func(in *switchboard.Integration) {
		in.Generation++
		in.Status = switchboard.StatusConnected
		in.StatusReason = switchboard.ReasonAuthorized
		in.Account = &switchboard.Account{ID: account, Name: account}
		in.SyncCheckpoint = ""
	})
	c.Tokens = tokens
	return c
}

// disconnectChange flips to DISCONNECTED and queues the teardown of the
// current generation.
func disconnectChange(ws, id string, gen uint64) switchboard.Change {
	c := updateChange(ws, id, switchboard.EventDisconnected, func(in *switchboard.Integration) {
		in.Status = switchboard.StatusDisconnected
		in.StatusReason = switchboard.ReasonUserDisconnected
	})
	c.Teardown = &switchboard.TeardownJob{ProviderID: "hubspot", Generation: gen}
	return c
}
