package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// tokKey names one stored credential.
type tokKey struct {
	ws, id string
	gen    uint64
}

// seedSecrets writes, with s's current key, nWS workspaces of nInt
// integrations each: every integration connected twice (generation 1 kept
// for its teardown, generation 2 current), plus one idempotency record per
// workspace. It returns the access token stored for each generation.
func seedSecrets(t *testing.T, s *Store, nWS, nInt int) map[tokKey]string {
	t.Helper()
	ctx := context.Background()
	want := map[tokKey]string{}
	for w := range nWS {
		ws := fmt.Sprintf("ws%d", w)
		for i := range nInt {
			id := fmt.Sprintf("int%03d", i)
			mustCommit(t, s, createChange(ws, id, fmt.Sprintf("p%d", i)))
			for gen := uint64(1); gen <= 2; gen++ {
				if gen == 2 {
					mustCommit(t, s, disconnectChange(ws, id, 1))
				}
				v := fmt.Sprintf("access-%s-%s-%d", ws, id, gen)
				mustCommit(t, s, connectChange(ws, id, "acct", &switchboard.TokenSet{AccessToken: v}))
				want[tokKey{ws, id, gen}] = v
			}
		}
		_, err := s.PutIdempotency(ctx, &switchboard.IdempotencyRecord{WorkspaceID: ws, TokenID: "tok1", Key: "k", Operation: "op",
			Result: []byte(`{"secret":"` + ws + `"}`), CreatedAt: s.now(), ExpiresAt: s.now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	return want
}

func keyIDsOfTokens(t *testing.T, s *Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bWorkspaces).ForEachBucket(func(ws []byte) error {
			for _, name := range [][]byte{bTokens, bIdem} {
				err := wsBucket(tx, string(ws)).Bucket(name).ForEach(func(k, v []byte) error {
					if string(name) == string(bIdem) {
						v = v[8:]
					}
					id, err := seal.KeyID(v)
					out[id]++
					return err
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustFindTokens(t *testing.T, s *Store, want map[tokKey]string) {
	t.Helper()
	for k, v := range want {
		tok, err := s.FindTokens(context.Background(), k.ws, k.id, k.gen)
		if err != nil {
			t.Fatalf("FindTokens(%v): %v", k, err)
		}
		if tok.AccessToken != v {
			t.Fatalf("FindTokens(%v) = %q; want %q", k, tok.AccessToken, v)
		}
	}
}

func TestRekeyRetiresTheOldKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "switchboard.db")
	a, b := newKey(t, "ka"), newKey(t, "kb")
	s := mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, a)})
	want := seedSecrets(t, s, 3, 20) // 120 tokens, 3 idempotency records
	if err := s.PutAuthState(ctx, &switchboard.AuthState{State: "pending", WorkspaceID: "ws0"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, b, a)})
	var progress []RekeyProgress
	rep, err := s.Rekey(ctx, RekeyOptions{BatchSize: 25, Progress: func(p RekeyProgress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.Before["ka"], (KeyCount{Tokens: 120, Idempotency: 3, OAuthStates: 1}); got.Total() != want.Total() || got.Tokens != 120 || got.Idempotency != 3 {
		t.Fatalf("before: got %+v; want %+v", rep.Before, want)
	}
	if rep.Resealed != 123 || rep.UnopenableCount != 0 {
		t.Fatalf("got %d re-sealed, %d unopenable; want 123, 0", rep.Resealed, rep.UnopenableCount)
	}
	// 124 values (with the OAuth state) in batches of 25.
	if len(progress) != 5 || progress[4].Visited != 124 {
		t.Fatalf("got progress %+v; want 5 batches visiting 124 values", progress)
	}
	if got := rep.After["kb"]; got.Tokens != 120 || got.Idempotency != 3 {
		t.Fatalf("after: got %+v under kb; want 120 tokens and 3 idempotency records", rep.After)
	}
	// The pending OAuth state cannot be re-sealed: ka stays in use.
	if got := rep.After["ka"]; got.Total() != 1 || got.OAuthStates != 1 || len(rep.Retired) != 0 {
		t.Fatalf("after: got ka %+v, retired %v; want one OAuth state and nothing retired", got, rep.Retired)
	}
	if got := keyIDsOfTokens(t, s); got["kb"] != 123 || len(got) != 1 {
		t.Fatalf("key ids in the file: got %v; want kb only", got)
	}
	mustFindTokens(t, s, want)
	// Generation 1 is still not writable; its credentials still open for
	// its teardown.
	wantCode(t, s.PutTokens(ctx, "ws0", "int000", 1, 0, &switchboard.TokenSet{AccessToken: "late"}), switchboard.ECONFLICT)

	if _, err := s.TakeAuthState(ctx, "pending", nil); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Rekey(ctx, RekeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resealed != 0 || !slices.Equal(rep.Retired, []string{"ka"}) || rep.After.IDs()[0] != "kb" || len(rep.After.IDs()) != 1 {
		t.Fatalf("second run: got %+v; want nothing re-sealed and ka retired", rep)
	}
	s.Close()

	// The new key alone now opens the file and every secret.
	s = mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, b)})
	mustFindTokens(t, s, want)
	rec, err := s.FindIdempotency(ctx, "ws2", "tok1", "k")
	if err != nil || string(rec.Result) != `{"secret":"ws2"}` {
		t.Fatalf("idempotency record: got %v, %v", rec, err)
	}
}

func TestRekeyResumesAfterAnInterruption(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "switchboard.db")
	a, b := newKey(t, "ka"), newKey(t, "kb")
	s := mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, a)})
	want := seedSecrets(t, s, 2, 25) // 100 tokens, 2 idempotency records
	s.Close()
	s = mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, b, a)})

	cctx, cancel := context.WithCancel(ctx)
	rep, err := s.Rekey(cctx, RekeyOptions{BatchSize: 30, Progress: func(RekeyProgress) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want the interruption reported", err)
	}
	if rep.Batches != 1 || rep.Resealed != 30 {
		t.Fatalf("interrupted run: got %+v; want one batch of 30", rep.RekeyProgress)
	}
	if got := keyIDsOfTokens(t, s); got["kb"] != 30 || got["ka"] != 72 {
		t.Fatalf("after the interruption: got %v; want 30 under kb, 72 under ka", got)
	}
	mustFindTokens(t, s, want)

	rep, err = s.Rekey(ctx, RekeyOptions{BatchSize: 30})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resealed != 72 || rep.Before["kb"].Total() != 30 || rep.Before["ka"].Total() != 72 {
		t.Fatalf("resumed run: got %d re-sealed, before %v; want 72 and the split", rep.Resealed, rep.Before)
	}
	if got := keyIDsOfTokens(t, s); got["kb"] != 102 || len(got) != 1 || !slices.Equal(rep.Retired, []string{"ka"}) {
		t.Fatalf("after resuming: got %v, retired %v; want all 102 under kb and ka retired", got, rep.Retired)
	}
	mustFindTokens(t, s, want)
}

// Credential writes racing the rekey — refreshes of the current generation
// and reconnects that start a new one — are never lost or replaced by a
// re-sealed older value: each writer, before every write, reads back the
// value it wrote last, so a stale re-seal is caught even if a later write
// would have hidden it. Old generations stay as they were.
func TestRekeyBesideConcurrentCredentialWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "switchboard.db")
	a, b := newKey(t, "ka"), newKey(t, "kb")
	s := mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, a)})
	const nInt, writers = 30, 3
	want := seedSecrets(t, s, 2, nInt)
	s.Close()
	s = mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, b, a)})

	var (
		wg        sync.WaitGroup
		rekeyDone = make(chan struct{})
		rep       *RekeyReport
		rekeyErr  error
		written   [writers]map[tokKey]string
		writes    [writers]int
		writeErr  [writers]error
	)
	wg.Add(1 + writers)
	go func() {
		defer wg.Done()
		defer close(rekeyDone)
		rep, rekeyErr = s.Rekey(ctx, RekeyOptions{BatchSize: 5})
	}()
	for w := range writers {
		// Writer w owns integrations i with i%writers == w, in both
		// workspaces.
		last := map[tokKey]string{}
		written[w] = last
		gens := map[string]uint64{}
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				for i := w; i < nInt; i += writers {
					for _, ws := range []string{"ws0", "ws1"} {
						id := fmt.Sprintf("int%03d", i)
						gen := gens[ws+id]
						if gen == 0 {
							gen = 2
						}
						cur := tokKey{ws, id, gen}
						if v, ok := last[cur]; ok {
							tok, err := s.FindTokens(ctx, ws, id, gen)
							if err != nil || tok.AccessToken != v {
								writeErr[w] = fmt.Errorf("round %d, %v: read back %v, %v; want %q", round, cur, tok, err, v)
								return
							}
						}
						var err error
						if round%4 == 3 && gen < 5 {
							// A reconnect: a new generation with its own tokens.
							gen++
							v := fmt.Sprintf("new-%s-%s-%d", ws, id, gen)
							_, err = s.Commit(ctx, connectChange(ws, id, "acct", &switchboard.TokenSet{AccessToken: v}))
							last[tokKey{ws, id, gen}] = v
							gens[ws+id] = gen
						} else {
							v := fmt.Sprintf("refresh-%d-%s-%s-%d", round, ws, id, gen)
							var serial uint64
							if tok, ferr := s.FindTokens(ctx, ws, id, gen); ferr == nil {
								serial = tok.Serial
							}
							err = s.PutTokens(ctx, ws, id, gen, serial, &switchboard.TokenSet{AccessToken: v})
							last[cur] = v
						}
						if err != nil {
							writeErr[w] = fmt.Errorf("round %d %s/%s: %w", round, ws, id, err)
							return
						}
						writes[w]++
					}
				}
				select {
				case <-rekeyDone:
					if round >= 1 {
						return
					}
				default:
				}
			}
		}()
	}
	wg.Wait()
	if rekeyErr != nil {
		t.Fatalf("rekey: %v", rekeyErr)
	}
	for w := range writers {
		if writeErr[w] != nil {
			t.Fatalf("writer %d: %v", w, writeErr[w])
		}
		for k, v := range written[w] {
			want[k] = v
		}
	}
	if rep.UnopenableCount != 0 {
		t.Fatalf("got unopenable %v", rep.Unopenable)
	}
	mustFindTokens(t, s, want)
	if got := keyIDsOfTokens(t, s); got["ka"] != 0 {
		t.Fatalf("after the rekey: got %v; want nothing under ka", got)
	}
	t.Logf("%d credential writes during the rekey (%d batches)", writes[0]+writes[1]+writes[2], rep.Batches)
}

func TestCheckSecretsNamesWhatTheKeysDoNotOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "switchboard.db")
	a, b := newKey(t, "ka"), newKey(t, "kb")
	s := mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, a)})
	want := seedSecrets(t, s, 1, 3) // 6 tokens, 1 idempotency record
	s.Close()

	rep, err := CheckSecretsFile(ctx, path, mustKeyringFrom(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.UnopenableCount != 7 || rep.Usage["ka"].Total() != 7 {
		t.Fatalf("with kb only: got %+v; want the 7 secrets under ka named", rep)
	}
	var named []string
	for _, r := range rep.Unopenable {
		named = append(named, r.String())
		for _, v := range want {
			if strings.Contains(r.String(), v) {
				t.Fatalf("the report shows a secret: %s", r)
			}
		}
	}
	if !slices.Contains(named, `token of workspace ws0, integration int001, generation 2, key id "ka": no configured key opens key id "ka"`) ||
		!slices.Contains(named, `idempotency record of workspace ws0, API token tok1, key id "ka": no configured key opens key id "ka"`) {
		t.Fatalf("got %q; want each secret named", named)
	}

	// Another key under the same id opens nothing either.
	rep, err = CheckSecretsFile(ctx, path, mustKeyringFrom(t, b, newKey(t, "ka")))
	if err != nil || rep.UnopenableCount != 7 {
		t.Fatalf("with a wrong ka: got %+v, %v; want 7 unopenable", rep, err)
	}
	rep, err = CheckSecretsFile(ctx, path, mustKeyringFrom(t, b, a))
	if err != nil || !rep.OK() {
		t.Fatalf("with kb and ka: got %+v, %v; want every secret opened", rep, err)
	}

	// Through the open store, asking about kb alone.
	s = mustOpenWith(t, path, Options{Keyring: mustKeyringFrom(t, b, a)})
	live, err := s.CheckSecrets(ctx, []string{"kb"})
	if err != nil || live.UnopenableCount != 7 || live.CurrentKey != "kb" {
		t.Fatalf("live, kb only: got %+v, %v; want 7 unopenable", live, err)
	}
	if !KeyCheckOpens(mustKeyringFrom(t, a), "ka", live.KeyChecks["ka"]) || KeyCheckOpens(mustKeyringFrom(t, newKey(t, "ka")), "ka", live.KeyChecks["ka"]) {
		t.Fatal("key checks do not tell the right key from a wrong one")
	}
	if _, err := s.Rekey(ctx, RekeyOptions{}); err != nil {
		t.Fatal(err)
	}
	if live, err = s.CheckSecrets(ctx, []string{"kb"}); err != nil || !live.OK() {
		t.Fatalf("after rekey, kb only: got %+v, %v; want every secret opened", live, err)
	}
	s.Close()
	if rep, err = CheckSecretsFile(ctx, path, mustKeyringFrom(t, b)); err != nil || !rep.OK() || rep.Usage["kb"].Total() != 7 {
		t.Fatalf("after rekey, kb only: got %+v, %v; want 7 secrets under kb, all opened", rep, err)
	}
}
