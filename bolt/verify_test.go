package bolt

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// verifyFixture writes a small store with two workspaces and closes it.
func verifyFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "switchboard.db")
	s, err := Open(path, Options{Keyring: mustKeyring(t, "k1"), ChangelogMaxEvents: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, ws := range []string{"wa", "wb"} {
		mustCommit(t, s, createChange(ws, "i1", "p"))
		for i := 0; i < 4; i++ {
			mustCommit(t, s, updateChange(ws, "i1", switchboard.EventConfigured, func(in *switchboard.Integration) {
				in.SettingValues = map[string]string{"n": strings.Repeat("x", i)}
			}))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerify(t *testing.T) {
	path := verifyFixture(t)
	r, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Revision != 10 || r.Workspaces != 2 || r.Integrations != 2 || r.Events != 6 {
		t.Fatalf("got %+v; want a sound file at revision 10 with 2 workspaces, 2 integrations, 6 events", r)
	}
}

func TestVerifyFindsDamage(t *testing.T) {
	tests := []struct {
		name   string
		damage func(tx *bbolt.Tx) error
		want   string
	}{
		{"revision ahead of the changelog", func(tx *bbolt.Tx) error {
			return tx.Bucket(bMeta).Put(kRevision, u64bytes(11))
		}, "newest event is 10"},
		{"revision behind the changelog", func(tx *bbolt.Tx) error {
			return tx.Bucket(bMeta).Put(kRevision, u64bytes(9))
		}, "beyond the global revision"},
		{"state without its event", func(tx *bbolt.Tx) error {
			return tx.Bucket(bWorkspaces).Bucket([]byte("wa")).Bucket(bChangelog).Delete(u64bytes(5))
		}, "not in the changelog"},
		{"state differs from its event", func(tx *bbolt.Tx) error {
			ints := tx.Bucket(bWorkspaces).Bucket([]byte("wb")).Bucket(bIntegrations)
			v := strings.Replace(string(ints.Get([]byte("i1"))), `"DISCONNECTED"`, `"CONNECTED"`, 1)
			return ints.Put([]byte("i1"), []byte(v))
		}, "differs from its event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := verifyFixture(t)
			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tt.damage); err != nil {
				t.Fatal(err)
			}
			db.Close()
			r, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), tt.want) {
				t.Errorf("got problems %q; want one saying %q", r.Problems, tt.want)
			}
		})
	}
}

func TestVerifyRefusesAnOpenFile(t *testing.T) {
	s := mustOpen(t)
	if _, err := Verify(s.Path()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("got %v; want an in-use error", err)
	}
}

func TestVerifyOpenStore(t *testing.T) {
	s := mustOpen(t)
	mustCommit(t, s, createChange("w", "i", "p"))
	r, err := s.Verify()
	if err != nil || !r.OK() || r.Revision != 1 {
		t.Fatalf("got %+v, %v; want a sound store at revision 1", r, err)
	}
	mustCommit(t, s, updateChange("w", "i", switchboard.EventConfigured, func(*switchboard.Integration) {}))
	if got := mustRevision(t, s); got != 2 {
		t.Fatalf("revision after Verify: got %d; want 2 (Verify must not write)", got)
	}
}

func TestStatusCounts(t *testing.T) {
	s := mustOpen(t)
	mustCommit(t, s, createChange("w", "a", "p1"))
	mustCommit(t, s, createChange("w", "b", "p2"))
	mustCommit(t, s, createChange("v", "c", "p1"))
	mustCommit(t, s, updateChange("w", "a", switchboard.EventConnected, func(in *switchboard.Integration) {
		in.Status, in.Generation = switchboard.StatusConnected, 1
	}))
	got, err := s.StatusCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got[switchboard.StatusConnected] != 1 || got[switchboard.StatusDisconnected] != 2 {
		t.Errorf("got %v; want 1 connected, 2 disconnected", got)
	}
	if r, err := s.Verify(); err != nil || !r.OK() {
		t.Errorf("verify: %v %v", r, err)
	}
}
