package switchboard

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// DefaultStateTTL is how long a person has to finish an authorization.
const DefaultStateTTL = 10 * time.Minute

// Service is the integration lifecycle: connect, the OAuth callback,
// reconnect, configure, disconnect and the teardown that follows. It is the
// one place where status rules meet the store, the broker and the
// providers; resolvers and HTTP handlers call it and nothing else.
//
// Every method that changes an integration commits through the Store and
// then publishes the committed event, so subscribers see exactly what was
// committed, and nothing that was not.
type Service struct {
	Store     Store
	Broker    Broker
	OAuth     OAuth
	Catalogue Catalogue
	Logger    *slog.Logger
	Now       func() time.Time
	// StateTTL bounds an authorization (default 10 minutes).
	StateTTL time.Duration
	// ReturnToAllowed says whether /oauth/callback may send the browser to
	// a returnTo URL. Nil allows none.
	ReturnToAllowed func(string) bool
	// TokensRevoked, when set, is told about API tokens that were revoked
	// or deleted, so that connections opened with them can be closed
	// (main wires the HTTP handler's).
	TokensRevoked func(ids []string)
	// Observers learn of every committed event, after the broker (see
	// CommitObserver); main wires the refresher here. Set before the
	// Service is used.
	Observers []CommitObserver
	// TokenSource hands the sync API usable credentials (the refresher).
	// Without one the sync API's token calls fail with EINTERNAL.
	TokenSource TokenSource
	// StartURL returns the absolute URL of the gateway's start link with
	// the given ID (authorizationUrl): /oauth/start/<id> under the public
	// URL. Nil gives the path alone.
	StartURL func(id string) string
	// AuthRefused, when set, counts a start link or a callback refused
	// though its state was genuine (step "start" or "callback", reason one
	// of the Refused* constants).
	AuthRefused func(step, reason string)

	touchMu sync.Mutex
	touched map[string]time.Time // token ID → last recorded use
	keysMu  sync.Mutex
	keys    map[string]*keyLock // idempotency keys in flight

	// identities remembers what never changes about integrations seen
	// (identity.go).
	identities identities

	kick     chan struct{}
	kickOnce sync.Once
	bg       sync.WaitGroup
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// CurrentTime is the Service's clock (Now, in UTC), for code that acts on
// its behalf and must agree with it on what is due (the refresher).
func (s *Service) CurrentTime() time.Time { return s.now() }

// Log is the Service's logger (Logger, or slog.Default); never nil.
func (s *Service) Log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Service) stateTTL() time.Duration {
	if s.StateTTL > 0 {
		return s.StateTTL
	}
	return DefaultStateTTL
}

func (s *Service) kickChan() chan struct{} {
	s.kickOnce.Do(func() { s.kick = make(chan struct{}, 1) })
	return s.kick
}

// Commit commits c through the Store and publishes the committed event to
// the broker and the observers. Every commit goes through here, the
// Service's own and those of code acting on its behalf (the refresher):
// the broker and the observers rely on seeing every committed revision
// exactly once, so nothing may commit through the Store directly. A zero
// c.At is the Service's now. It returns (nil, nil) when c.Apply changed
// nothing, and the Store's error (ECONFLICT when c's expectations no
// longer hold) otherwise.
func (s *Service) Commit(ctx context.Context, c Change) (*Event, error) {
	if c.At.IsZero() {
		c.At = s.now()
	}
	ev, err := s.Store.Commit(ctx, c)
	if err != nil || ev == nil {
		return nil, err
	}
	s.publish(ev, c.Tokens)
	return ev, nil
}

// publish hands a committed event to the broker and then to the
// observers. Every committed event goes through here exactly once.
func (s *Service) publish(ev *Event, tokens *TokenSet) {
	s.Broker.Publish(ev)
	for _, o := range s.Observers {
		o.Committed(ev, tokens)
	}
}

// CommitObserver learns of every event the Service commits, with the
// credentials that commit wrote (nil when it wrote none). Committed is
// called exactly once per event, after the broker has it, on the goroutine
// that committed, so it must not block and must be safe for concurrent
// use. Commits of one integration that run concurrently may be observed
// out of order: the event's Revision orders them, and an observer that
// keeps state per integration must ignore an event older than one it
// already acted on.
type CommitObserver interface {
	Committed(ev *Event, tokens *TokenSet)
}

// RevokeOrphan revokes at the provider tokens that were issued but could
// not be committed, so that no grant outlives its use. Best effort, in the
// background with its own 30-second timeout, a failure only logged; it
// returns at once, and Wait waits for it.
func (s *Service) RevokeOrphan(providerID string, t *TokenSet) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.OAuth.Revoke(ctx, providerID, t); err != nil {
			s.Log().Warn("revoking unused grant failed", "provider", providerID, "err", err)
		}
	}()
}

// Wait waits for background revocations started by the service.
func (s *Service) Wait() { s.bg.Wait() }

// NewID returns a random identifier with a prefix, e.g. "int_5kq…".
func NewID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
