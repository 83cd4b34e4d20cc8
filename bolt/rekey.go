package bolt

// Re-sealing stored secrets under the current key, and accounting for which
// key seals what, so that an old key can be retired.
//
// The sealed values of a data file are
//
//	workspaces/<ws>/tokens/<integration>\x00<generation>   OAuth credentials, every generation still stored
//	workspaces/<ws>/idempotency/<token id>\x00<key>        expiry + a stored mutation result
//	auth_states/<sha256 of the state>                      expiry + a pending authorization
//	meta/key_checks/<key id>                               a constant, one per key id in use
//
// Tokens and idempotency records are re-sealed in place: same key, same
// associated data, same plaintext, only the key id and nonce change. A
// pending OAuth state cannot be: its associated data holds the state
// parameter, which the file keeps only as a hash. States live ten minutes,
// so a key that seals one is in use until the last of them expires.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/bont/switchboard/seal"
	"go.etcd.io/bbolt"
)

// Kinds of sealed values, as SecretRef.Kind names them.
const (
	SecretToken       = "token"
	SecretIdempotency = "idempotency"
	SecretOAuthState  = "oauth_state"
)

// DefaultRekeyBatch is how many secrets one rekey write transaction visits
// when RekeyOptions.BatchSize is zero: small enough that a live gateway's
// commits wait for one batch at most (a few milliseconds of AES-GCM), large
// enough that a store of a million secrets takes a few thousand commits.
const DefaultRekeyBatch = 500

// scanChunk bounds how many secrets one read transaction visits while
// counting or checking: a long read transaction would hold back a writer
// that needs to grow the file's memory map.
const scanChunk = 5000

// maxNamed bounds the secrets a report names one by one; the count is
// always exact.
const maxNamed = 1000

// KeyCount is what one key id seals.
type KeyCount struct {
	Tokens      int `json:"tokens"`
	Idempotency int `json:"idempotency"`
	OAuthStates int `json:"oauthStates"`
	// OAuthStatesExpireBy is when the last of OAuthStates expires (they
	// are never re-sealed; see the file comment).
	OAuthStatesExpireBy time.Time `json:"oauthStatesExpireBy,omitzero"`
}

// Total is the number of secrets the key seals.
func (c KeyCount) Total() int { return c.Tokens + c.Idempotency + c.OAuthStates }

func (c KeyCount) String() string {
	s := fmt.Sprintf("%d tokens, %d idempotency records, %d pending OAuth states", c.Tokens, c.Idempotency, c.OAuthStates)
	if c.OAuthStates > 0 {
		s += " (expiring by " + c.OAuthStatesExpireBy.UTC().Format(time.RFC3339) + ")"
	}
	return s
}

// KeyUsage counts the stored secrets by the id of the key that seals them.
// A value whose envelope names no key is counted under "".
type KeyUsage map[string]KeyCount

// IDs returns the key ids in use, sorted.
func (u KeyUsage) IDs() []string {
	ids := make([]string, 0, len(u))
	for id, c := range u {
		if c.Total() > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (u KeyUsage) add(it *sealedItem) {
	c := u[it.ref.KeyID]
	switch it.ref.Kind {
	case SecretToken:
		c.Tokens++
	case SecretIdempotency:
		c.Idempotency++
	case SecretOAuthState:
		c.OAuthStates++
		if it.ref.ExpiresAt.After(c.OAuthStatesExpireBy) {
			c.OAuthStatesExpireBy = it.ref.ExpiresAt
		}
	}
	u[it.ref.KeyID] = c
}

// SecretRef names one stored secret without revealing it.
type SecretRef struct {
	Kind          string `json:"kind"`
	WorkspaceID   string `json:"workspaceId,omitempty"`
	IntegrationID string `json:"integrationId,omitempty"`
	Generation    uint64 `json:"generation,omitempty"`
	// TokenID is the API token whose request an idempotency record keeps.
	TokenID   string    `json:"tokenId,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	KeyID     string    `json:"keyId"`
	// Reason says why the secret is named (in a report of problems).
	Reason string `json:"reason,omitempty"`
}

func (r SecretRef) String() string {
	var b strings.Builder
	switch r.Kind {
	case SecretToken:
		fmt.Fprintf(&b, "token of workspace %s, integration %s, generation %d", r.WorkspaceID, r.IntegrationID, r.Generation)
	case SecretIdempotency:
		fmt.Fprintf(&b, "idempotency record of workspace %s, API token %s", r.WorkspaceID, r.TokenID)
	case SecretOAuthState:
		fmt.Fprintf(&b, "pending OAuth state expiring %s", r.ExpiresAt.UTC().Format(time.RFC3339))
	default:
		b.WriteString(r.Kind)
	}
	fmt.Fprintf(&b, ", key id %q", r.KeyID)
	if r.Reason != "" {
		b.WriteString(": " + r.Reason)
	}
	return b.String()
}

// ---- scanning ----

const (
	collTokens = iota // per workspace
	collIdem          // per workspace
	collAuth          // global, after every workspace
)

var wsCollections = [][]byte{collTokens: bTokens, collIdem: bIdem}

// scanPos is where a scan stopped: it resumes just after key in collection
// coll of workspace ws. The zero value is the start.
type scanPos struct {
	ws   string
	coll int
	key  []byte
}

// sealedItem is one stored sealed value, valid during its transaction.
type sealedItem struct {
	ref    SecretRef
	bucket *bbolt.Bucket
	key    []byte // cloned
	prefix []byte // clear bytes stored in front of the envelope (an expiry)
	env    []byte
	// ad is the associated data the envelope was sealed with; nil when it
	// cannot be known (an OAuth state).
	ad []byte
}

// scan visits the sealed values of tx after at, in a fixed order (each
// workspace's tokens, then its idempotency records; then the OAuth
// states), until visit returns false. It returns the position of the last
// value visited and whether the scan reached the end. Values that cannot be
// parsed are passed with Reason set and no envelope.
func scan(tx *bbolt.Tx, at scanPos, now time.Time, visit func(*sealedItem) bool) (scanPos, bool) {
	resume := func(c *bbolt.Cursor, here bool) ([]byte, []byte) {
		if !here || at.key == nil {
			return c.First()
		}
		k, v := c.Seek(at.key)
		if bytes.Equal(k, at.key) {
			k, v = c.Next()
		}
		return k, v
	}
	if at.coll < collAuth {
		wss := tx.Bucket(bWorkspaces)
		wc := wss.Cursor()
		var wk []byte
		if at.ws == "" {
			wk, _ = wc.First()
		} else {
			wk, _ = wc.Seek([]byte(at.ws))
		}
		for ; wk != nil; wk, _ = wc.Next() {
			ws := wss.Bucket(wk)
			if ws == nil {
				continue
			}
			sameWS := string(wk) == at.ws
			first := collTokens
			if sameWS {
				first = at.coll
			}
			for coll := first; coll < collAuth; coll++ {
				b := ws.Bucket(wsCollections[coll])
				if b == nil {
					continue
				}
				c := b.Cursor()
				for k, v := resume(c, sameWS && coll == at.coll); k != nil; k, v = c.Next() {
					if v == nil {
						continue
					}
					it := wsItem(string(wk), coll, b, k, v)
					if !visit(it) {
						return scanPos{ws: string(wk), coll: coll, key: it.key}, false
					}
				}
			}
		}
	}
	b := tx.Bucket(bAuthStates)
	c := b.Cursor()
	for k, v := resume(c, at.coll == collAuth); k != nil; k, v = c.Next() {
		if v == nil {
			continue
		}
		it := &sealedItem{ref: SecretRef{Kind: SecretOAuthState}, bucket: b, key: bytes.Clone(k)}
		if len(v) < 8 {
			it.ref.Reason = "malformed value"
		} else {
			exp := time.Unix(0, int64(u64(v[:8])))
			if exp.Before(now) {
				continue // dead: swept, never opened
			}
			it.ref.ExpiresAt = exp.UTC()
			it.prefix, it.env = v[:8], v[8:]
		}
		if !visit(it) {
			return scanPos{coll: collAuth, key: it.key}, false
		}
	}
	return scanPos{}, true
}

func wsItem(ws string, coll int, b *bbolt.Bucket, k, v []byte) *sealedItem {
	it := &sealedItem{ref: SecretRef{WorkspaceID: ws}, bucket: b, key: bytes.Clone(k)}
	switch coll {
	case collTokens:
		it.ref.Kind = SecretToken
		if len(k) < 9 || k[len(k)-9] != 0 {
			it.ref.Reason = "malformed key"
			return it
		}
		it.ref.IntegrationID = string(k[:len(k)-9])
		it.ref.Generation = u64(k[len(k)-8:])
		it.env = v
		it.ad = tokenAD(ws, it.ref.IntegrationID, it.ref.Generation)
	case collIdem:
		it.ref.Kind = SecretIdempotency
		tokenID, _, ok := bytes.Cut(k, []byte{0})
		if !ok || len(v) < 8 {
			it.ref.Reason = "malformed record"
			return it
		}
		it.ref.TokenID = string(tokenID)
		it.ref.ExpiresAt = time.Unix(0, int64(u64(v[:8]))).UTC()
		it.prefix, it.env = v[:8], v[8:]
		it.ad = idemAD(ws, it.key)
	}
	return it
}

// keyID fills it.ref.KeyID from the envelope, or Reason when it has none.
func (it *sealedItem) keyID() bool {
	if it.env == nil {
		return false
	}
	id, err := seal.KeyID(it.env)
	if err != nil {
		it.ref.Reason = err.Error()
		return false
	}
	it.ref.KeyID = id
	return true
}

// scanAll visits every sealed value of db in read transactions of at most
// scanChunk values each, checking ctx between them. Values that change
// between chunks are seen as they are when their chunk runs.
func scanAll(ctx context.Context, db *bbolt.DB, now time.Time, visit func(*sealedItem)) error {
	var at scanPos
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := db.View(func(tx *bbolt.Tx) error {
			n := 0
			at, done = scan(tx, at, now, func(it *sealedItem) bool {
				visit(it)
				n++
				return n < scanChunk
			})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// KeyUsage counts the stored secrets by key id. It reads in bounded
// transactions and never decrypts.
func (s *Store) KeyUsage(ctx context.Context) (KeyUsage, error) {
	u := KeyUsage{}
	err := scanAll(ctx, s.db, s.now(), func(it *sealedItem) {
		it.keyID()
		u.add(it)
	})
	if err != nil {
		return nil, wrap(err, "key usage")
	}
	return u, nil
}

// ---- rekey ----

// RekeyOptions configure Rekey.
type RekeyOptions struct {
	// BatchSize bounds the secrets one write transaction visits, so a
	// live gateway's commits never wait for more than one batch. Zero or
	// negative means DefaultRekeyBatch.
	BatchSize int
	// Progress, if set, is called after each committed batch, from the
	// goroutine that called Rekey.
	Progress func(RekeyProgress)
}

// RekeyProgress is the running total after a committed batch.
type RekeyProgress struct {
	Batches  int `json:"batches"`
	Visited  int `json:"visited"`
	Resealed int `json:"resealed"`
}

// RekeyReport is what Rekey did and what each key seals before and after.
type RekeyReport struct {
	CurrentKey string   `json:"currentKey"`
	Before     KeyUsage `json:"before"`
	After      KeyUsage `json:"after"`
	RekeyProgress
	// Unopenable names (up to 1000 of) the secrets no key of the keyring
	// opens; they are left exactly as they were. UnopenableCount is exact.
	Unopenable      []SecretRef `json:"unopenable,omitempty"`
	UnopenableCount int         `json:"unopenableCount"`
	// Retired lists the key ids nothing uses any more, whose key checks
	// were removed: the file no longer asks for them at Open, so they can
	// be taken out of the keyring.
	Retired []string `json:"retired,omitempty"`
}

// Rekey re-seals every stored token and idempotency record that is not
// sealed with the keyring's current key, in write transactions of at most
// BatchSize secrets. A secret already under the current key is skipped,
// so Rekey is idempotent, and an interrupted run (ctx cancelled, process
// stopped) is finished by running it again. Each secret is read and
// re-sealed in the same write transaction, so a concurrent credential
// write, which commits before or after that transaction, is never lost or
// overwritten; re-sealing changes no plaintext, associated data or
// generation, so it never makes a non-current generation writable.
//
// When every batch has run it deletes OAuth states that have expired and
// retires (removes the key check of) every non-current key id that no
// longer seals anything. That needs no write lock over a full scan: this
// process is the file's only writer and seals only with its current key,
// so no new secret can name an old key id once the scan has found none.
//
// On error (including ctx's), the report says what was done so far.
func (s *Store) Rekey(ctx context.Context, opts RekeyOptions) (*RekeyReport, error) {
	batch := opts.BatchSize
	if batch <= 0 {
		batch = DefaultRekeyBatch
	}
	rep := &RekeyReport{CurrentKey: s.keyring.CurrentID()}
	var err error
	if rep.Before, err = s.KeyUsage(ctx); err != nil {
		return rep, err
	}
	var at scanPos
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return rep, wrap(err, "rekey")
		}
		if at, done, err = s.rekeyBatch(at, batch, rep); err != nil {
			return rep, wrap(err, "rekey")
		}
		rep.Batches++
		if opts.Progress != nil {
			opts.Progress(rep.RekeyProgress)
		}
	}
	if _, err := s.DeleteExpiredAuthStates(ctx, s.now()); err != nil {
		return rep, err
	}
	if rep.After, err = s.KeyUsage(ctx); err != nil {
		return rep, err
	}
	if rep.Retired, err = s.retireKeys(rep.After); err != nil {
		return rep, wrap(err, "rekey: retire keys")
	}
	return rep, nil
}

// rekeyBatch re-seals up to limit secrets after at in one write
// transaction.
func (s *Store) rekeyBatch(at scanPos, limit int, rep *RekeyReport) (next scanPos, done bool, err error) {
	cur := s.keyring.CurrentID()
	type put struct {
		b    *bbolt.Bucket
		k, v []byte
	}
	var (
		puts     []put
		visited  int
		problems []SecretRef
		sealErr  error
	)
	now := s.now()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		puts, visited, problems = nil, 0, nil
		next, done = scan(tx, at, now, func(it *sealedItem) bool {
			visited++
			if it.ref.Kind == SecretOAuthState {
				return visited < limit
			}
			if !it.keyID() || it.ad == nil {
				problems = append(problems, it.ref)
				return visited < limit
			}
			if it.ref.KeyID == cur {
				return visited < limit
			}
			pt, err := s.keyring.Open(it.env, it.ad)
			if err != nil {
				it.ref.Reason = openReason(err, it.ref.KeyID)
				problems = append(problems, it.ref)
				return visited < limit
			}
			sealed, err := s.keyring.Seal(pt, it.ad)
			clear(pt)
			if err != nil {
				sealErr = err
				return false
			}
			v := append(bytes.Clone(it.prefix), sealed...)
			puts = append(puts, put{it.bucket, it.key, v})
			return visited < limit
		})
		if sealErr != nil {
			return sealErr
		}
		// Written after the scan: a bucket's cursor must not see its
		// bucket change under it.
		for _, p := range puts {
			if err := p.b.Put(p.k, p.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return at, false, err
	}
	rep.Visited += visited
	rep.Resealed += len(puts)
	rep.UnopenableCount += len(problems)
	for _, p := range problems {
		if len(rep.Unopenable) < maxNamed {
			rep.Unopenable = append(rep.Unopenable, p)
		}
	}
	return next, done, nil
}

func openReason(err error, id string) string {
	switch {
	case errors.Is(err, seal.ErrUnknownKey):
		return fmt.Sprintf("no configured key has id %q", id)
	case errors.Is(err, seal.ErrDecrypt):
		return fmt.Sprintf("the key with id %q does not open it (a different key under the same id, or the value was altered)", id)
	default:
		return err.Error()
	}
}

// retireKeys removes the key check of every non-current key id that
// sealed nothing in u, and returns those ids.
func (s *Store) retireKeys(u KeyUsage) ([]string, error) {
	cur := s.keyring.CurrentID()
	var retired []string
	err := s.db.Update(func(tx *bbolt.Tx) error {
		retired = nil
		checks := tx.Bucket(bMeta).Bucket(bKeyChecks)
		var ids []string
		err := checks.ForEach(func(k, _ []byte) error {
			if id := string(k); id != cur && u[id].Total() == 0 {
				ids = append(ids, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := checks.Delete([]byte(id)); err != nil {
				return err
			}
		}
		retired = ids
		return nil
	})
	return retired, err
}
