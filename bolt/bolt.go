// Package bolt implements switchboard.Store on an embedded bbolt file.
//
// # Layout
//
// All integers in keys and values are 8-byte big-endian uint64, so that
// bbolt's byte order is numeric order. Values are JSON of the domain types.
//
//	meta/
//	  revision                 global revision: the last committed one
//	  schema                   layout version (currently 1)
//	  key_checks/<key id>      a constant sealed with that key, one per key id
//	                           ever used; Open refuses a keyring that does not
//	                           open every check it could
//	workspaces/<workspace id>/
//	  info                     JSON Workspace (absent until CreateWorkspace)
//	  integrations/<id>        JSON Integration
//	  by_provider/<provider id>\x00<owner user id>   integration id
//	  changelog/<revision>     JSON Event
//	  changelog_count          number of events in changelog
//	  compacted_through        highest revision dropped by retention
//	  tokens/<integration id>\x00<generation>        sealed JSON TokenSet
//	  token_meta/<integration id>\x00<generation>    JSON tokenMeta: expiry,
//	                           issue time and refresh state, in clear, so the
//	                           refresher's schedule never opens a token
//	  users, api_token_ids, audit, idempotency, idempotency_expiry: see access.go
//	api_tokens/<sha256 of the secret>                JSON APIToken
//	auth_states/<sha256 of the state>                expiry (unix ns) + sealed JSON AuthState
//	auth_states/<sha256 of "auth_start\x00" + id>   expiry (unix ns) + sealed JSON AuthStart
//	teardown/<sequence>                              JSON TeardownJob
//
// Everything about an integration lives under its workspace, so a
// workspace's lists, events and credentials never scan another's. Only the
// lookups by random secret (API tokens, OAuth states) and the teardown queue
// are global.
//
// Sealed values use the associated data
//
//	tokens:      <workspace id>\x00<integration id>\x00<generation in decimal>
//	auth_states: auth_state\x00<state>\x00<expiry prefix>
//	             auth_start\x00<start link id>\x00<expiry prefix>
//
// so a ciphertext moved to another key does not open.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var _ switchboard.Store = (*Store)(nil)

// schemaVersion is the layout described in the package comment.
const schemaVersion = 1

var (
	bMeta       = []byte("meta")
	bKeyChecks  = []byte("key_checks")
	bWorkspaces = []byte("workspaces")
	bAPITokens  = []byte("api_tokens")
	bAuthStates = []byte("auth_states")
	bTeardown   = []byte("teardown")

	bIntegrations = []byte("integrations")
	bByProvider   = []byte("by_provider")
	bChangelog    = []byte("changelog")
	bTokens       = []byte("tokens")
	bTokenMeta    = []byte("token_meta")

	kRevision         = []byte("revision")
	kSchema           = []byte("schema")
	kInfo             = []byte("info")
	kChangelogCount   = []byte("changelog_count")
	kCompactedThrough = []byte("compacted_through")
)

// keyCheckPlaintext is sealed once per key id; opening it proves the keyring
// holds the same key the file was written with.
var keyCheckPlaintext = []byte("switchboard key check v1")

// Defaults for Options.
const (
	DefaultLockTimeout        = time.Second
	DefaultChangelogMaxEvents = 10000
	DefaultChangelogMaxAge    = 30 * 24 * time.Hour
)

// Options configure Open.
type Options struct {
	// Keyring seals credentials and OAuth states. Required.
	Keyring *seal.Keyring
	// LockTimeout bounds the wait for the file lock another process
	// holds. Zero or negative means DefaultLockTimeout.
	LockTimeout time.Duration
	// ChangelogMaxEvents bounds each workspace's changelog. Zero means
	// DefaultChangelogMaxEvents; negative means no bound.
	ChangelogMaxEvents int
	// ChangelogMaxAge drops events older than this at the next commit to
	// their workspace. Zero means DefaultChangelogMaxAge; negative means no
	// bound.
	ChangelogMaxAge time.Duration
	// Now is the clock. Nil means time.Now. Times are stored in UTC.
	Now func() time.Time
	// AuditMaxEntries bounds each workspace's audit log. Zero means
	// switchboard.AuditMaxEntries.
	AuditMaxEntries int
}

// Store is a switchboard.Store on a bbolt file. It is safe for concurrent
// use. Only one process may open a file at a time.
type Store struct {
	db        *bbolt.DB
	path      string
	keyring   *seal.Keyring
	now       func() time.Time
	maxEvents int           // <= 0: unbounded
	maxAge    time.Duration // <= 0: unbounded
	auditMax  int
	versions  versions
	decoded   decodedCache
	tokens    tokenCache
	// wsComplete holds the IDs of workspaces a commit has made durable,
	// whose sub-buckets therefore all exist (see commitWSBucket).
	wsComplete sync.Map
}

// Open opens (creating if needed) the data file at path and its parent
// directory (mode 0700). It fails fast when another process holds the file,
// and refuses a keyring that does not match the keys the file was written
// with.
func Open(path string, opts Options) (*Store, error) {
	if opts.Keyring == nil {
		return nil, errors.New("bolt: Options.Keyring is required")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	switch {
	case opts.ChangelogMaxEvents == 0:
		opts.ChangelogMaxEvents = DefaultChangelogMaxEvents
	case opts.ChangelogMaxEvents < 0:
		opts.ChangelogMaxEvents = 0
	}
	switch {
	case opts.ChangelogMaxAge == 0:
		opts.ChangelogMaxAge = DefaultChangelogMaxAge
	case opts.ChangelogMaxAge < 0:
		opts.ChangelogMaxAge = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: create data directory: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: opts.LockTimeout,
		// The map freelist allocates and frees pages in constant time
		// where the default array scans; every commit does both.
		FreelistType: bbolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: data file %s is in use by another switchboard process (no lock within %v); stop that process or choose another data directory", path, opts.LockTimeout)
	} else if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	s := &Store{
		db:        db,
		path:      path,
		keyring:   opts.Keyring,
		now:       func() time.Time { return opts.Now().UTC() },
		maxEvents: opts.ChangelogMaxEvents,
		maxAge:    opts.ChangelogMaxAge,
		auditMax:  opts.AuditMaxEntries,
	}
	if s.auditMax <= 0 {
		s.auditMax = switchboard.AuditMaxEntries
	}
	if err := db.Update(s.init); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// init creates the top-level buckets, checks the schema version and the
// keyring, and records a check for a new current key.
func (s *Store) init(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bMeta, bWorkspaces, bAPITokens, bAuthStates, bTeardown} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("bolt: init: %w", err)
		}
	}
	meta := tx.Bucket(bMeta)
	if v := meta.Get(kSchema); v == nil {
		if err := meta.Put(kSchema, u64bytes(schemaVersion)); err != nil {
			return fmt.Errorf("bolt: init: %w", err)
		}
	} else if got := u64(v); got != schemaVersion {
		return fmt.Errorf("bolt: data file %s has layout version %d; this build reads version %d", s.path, got, schemaVersion)
	}

	if err := initStatusCounts(tx); err != nil {
		return fmt.Errorf("bolt: init: %w", err)
	}

	checks, err := meta.CreateBucketIfNotExists(bKeyChecks)
	if err != nil {
		return fmt.Errorf("bolt: init: %w", err)
	}
	err = checks.ForEach(func(k, v []byte) error {
		id := string(k)
		if !s.keyring.Has(id) {
			return fmt.Errorf("bolt: data file %s was written with key id %s, which %s does not hold; add that key after the current one (%s=new-id:new-key,%s:old-key)", s.path, id, seal.EnvVar, seal.EnvVar, id)
		}
		envID, err := seal.KeyID(v)
		if err == nil && envID != id {
			err = fmt.Errorf("check sealed with key id %s", envID)
		}
		if err == nil {
			var pt []byte
			pt, err = s.keyring.Open(v, keyCheckAD(id))
			if err == nil && !bytes.Equal(pt, keyCheckPlaintext) {
				err = errors.New("unexpected check value")
			}
		}
		if err != nil {
			return fmt.Errorf("bolt: %s does not match the key this data file was written with (key id %s); start with that key (in dev mode: the %s it was created with)", seal.EnvVar, id, seal.KeyFileName)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := indexTokens(tx); err != nil {
		return fmt.Errorf("bolt: init: index API tokens: %w", err)
	}
	cur := s.keyring.CurrentID()
	if checks.Get([]byte(cur)) == nil {
		v, err := s.keyring.Seal(keyCheckPlaintext, keyCheckAD(cur))
		if err != nil {
			return fmt.Errorf("bolt: init: %w", err)
		}
		if err := checks.Put([]byte(cur), v); err != nil {
			return fmt.Errorf("bolt: init: %w", err)
		}
	}
	return nil
}

func keyCheckAD(id string) []byte { return []byte("key_check\x00" + id) }

// Close closes the data file, releasing its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the data file's path.
func (s *Store) Path() string { return s.path }

// Check runs bbolt's consistency check and returns the first problem it
// finds, or nil. It runs in a write transaction that it rolls back (bbolt's
// check is not safe on a read transaction while writers run), so commits
// wait until it finishes.
func (s *Store) Check() error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("bolt: check %s: %w", s.path, err)
	}
	defer tx.Rollback()
	var first error
	// Drain the channel: the checker reads pages until it closes it, so
	// the transaction must stay open until then.
	for err := range tx.Check() {
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("bolt: check %s: %w", s.path, first)
	}
	return nil
}

// WriteTo writes a consistent copy of the whole data file to w, from one
// read transaction; writers are not blocked meanwhile.
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("bolt: copy %s: %w", s.path, err)
	}
	return n, nil
}

// Revision returns the latest committed revision.
func (s *Store) Revision(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		rev = u64(tx.Bucket(bMeta).Get(kRevision))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: revision: %w", err)
	}
	return rev, nil
}

// u64bytes encodes n as 8 bytes big-endian.
func u64bytes(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

// u64 decodes an 8-byte big-endian value; a missing value is 0.
func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

// wsBucket returns a workspace's bucket, or nil if nothing was ever stored
// for it.
func wsBucket(tx *bbolt.Tx, workspaceID string) *bbolt.Bucket {
	if workspaceID == "" {
		return nil
	}
	return tx.Bucket(bWorkspaces).Bucket([]byte(workspaceID))
}

// createWSBucket returns a workspace's bucket with its sub-buckets,
// creating them as needed.
func createWSBucket(tx *bbolt.Tx, workspaceID string) (*bbolt.Bucket, error) {
	if workspaceID == "" {
		return nil, switchboard.Errorf(switchboard.EINVALID, "Workspace ID is required.")
	}
	ws, err := tx.Bucket(bWorkspaces).CreateBucketIfNotExists([]byte(workspaceID))
	if err != nil {
		return nil, err
	}
	for _, name := range append([][]byte{bIntegrations, bByProvider, bChangelog, bTokens, bTokenMeta}, accessBuckets...) {
		if _, err := ws.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// sub returns a workspace's sub-bucket, or nil when ws is nil.
func sub(ws *bbolt.Bucket, name []byte) *bbolt.Bucket {
	if ws == nil {
		return nil
	}
	return ws.Bucket(name)
}

// wrap adds context to internal errors. Domain errors (*switchboard.Error)
// and errors returned by a caller's Apply pass through unchanged so callers
// can match them.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var ae applyError
	if errors.As(err, &ae) {
		return ae.err
	}
	var de *switchboard.Error
	if errors.As(err, &de) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		// Nothing was committed; say so in words an operator and a client
		// can act on, and keep the cause for the log.
		return &storageFullError{err: fmt.Errorf("bolt: "+format+": %w", append(args, err)...)}
	}
	return fmt.Errorf("bolt: "+format+": %w", append(args, err)...)
}

// applyError carries an error returned by Change.Apply out of the
// transaction.
type applyError struct{ err error }

// storageFullError is a write that failed for lack of space. It reads as
// EUNAVAILABLE to clients and unwraps to the cause for logs.
type storageFullError struct{ err error }

func (e *storageFullError) Error() string { return e.err.Error() }
func (e *storageFullError) Unwrap() []error {
	return []error{e.err, switchboard.Errorf(switchboard.EUNAVAILABLE, "The gateway's storage is full, so nothing was changed. Try again once an operator has freed space.")}
}

func (e applyError) Error() string { return e.err.Error() }
func (e applyError) Unwrap() error { return e.err }
