package bolt

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// The token cache must never serve a token older than the last write that
// returned: revocation, use and a wipe show on the very next lookup.
func TestTokenCacheSeesEveryWrite(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	if err := s.CreateWorkspace(ctx, &switchboard.Workspace{ID: "ws1", Plan: switchboard.PlanPure}); err != nil {
		t.Fatal(err)
	}
	hash := sha256.Sum256([]byte("secret"))
	if err := s.CreateAPIToken(ctx, &switchboard.APIToken{ID: "t1", WorkspaceID: "ws1", Scopes: []string{"a"}}, hash[:]); err != nil {
		t.Fatal(err)
	}
	find := func() *switchboard.APIToken {
		t.Helper()
		tok, err := s.FindAPITokenByHash(ctx, hash[:])
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first := find()
	first.Scopes[0] = "changed by the caller"
	if got := find(); got.Scopes[0] != "a" || got.LastUsedAt != nil {
		t.Fatalf("got %+v; want the stored token, unaffected by a caller's change to an earlier copy", got)
	}

	used := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.TouchAPIToken(ctx, "ws1", "t1", used); err != nil {
		t.Fatal(err)
	}
	if got := find(); got.LastUsedAt == nil || !got.LastUsedAt.Equal(used) {
		t.Fatalf("got LastUsedAt %v; want %v", got.LastUsedAt, used)
	}
	if _, err := s.RevokeAPIToken(ctx, "ws1", "t1", used.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := find(); got.RevokedAt == nil {
		t.Fatalf("got %+v; want the revocation at once", got)
	}

	hash2 := sha256.Sum256([]byte("secret2"))
	if err := s.CreateAPIToken(ctx, &switchboard.APIToken{ID: "t2", WorkspaceID: "ws1"}, hash2[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindAPITokenByHash(ctx, hash2[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WipeWorkspace(ctx, "ws1", used); err != nil {
		t.Fatal(err)
	}
	_, err := s.FindAPITokenByHash(ctx, hash2[:])
	wantCode(t, err, switchboard.ENOTFOUND)
}
