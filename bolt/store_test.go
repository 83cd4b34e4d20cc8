package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

func TestNoPlaintextSecretsInFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s := mustOpenWith(t, path, Options{Keyring: mustKeyring(t, "k1")})

	const (
		access   = "ACCESS-TOKEN-d41d8cd98f00b204e980"
		refresh  = "REFRESH-TOKEN-9e107d9d372bb6826bd8"
		rotated  = "ROTATED-REFRESH-e4d909c290d0fb1ca068"
		verifier = "PKCE-VERIFIER-0cc175b9c0f1b6a831c399e269772661"
		state    = "STATE-PARAM-92eb5ffee6ae2fec3ad71c777531578f"
		account  = "Visible Account Name 7f3c"
	)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", account, &switchboard.TokenSet{
		AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		Extra: map[string]string{"instance_url": "https://x.example"},
	}))
	if err := s.PutTokens(ctx, "ws1", "int1", 1, 1, &switchboard.TokenSet{AccessToken: access, RefreshToken: rotated}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAuthState(ctx, &switchboard.AuthState{State: state, WorkspaceID: "ws1", CodeVerifier: verifier}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The file is readable at all: non-secret state is in clear.
	if !bytes.Contains(raw, []byte(account)) {
		t.Fatalf("the account name is not in the file; the check below would prove nothing")
	}
	for _, secret := range []string{access, refresh, rotated, verifier, state} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the data file contains %q in clear", secret)
		}
	}
}

func TestTokensAreBoundToTheirKey(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", "alice", &switchboard.TokenSet{AccessToken: "gen1"}))
	mustCommit(t, s, createChange("ws2", "int1", "hubspot"))

	// Copy generation 1's ciphertext under generation 2 and under another
	// workspace's key, as an attacker with write access to the file could.
	err := s.db.Update(func(tx *bbolt.Tx) error {
		ct := bytes.Clone(wsBucket(tx, "ws1").Bucket(bTokens).Get(tokenKey("int1", 1)))
		if ct == nil {
			return errors.New("generation 1 tokens missing")
		}
		if err := wsBucket(tx, "ws1").Bucket(bTokens).Put(tokenKey("int1", 2), ct); err != nil {
			return err
		}
		return wsBucket(tx, "ws2").Bucket(bTokens).Put(tokenKey("int1", 1), ct)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ws  string
		gen uint64
	}{{"ws1", 2}, {"ws2", 1}} {
		_, err := s.FindTokens(ctx, tc.ws, "int1", tc.gen)
		if !errors.Is(err, seal.ErrDecrypt) {
			t.Fatalf("FindTokens(%s, gen %d) on a moved ciphertext: got %v; want %v", tc.ws, tc.gen, err, seal.ErrDecrypt)
		}
	}
	tok, err := s.FindTokens(ctx, "ws1", "int1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.AccessToken, "gen1"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
}

func TestOpenKeyChecks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "switchboard.db")
	key1 := newKey(t, "k1")
	s, err := Open(path, Options{Keyring: mustKeyringFrom(t, key1)})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o700); got != want {
		t.Fatalf("got data directory mode %v; want %v", got, want)
	}
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", "alice", &switchboard.TokenSet{AccessToken: "old-key-data"}))
	s.Close()

	// Same id, different key.
	_, err = Open(path, Options{Keyring: mustKeyring(t, "k1")})
	if want := "SWITCHBOARD_SECRET_KEY does not match the key this data file was written with (key id k1)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v; want an error containing %q", err, want)
	}

	// A keyring without the file's key id.
	_, err = Open(path, Options{Keyring: mustKeyring(t, "k2")})
	if err == nil || !strings.Contains(err.Error(), "key id k1") {
		t.Fatalf("got %v; want an error naming key id k1", err)
	}

	// Rotation: the new key first, the old one kept.
	key2 := newKey(t, "k2")
	s = mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, key2, key1)})
	tok, err := s.FindTokens(ctx, "ws1", "int1", 1)
	if err != nil {
		t.Fatalf("old tokens after rotation: %v", err)
	}
	if got, want := tok.AccessToken, "old-key-data"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if err := s.PutTokens(ctx, "ws1", "int1", 1, tok.Serial, &switchboard.TokenSet{AccessToken: "new-key-data"}); err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		id, err := seal.KeyID(wsBucket(tx, "ws1").Bucket(bTokens).Get(tokenKey("int1", 1)))
		if err == nil && id != "k2" {
			t.Errorf("got key id %v; want %v", id, "k2")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// The file now holds checks for k1 and k2: the new key alone is refused.
	_, err = Open(path, Options{Keyring: mustKeyringFrom(t, key2)})
	if err == nil || !strings.Contains(err.Error(), "key id k1") {
		t.Fatalf("got %v; want an error naming key id k1", err)
	}
}

func newKey(t *testing.T, id string) seal.Key {
	t.Helper()
	secret, err := seal.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	return seal.Key{ID: id, Secret: secret}
}

func mustKeyringFrom(t *testing.T, keys ...seal.Key) *seal.Keyring {
	t.Helper()
	kr, err := seal.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	kr := mustKeyring(t, "k1")
	mustOpenWith(t, path, Options{Keyring: kr})

	start := time.Now()
	s2, err := Open(path, Options{Keyring: kr, LockTimeout: 200 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("got a second store on a file already open; want an error")
	}
	if want := "data file " + path + " is in use by another switchboard process"; !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v; want an error containing %q", err, want)
	}
	if elapsed > 5*time.Second {
		t.Fatalf("got failure after %v; want it within a few seconds", elapsed)
	}
}

func TestPutTokensOnlyForCurrentGeneration(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))

	// No generation yet.
	err := s.PutTokens(ctx, "ws1", "int1", 0, 0, &switchboard.TokenSet{AccessToken: "x"})
	wantCode(t, err, switchboard.ECONFLICT)

	mustCommit(t, s, connectChange("ws1", "int1", "alice", nil)) // generation 1
	if err := s.PutTokens(ctx, "ws1", "int1", 1, 0, &switchboard.TokenSet{AccessToken: "g1"}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, disconnectChange("ws1", "int1", 1))
	err = s.PutTokens(ctx, "ws1", "int1", 1, 1, &switchboard.TokenSet{AccessToken: "late refresh"})
	wantCode(t, err, switchboard.ECONFLICT)

	mustCommit(t, s, connectChange("ws1", "int1", "bob", nil)) // generation 2
	err = s.PutTokens(ctx, "ws1", "int1", 1, 1, &switchboard.TokenSet{AccessToken: "late refresh"})
	wantCode(t, err, switchboard.ECONFLICT)
	if err := s.PutTokens(ctx, "ws1", "int1", 2, 0, &switchboard.TokenSet{AccessToken: "g2"}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.FindTokens(ctx, "ws1", "int1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.AccessToken, "g1"; got != want {
		t.Fatalf("got %v; want %v (the stale write must not land)", got, want)
	}

	err = s.PutTokens(ctx, "ws1", "missing", 1, 0, &switchboard.TokenSet{})
	wantCode(t, err, switchboard.ENOTFOUND)

	// Change.Tokens on a change that leaves no current generation.
	c := updateChange("ws1", "int1", switchboard.EventDisconnected, func(in *switchboard.Integration) {
		in.Status = switchboard.StatusDisconnected
	})
	c.Tokens = &switchboard.TokenSet{AccessToken: "x"}
	_, err = s.Commit(ctx, c)
	wantCode(t, err, switchboard.ECONFLICT)
}

func TestTeardownTouchesOnlyItsGeneration(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)
	s := mustOpenWith(t, filepath.Join(t.TempDir(), "db"), Options{
		Keyring: mustKeyring(t, "k1"),
		Now:     func() time.Time { return now },
	})
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", "alice", &switchboard.TokenSet{AccessToken: "g1"}))
	disc := disconnectChange("ws1", "int1", 1)
	ev := mustCommit(t, s, disc)
	if got, want := ev.Integration.Status, switchboard.StatusDisconnected; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if disc.Teardown.ID == 0 {
		t.Fatalf("got job ID 0 after commit; want the assigned ID")
	}
	// A fast reconnect, before the teardown ran.
	mustCommit(t, s, connectChange("ws1", "int1", "bob", &switchboard.TokenSet{AccessToken: "g2"}))

	jobs, err := s.DueTeardowns(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 {
		t.Fatalf("got %d due jobs; want 1", len(jobs))
	}
	job := jobs[0]
	if job.ID != disc.Teardown.ID || job.Generation != 1 || job.WorkspaceID != "ws1" || job.IntegrationID != "int1" || !job.CreatedAt.Equal(now) {
		t.Fatalf("got job %+v; want ID %d, generation 1 of ws1/int1 created now", job, disc.Teardown.ID)
	}

	// A failed attempt postpones it.
	if err := s.RescheduleTeardown(ctx, job.ID, now.Add(time.Minute), "provider down"); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := s.DueTeardowns(ctx, now, 10); len(jobs) != 0 {
		t.Fatalf("got %d due jobs; want 0 before the next attempt", len(jobs))
	}
	jobs, _ = s.DueTeardowns(ctx, now.Add(time.Minute), 10)
	if len(jobs) != 1 || jobs[0].Attempts != 1 || jobs[0].LastError != "provider down" {
		t.Fatalf("got %+v; want one job with 1 attempt and its error", jobs)
	}

	if err := s.CompleteTeardown(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.FindTokens(ctx, "ws1", "int1", 1)
	wantCode(t, err, switchboard.ENOTFOUND)
	tok, err := s.FindTokens(ctx, "ws1", "int1", 2)
	if err != nil {
		t.Fatalf("generation 2's tokens after generation 1's teardown: %v", err)
	}
	if got, want := tok.AccessToken, "g2"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	wantCode(t, s.CompleteTeardown(ctx, job.ID), switchboard.ENOTFOUND)
	wantCode(t, s.RescheduleTeardown(ctx, job.ID, now, ""), switchboard.ENOTFOUND)
	if jobs, _ := s.DueTeardowns(ctx, now.Add(time.Hour), 10); len(jobs) != 0 {
		t.Fatalf("got %d jobs; want 0", len(jobs))
	}
}

func TestDueTeardownsOldestFirst(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)
	s := mustOpenWith(t, filepath.Join(t.TempDir(), "db"), Options{
		Keyring: mustKeyring(t, "k1"),
		Now:     func() time.Time { return now },
	})
	var ids []uint64
	for _, id := range []string{"a", "b", "c"} {
		mustCommit(t, s, createChange("ws1", id, "p-"+id))
		mustCommit(t, s, connectChange("ws1", id, "alice", nil))
		d := disconnectChange("ws1", id, 1)
		mustCommit(t, s, d)
		ids = append(ids, d.Teardown.ID)
	}
	jobs, err := s.DueTeardowns(ctx, now, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, j := range jobs {
		got = append(got, j.ID)
	}
	if want := ids[:2]; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
}

func TestAuthStates(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)
	s := mustOpenWith(t, filepath.Join(t.TempDir(), "db"), Options{
		Keyring: mustKeyring(t, "k1"),
		Now:     func() time.Time { return now },
	})
	in := &switchboard.AuthState{
		State: "st-1", WorkspaceID: "ws1", IntegrationID: "int1", ProviderID: "hubspot",
		UserID: "u1", Intent: switchboard.IntentReconnect, Generation: 3, CodeVerifier: "v1", ReturnTo: "/settings",
	}
	if err := s.PutAuthState(ctx, in); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.PutAuthState(ctx, in), switchboard.ECONFLICT)

	got, err := s.TakeAuthState(ctx, "st-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.CodeVerifier != "v1" || got.Generation != 3 || got.Intent != switchboard.IntentReconnect || got.ReturnTo != "/settings" {
		t.Fatalf("got %+v; want the stored state", got)
	}
	if want := now.Add(10 * time.Minute); !got.ExpiresAt.Equal(want) {
		t.Fatalf("got ExpiresAt %v; want %v", got.ExpiresAt, want)
	}
	_, err = s.TakeAuthState(ctx, "st-1", nil)
	wantCode(t, err, switchboard.ENOTFOUND)
	_, err = s.TakeAuthState(ctx, "never-issued", nil)
	wantCode(t, err, switchboard.ENOTFOUND)

	// Expired states are still returned once, so the caller can say so.
	if err := s.PutAuthState(ctx, &switchboard.AuthState{State: "old", CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got, err = s.TakeAuthState(ctx, "old", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Before(now) {
		t.Fatalf("got ExpiresAt %v; want before %v", got.ExpiresAt, now)
	}
	_, err = s.TakeAuthState(ctx, "old", nil)
	wantCode(t, err, switchboard.ENOTFOUND)

	// The sweep removes expired states only.
	for _, st := range []*switchboard.AuthState{
		{State: "e1", ExpiresAt: now.Add(-2 * time.Minute)},
		{State: "e2", ExpiresAt: now.Add(-time.Second)},
		{State: "live", ExpiresAt: now.Add(time.Minute)},
	} {
		if err := s.PutAuthState(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpiredAuthStates(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("got %d deleted; want 2", n)
	}
	for _, st := range []string{"e1", "e2"} {
		_, err := s.TakeAuthState(ctx, st, nil)
		wantCode(t, err, switchboard.ENOTFOUND)
	}
	if _, err := s.TakeAuthState(ctx, "live", nil); err != nil {
		t.Fatalf("got %v; want the live state kept", err)
	}
}

func TestWorkspacesAndAPITokens(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	w := &switchboard.Workspace{ID: "ws1", Name: "Demo", Plan: switchboard.PlanPure}
	if err := s.CreateWorkspace(ctx, w); err != nil {
		t.Fatal(err)
	}
	if w.CreatedAt.IsZero() {
		t.Fatal("got zero CreatedAt; want it set")
	}
	wantCode(t, s.CreateWorkspace(ctx, &switchboard.Workspace{ID: "ws1"}), switchboard.ECONFLICT)
	got, err := s.FindWorkspaceByID(ctx, "ws1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Demo" || got.Plan != switchboard.PlanPure || !got.CreatedAt.Equal(w.CreatedAt) {
		t.Fatalf("got %+v; want %+v", got, w)
	}
	_, err = s.FindWorkspaceByID(ctx, "ws2")
	wantCode(t, err, switchboard.ENOTFOUND)
	// Integrations alone do not make a workspace exist.
	mustCommit(t, s, createChange("ws3", "int1", "hubspot"))
	_, err = s.FindWorkspaceByID(ctx, "ws3")
	wantCode(t, err, switchboard.ENOTFOUND)
	if err := s.CreateWorkspace(ctx, &switchboard.Workspace{ID: "ws3"}); err != nil {
		t.Fatalf("got %v; want a workspace with integrations to be creatable", err)
	}

	hash := sha256.Sum256([]byte("secret-token"))
	tok := &switchboard.APIToken{ID: "t1", WorkspaceID: "ws1", UserID: "u1", Role: switchboard.RoleAdmin, Scopes: []string{"integrations:write"}}
	if err := s.CreateAPIToken(ctx, tok, hash[:]); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.CreateAPIToken(ctx, tok, hash[:]), switchboard.ECONFLICT)
	gotTok, err := s.FindAPITokenByHash(ctx, hash[:])
	if err != nil {
		t.Fatal(err)
	}
	if gotTok.ID != "t1" || gotTok.Role != switchboard.RoleAdmin || !slices.Equal(gotTok.Scopes, tok.Scopes) {
		t.Fatalf("got %+v; want %+v", gotTok, tok)
	}
	other := sha256.Sum256([]byte("other"))
	_, err = s.FindAPITokenByHash(ctx, other[:])
	wantCode(t, err, switchboard.ENOTFOUND)
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	kr := mustKeyring(t, "k1")
	s, err := Open(path, Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWorkspace(ctx, &switchboard.Workspace{ID: "ws1", Plan: switchboard.PlanPure}); err != nil {
		t.Fatal(err)
	}
	hash := sha256.Sum256([]byte("tok"))
	if err := s.CreateAPIToken(ctx, &switchboard.APIToken{ID: "t1", WorkspaceID: "ws1"}, hash[:]); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", "alice", &switchboard.TokenSet{AccessToken: "a", RefreshToken: "r"}))
	mustCommit(t, s, disconnectChange("ws1", "int1", 1))
	if err := s.PutAuthState(ctx, &switchboard.AuthState{State: "st", CodeVerifier: "v"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpenWith(t, path, Options{Keyring: kr})
	if got, want := mustRevision(t, s), uint64(3); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if _, err := s.FindWorkspaceByID(ctx, "ws1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindAPITokenByHash(ctx, hash[:]); err != nil {
		t.Fatal(err)
	}
	in, err := s.FindIntegrationByID(ctx, "ws1", "int1")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != switchboard.StatusDisconnected || in.Generation != 1 || in.Revision != 3 {
		t.Fatalf("got %+v; want the disconnected generation 1 at revision 3", in)
	}
	if tok, err := s.FindTokens(ctx, "ws1", "int1", 1); err != nil || tok.RefreshToken != "r" {
		t.Fatalf("got %v, %v; want the stored tokens", tok, err)
	}
	if jobs, err := s.DueTeardowns(ctx, time.Now().Add(time.Hour), 0); err != nil || len(jobs) != 1 {
		t.Fatalf("got %v, %v; want one teardown job", jobs, err)
	}
	if st, err := s.TakeAuthState(ctx, "st", nil); err != nil || st.CodeVerifier != "v" {
		t.Fatalf("got %v, %v; want the stored state", st, err)
	}
	if got, want := revisions(mustEvents(t, s, "ws1", 0, 0)), []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	ev := mustCommit(t, s, connectChange("ws1", "int1", "bob", nil))
	if got, want := ev.Revision, uint64(4); got != want {
		t.Fatalf("got revision %v after reopen; want %v", got, want)
	}
	// A connect after a disconnect starts a new generation.
	if got, want := ev.Integration.Generation, uint64(2); got != want {
		t.Fatalf("got generation %v; want %v", got, want)
	}
}

func TestCheckAndWriteTo(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", "alice", &switchboard.TokenSet{AccessToken: "a"}))
	if err := s.Check(); err != nil {
		t.Fatalf("got %v; want nil", err)
	}

	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(backup); fi.Size() != n || n == 0 {
		t.Fatalf("got %d bytes written and a %d-byte file; want equal and non-zero", n, fi.Size())
	}
	if got, want := s.Path(), filepath.Dir(s.Path()); got == want {
		t.Fatalf("got Path %v; want the file path", got)
	}

	// The copy opens with the same key and holds the same state.
	b := mustOpenWith(t, backup, Options{Keyring: s.keyring})
	if got, want := mustRevision(t, b), uint64(2); got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	if tok, err := b.FindTokens(ctx, "ws1", "int1", 1); err != nil || tok.AccessToken != "a" {
		t.Fatalf("got %v, %v; want the tokens in the copy", tok, err)
	}
}

// A reconnect keeps the generation, so a refresh that started before it
// names the credentials it started from: its writes and verdicts must not
// land on the reconnect's credentials.
func TestCredentialSerialRefusesReplacedCredentials(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws1", "int1", "hubspot"))
	mustCommit(t, s, connectChange("ws1", "int1", "alice", &switchboard.TokenSet{AccessToken: "a1", RefreshToken: "r1"}))
	before, err := s.FindTokens(ctx, "ws1", "int1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if before.Serial == 0 {
		t.Fatalf("got serial 0 for credentials written by a commit; want it numbered")
	}

	// The reconnect: same generation, new credentials.
	re := updateChange("ws1", "int1", switchboard.EventReconnected, func(in *switchboard.Integration) {})
	re.Tokens = &switchboard.TokenSet{AccessToken: "a2", RefreshToken: "r2"}
	mustCommit(t, s, re)
	if got, want := re.Tokens.Serial, before.Serial+1; got != want {
		t.Fatalf("reconnect serial: got %d; want %d", got, want)
	}

	// The refresh that started from the first credentials.
	wantCode(t, s.PutTokens(ctx, "ws1", "int1", 1, before.Serial, &switchboard.TokenSet{AccessToken: "late", RefreshToken: "r1b"}), switchboard.ECONFLICT)
	wantCode(t, s.PutRefreshState(ctx, "ws1", "int1", 1, before.Serial, switchboard.RefreshState{}), switchboard.ECONFLICT)
	verdict := updateChange("ws1", "int1", switchboard.EventReconnectRequired, func(in *switchboard.Integration) {
		in.Status = switchboard.StatusReconnectRequired
	})
	verdict.IfCredentials = &before.Serial
	_, err = s.Commit(ctx, verdict)
	wantCode(t, err, switchboard.ECONFLICT)

	now, err := s.FindTokens(ctx, "ws1", "int1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if now.AccessToken != "a2" || now.Serial != re.Tokens.Serial {
		t.Fatalf("got %q serial %d; want the reconnect's a2 serial %d", now.AccessToken, now.Serial, re.Tokens.Serial)
	}
	in, err := s.FindIntegrationByID(ctx, "ws1", "int1")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != switchboard.StatusConnected {
		t.Fatalf("status: got %s; want CONNECTED (the verdict was about replaced credentials)", in.Status)
	}

	// Naming the current credentials works.
	next := &switchboard.TokenSet{AccessToken: "a3", RefreshToken: "r3"}
	if err := s.PutTokens(ctx, "ws1", "int1", 1, now.Serial, next); err != nil {
		t.Fatal(err)
	}
	if next.Serial != now.Serial+1 {
		t.Fatalf("serial after PutTokens: got %d; want %d", next.Serial, now.Serial+1)
	}
	verdict.IfCredentials = &next.Serial
	mustCommit(t, s, verdict)
}
