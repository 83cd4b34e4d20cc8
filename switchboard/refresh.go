package switchboard

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Refresher defaults.
const (
	DefaultRefreshMargin   = 2 * time.Minute
	DefaultRefreshInterval = time.Hour
	DefaultFailureWindow   = 15 * time.Minute
	DefaultRefreshTimeout  = 30 * time.Second
	DefaultMinBackoff      = 5 * time.Second
	DefaultMaxBackoff      = 5 * time.Minute
	DefaultRefreshWorkers  = 16
)

// Refresher keeps every connection's access token fresh and its badge
// true. It refreshes each connection before its access token expires (the
// provider's margin), at least every Interval (so a revocation shows within
// one interval, and tokens without expires_in are still refreshed), and on
// demand (Token, Refresh). It classifies what the provider answers:
//
//   - invalid_grant and other refusals of the grant, or an expired token
//     without a refresh token: RECONNECT_REQUIRED at once (TOKEN_REVOKED,
//     TOKEN_EXPIRED, or REFRESH_INTERRUPTED when the refusal follows an
//     attempt whose answer was lost);
//   - invalid_client / unauthorized_client: ERROR (REFRESH_FAILED), since
//     reconnecting cannot fix the deployment's client credentials;
//   - network errors, timeouts, 429 and 5xx: retried with jittered
//     exponential backoff (at least the provider's Retry-After); the badge
//     stays CONNECTED until the failures have lasted FailureWindow, then
//     ERROR (PROVIDER_UNAVAILABLE); the first success commits RECOVERED.
//
// Every transition is one commit through the Service, so subscribers see it.
//
// Per connection at most one refresh is in flight; callers that arrive
// meanwhile wait for it and share its result. A rotated refresh token is
// stored (PutTokens, current generation only) before the new access token
// is handed to anyone. Just before a request goes to the token endpoint,
// RefreshState.RefreshStartedAt is written; if the process stops before the
// answer is stored, the next start refreshes at once and, if the provider
// then refuses the old refresh token as reused, says so (REFRESH_INTERRUPTED)
// instead of claiming the admin revoked access.
//
// The schedule is a min-heap of small entries in memory, rebuilt at start
// from Store.TokenSchedule without opening any token.
type Refresher struct {
	Service *Service
	// Margin returns how long before expiry a provider's tokens are
	// refreshed. Nil or a non-positive answer means DefaultRefreshMargin.
	Margin func(providerID string) time.Duration
	// Interval is the longest time between two refreshes of a connection.
	Interval time.Duration
	// FailureWindow is how long transient failures may last before the
	// badge turns ERROR.
	FailureWindow time.Duration
	// Timeout bounds one refresh (store reads, provider call, writes).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between transient failures.
	MinBackoff, MaxBackoff time.Duration
	// Workers bounds concurrent scheduled refreshes. On-demand refreshes
	// are not bounded by it.
	Workers int
	// Now defaults to the Service's clock.
	Now func() time.Time
	// Observe, when set, is told the outcome of every call to a token
	// endpoint: "ok", "revoked", "client_rejected" or "transient".
	Observe func(providerID, class string)

	mu    sync.Mutex
	queue entryHeap
	byKey map[connKey]*entry
	// providers interns provider ids, so entries share their strings.
	providers map[string]string
	wake      chan struct{}
	flights   singleflight.Group
	running   sync.WaitGroup
	sem       chan struct{}
	initOnce  sync.Once
}

type connKey struct{ ws, id string }

// entry is one scheduled connection. Kept small: 100,000 of them live in
// memory.
type entry struct {
	key          connKey
	provider     string
	gen          uint64
	due          time.Time
	issuedAt     time.Time
	failingSince *time.Time
	failures     int32
	index        int32 // in queue; -1 when not queued
	// uncertain: an attempt's answer was lost (stopped process, timeout,
	// network error after sending), so the provider may have rotated.
	uncertain bool
}

// NewRefresher returns a Refresher for s and registers it, so that every
// credential write and status change committed by s updates its schedule.
func NewRefresher(s *Service) *Refresher {
	r := &Refresher{Service: s}
	r.init()
	s.refresher = r
	return r
}

func (r *Refresher) init() {
	r.initOnce.Do(func() {
		r.byKey = make(map[connKey]*entry)
		r.providers = make(map[string]string)
		r.wake = make(chan struct{}, 1)
		n := r.Workers
		if n <= 0 {
			n = DefaultRefreshWorkers
		}
		r.sem = make(chan struct{}, n)
	})
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return r.Service.now()
}

func (r *Refresher) margin(providerID string) time.Duration {
	if r.Margin != nil {
		if m := r.Margin(providerID); m > 0 {
			return m
		}
	}
	return DefaultRefreshMargin
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (r *Refresher) interval() time.Duration { return orDefault(r.Interval, DefaultRefreshInterval) }
func (r *Refresher) window() time.Duration   { return orDefault(r.FailureWindow, DefaultFailureWindow) }
func (r *Refresher) timeout() time.Duration  { return orDefault(r.Timeout, DefaultRefreshTimeout) }

// backoff returns the wait after the n-th consecutive transient failure:
// exponential from MinBackoff, capped at MaxBackoff, with jitter in
// [d/2, d) so that connections failing together do not retry together.
func (r *Refresher) backoff(n int32) time.Duration {
	lo, hi := orDefault(r.MinBackoff, DefaultMinBackoff), orDefault(r.MaxBackoff, DefaultMaxBackoff)
	d := lo
	for i := int32(1); i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// dueFor is when credentials issued at issued, expiring at expiry, should
// next be refreshed; false means never (no refresh token and no expiry).
// Without a refresh token the due time is the expiry, when the badge turns
// RECONNECT_REQUIRED (TOKEN_EXPIRED).
func (r *Refresher) dueFor(providerID string, expiry, issued time.Time, hasRefresh bool) (time.Time, bool) {
	if !hasRefresh {
		return expiry, !expiry.IsZero()
	}
	due := issued.Add(r.interval())
	if !expiry.IsZero() {
		if e := expiry.Add(-r.margin(providerID)); e.Before(due) {
			due = e
		}
	}
	return due, true
}

// ---- the schedule ----

// Load rebuilds the schedule from the store. Run calls it; it is exported
// for tests and benchmarks that drive the refresher step by step.
func (r *Refresher) Load(ctx context.Context) (int, error) {
	r.init()
	now := r.now()
	n := 0
	err := r.Service.Store.TokenSchedule(ctx, func(m *TokenMeta) error {
		if m.Status == StatusReconnectRequired {
			return nil
		}
		e := &entry{key: connKey{m.WorkspaceID, m.IntegrationID}, gen: m.Generation, issuedAt: m.IssuedAt, index: -1}
		due, ok := now, true
		switch {
		case !m.Known:
			// Credentials without metadata: read them once.
		case m.RefreshStartedAt != nil:
			e.uncertain = true
		case m.FailingSince != nil, m.Status == StatusError && isRefreshReason(m.StatusReason):
			// Failing before the restart: try again now.
		default:
			due, ok = r.dueFor(m.ProviderID, m.Expiry, m.IssuedAt, m.HasRefreshToken)
		}
		e.failingSince = m.FailingSince
		if !ok {
			return nil
		}
		e.due = due
		r.mu.Lock()
		e.provider = r.intern(m.ProviderID)
		r.putLocked(e)
		r.mu.Unlock()
		n++
		return nil
	})
	r.poke()
	return n, err
}

func isRefreshReason(reason string) bool {
	return reason == ReasonProviderUnavailable || reason == ReasonRefreshFailed
}

func (r *Refresher) intern(s string) string {
	if v, ok := r.providers[s]; ok {
		return v
	}
	r.providers[s] = s
	return s
}

// putLocked adds or replaces the entry for e.key.
func (r *Refresher) putLocked(e *entry) {
	if old := r.byKey[e.key]; old != nil && old.index >= 0 {
		heap.Remove(&r.queue, int(old.index))
	}
	r.byKey[e.key] = e
	heap.Push(&r.queue, e)
}

func (r *Refresher) removeLocked(k connKey) {
	if old := r.byKey[k]; old != nil {
		if old.index >= 0 {
			heap.Remove(&r.queue, int(old.index))
		}
		delete(r.byKey, k)
	}
}

// rescheduleLocked moves e to due, queueing it if needed, unless e was
// replaced or removed meanwhile.
func (r *Refresher) rescheduleLocked(e *entry, due time.Time) {
	if r.byKey[e.key] != e {
		return
	}
	e.due = due
	if e.index >= 0 {
		heap.Fix(&r.queue, int(e.index))
	} else {
		heap.Push(&r.queue, e)
	}
}

// Recheck makes every scheduled connection of the given providers due at
// once, for a provider that says its grants changed (a deauthorization
// webhook, or the dev sandbox's console). It returns how many.
func (r *Refresher) Recheck(providerIDs ...string) int {
	r.init()
	now := r.now()
	n := 0
	r.mu.Lock()
	for _, e := range r.byKey {
		for _, id := range providerIDs {
			if e.provider == id {
				r.rescheduleLocked(e, now)
				n++
				break
			}
		}
	}
	r.mu.Unlock()
	if n > 0 {
		r.poke()
	}
	return n
}

func (r *Refresher) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// observe updates the schedule after a commit: written credentials start
// a fresh schedule; a connection without a current generation, or waiting
// for a reconnect, leaves it.
func (r *Refresher) observe(ev *Event, tokens *TokenSet) {
	in := ev.Integration
	k := connKey{in.WorkspaceID, in.ID}
	gen, ok := in.CurrentGeneration()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok || in.Status == StatusReconnectRequired {
		r.removeLocked(k)
		return
	}
	if tokens == nil {
		if e := r.byKey[k]; e != nil && e.gen != gen {
			r.removeLocked(k)
		}
		return
	}
	due, ok := r.dueFor(in.ProviderID, tokens.Expiry, ev.At, tokens.RefreshToken != "")
	if !ok {
		r.removeLocked(k)
		return
	}
	r.putLocked(&entry{key: k, provider: r.intern(in.ProviderID), gen: gen, due: due, issuedAt: ev.At, index: -1})
	r.poke()
}

// track returns the entry for a connection, creating one (due now) for a
// connection the schedule does not hold yet.
func (r *Refresher) track(in *Integration, gen uint64) *entry {
	k := connKey{in.WorkspaceID, in.ID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.byKey[k]; e != nil && e.gen == gen {
		return e
	}
	e := &entry{key: k, provider: r.intern(in.ProviderID), gen: gen, due: r.now(), index: -1}
	r.putLocked(e)
	return e
}

func (r *Refresher) untrack(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey[e.key] == e {
		r.removeLocked(e.key)
	}
}

// Len returns how many connections are scheduled.
func (r *Refresher) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byKey)
}

// takeDue pops up to limit entries due at now.
func (r *Refresher) takeDue(now time.Time, limit int) []*entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*entry
	for len(r.queue) > 0 && !r.queue[0].due.After(now) && len(out) < limit {
		out = append(out, heap.Pop(&r.queue).(*entry))
	}
	return out
}

func (r *Refresher) next() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return time.Time{}, false
	}
	return r.queue[0].due, true
}

// ---- running ----

// Run loads the schedule and refreshes connections as they come due until
// ctx ends; then it waits for the refreshes in flight. A refresh that hangs
// holds one worker until Timeout and delays no other connection's.
func (r *Refresher) Run(ctx context.Context) error {
	if _, err := r.Load(ctx); err != nil {
		return fmt.Errorf("refresher: load schedule: %w", err)
	}
	defer r.running.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.dispatch(ctx, r.now(), false)
		wait := time.Hour
		if due, ok := r.next(); ok {
			wait = max(due.Sub(r.now()), 10*time.Millisecond)
		}
		timer.Reset(min(wait, time.Hour))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-r.wake:
		}
	}
}

// RunDue refreshes every connection due at now and waits for them. Tests
// and benchmarks use it to drive the refresher with a simulated clock.
func (r *Refresher) RunDue(ctx context.Context, now time.Time) int {
	n := r.dispatch(ctx, now, true)
	r.running.Wait()
	return n
}

// dispatch starts a refresh for every entry due at now, Workers at a time;
// with wait it blocks for a free worker, otherwise it leaves the rest
// queued for the next wake-up.
func (r *Refresher) dispatch(ctx context.Context, now time.Time, wait bool) int {
	r.init()
	n := 0
	for ctx.Err() == nil {
		var e *entry
		if wait {
			select {
			case r.sem <- struct{}{}:
			case <-ctx.Done():
				return n
			}
		} else {
			select {
			case r.sem <- struct{}{}:
			default:
				return n
			}
		}
		if due := r.takeDue(now, 1); len(due) == 1 {
			e = due[0]
		} else {
			<-r.sem
			return n
		}
		n++
		r.running.Add(1)
		go func() {
			defer r.running.Done()
			defer func() { <-r.sem; r.poke() }()
			if _, err := r.refreshEntry(e, scheduled, ""); err != nil && ErrorCode(err) == EINTERNAL {
				r.Service.logger().Error("refresh failed", "workspace", e.key.ws, "integration", e.key.id, "err", err)
			}
		}()
	}
	return n
}

// ---- refreshing ----

// Token returns usable credentials for a connection's generation,
// refreshing them first when they expire within the provider's margin.
// With force (the provider's API refused a token) it refreshes, unless
// failedID names a token (TokenID) that was already replaced: many workers
// reporting the same refused token cause one refresh, not one each. The result
// is stored before it is returned. It fails with ECONFLICT when the
// generation is not current or the connection needs a reconnect,
// EUNAVAILABLE when the provider cannot be reached (the badge follows the
// failure window), and ENOTFOUND for an unknown integration.
func (r *Refresher) Token(ctx context.Context, workspaceID, integrationID string, generation uint64, force bool, failedID string) (*TokenSet, *Integration, error) {
	r.init()
	in, err := r.Service.Store.FindIntegrationByID(ctx, workspaceID, integrationID)
	if err != nil {
		return nil, nil, err
	}
	gen, err := usableGeneration(in, generation)
	if err != nil {
		return nil, in, err
	}
	e := r.track(in, gen)
	mode := onDemand
	if force {
		mode = forced
	}
	t, err := r.refreshEntry(e, mode, failedID)
	if err != nil {
		if cur, ferr := r.Service.Store.FindIntegrationByID(ctx, workspaceID, integrationID); ferr == nil {
			in = cur
		}
		return nil, in, err
	}
	if cur, ferr := r.Service.Store.FindIntegrationByID(ctx, workspaceID, integrationID); ferr == nil {
		in = cur
	}
	return t, in, nil
}

// usableGeneration checks that generation (0: whichever is current) may
// use credentials.
func usableGeneration(in *Integration, generation uint64) (uint64, error) {
	gen, ok := in.CurrentGeneration()
	if !ok {
		return 0, Errorf(ECONFLICT, "Integration %s is disconnected; nothing may sync for it.", in.ID)
	}
	if generation != 0 && generation != gen {
		return 0, Errorf(ECONFLICT, "Generation %d of integration %s is over (current generation %d); stop syncing it and start again from the current generation.", generation, in.ID, gen)
	}
	if in.Status == StatusReconnectRequired {
		return 0, Errorf(ECONFLICT, "Integration %s needs a reconnect (%s); nothing can sync until an admin reconnects it.", in.ID, in.StatusReason)
	}
	return gen, nil
}

type flightResult struct{ tokens *TokenSet }

// refreshMode is why a refresh runs.
type refreshMode int8

const (
	scheduled refreshMode = iota // the schedule says so: ask the provider
	onDemand                     // a caller needs a token: refresh only if it expires within the margin
	forced                       // the token was refused by the provider's API: refresh unless just refreshed
)

// refreshEntry runs at most one refresh per connection at a time; callers
// arriving during one share its result. Forced callers share only forced
// flights, so a report of a refused token is never answered by a check
// that found the same token still fresh.
func (r *Refresher) refreshEntry(e *entry, mode refreshMode, failedID string) (*TokenSet, error) {
	key := e.key.ws + "\x00" + e.key.id
	if mode == forced {
		key = "force\x00" + key + "\x00" + failedID
	}
	v, err, _ := r.flights.Do(key, func() (any, error) {
		// Detached from any one caller: the others wait for it too.
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
		defer cancel()
		t, err := r.refresh(ctx, e, mode, failedID)
		return flightResult{t}, err
	})
	if err != nil {
		return nil, err
	}
	return v.(flightResult).tokens, nil
}

func (r *Refresher) refresh(ctx context.Context, e *entry, mode refreshMode, failedID string) (*TokenSet, error) {
	svc := r.Service
	store := svc.Store
	in, err := store.FindIntegrationByID(ctx, e.key.ws, e.key.id)
	if ErrorCode(err) == ENOTFOUND {
		r.untrack(e)
		return nil, err
	} else if err != nil {
		r.retryLater(e)
		return nil, fmt.Errorf("refresh %s: %w", e.key.id, err)
	}
	gen, err := usableGeneration(in, e.gen)
	if err != nil {
		r.untrack(e)
		return nil, err
	}
	tokens, err := store.FindTokens(ctx, e.key.ws, e.key.id, gen)
	if ErrorCode(err) == ENOTFOUND {
		return nil, r.needReconnect(ctx, in, gen, ReasonTokenExpired, "No credentials are stored for this connection; reconnect to sign in again.")
	} else if err != nil {
		r.retryLater(e)
		return nil, fmt.Errorf("refresh %s: %w", e.key.id, err)
	}
	now := r.now()
	valid := tokens.Expiry.IsZero() || tokens.Expiry.After(now)
	switch mode {
	case onDemand:
		// A caller needs a token: a valid one does, even while the
		// provider is failing (the badge says so after the window).
		if tokens.Expiry.IsZero() || tokens.Expiry.Sub(now) > r.margin(in.ProviderID) {
			return tokens, nil
		}
	case forced:
		// The token that failed was replaced meanwhile (another worker's
		// report refreshed it): hand out the replacement.
		if failedID != "" && TokenID(tokens.AccessToken) != failedID && valid {
			return tokens, nil
		}
	}
	if tokens.RefreshToken == "" {
		if !tokens.Expiry.IsZero() && !now.Before(tokens.Expiry) {
			return nil, r.needReconnect(ctx, in, gen, ReasonTokenExpired, "The access token expired and the provider gave no refresh token; reconnect to sign in again.")
		}
		// Still valid and not refreshable: hand it out, and look again
		// when it expires.
		r.mu.Lock()
		if tokens.Expiry.IsZero() {
			r.removeLocked(e.key)
		} else {
			r.rescheduleLocked(e, tokens.Expiry)
		}
		r.mu.Unlock()
		return tokens, nil
	}

	// Write ahead that a refresh is on its way to the provider.
	r.mu.Lock()
	st := RefreshState{FailingSince: e.failingSince, RefreshStartedAt: &now}
	r.mu.Unlock()
	if err := store.PutRefreshState(ctx, e.key.ws, e.key.id, gen, st); err != nil {
		if ErrorCode(err) == ECONFLICT {
			r.untrack(e)
			return nil, err
		}
		r.retryLater(e)
		return nil, fmt.Errorf("refresh %s: %w", e.key.id, err)
	}
	next, rerr := svc.OAuth.Refresh(ctx, in.ProviderID, tokens)
	r.report(in.ProviderID, rerr)
	if rerr == nil {
		// Store first: a rotated refresh token must be durable before
		// anyone uses the new access token.
		if err := store.PutTokens(ctx, e.key.ws, e.key.id, gen, next); err != nil {
			if ErrorCode(err) == ECONFLICT {
				// Disconnected meanwhile: nobody will use these.
				svc.revokeOrphan(in.ProviderID, next)
				r.untrack(e)
				return nil, err
			}
			// The provider may have rotated; RefreshStartedAt stays set,
			// so a later refusal is classified as interrupted.
			r.mu.Lock()
			e.uncertain = true
			r.mu.Unlock()
			r.retryLater(e)
			return nil, fmt.Errorf("refresh %s: store rotated tokens: %w", e.key.id, err)
		}
		issued := r.now()
		r.mu.Lock()
		e.failingSince, e.failures, e.uncertain, e.issuedAt = nil, 0, false, issued
		if due, ok := r.dueFor(in.ProviderID, next.Expiry, issued, next.RefreshToken != ""); ok {
			r.rescheduleLocked(e, due)
		} else {
			r.removeLocked(e.key)
		}
		r.mu.Unlock()
		if in.Status == StatusError && isRefreshReason(in.StatusReason) {
			r.transition(ctx, gen, in, StatusConnected, ReasonAuthorized, "", EventRecovered, func(c *Integration) bool {
				return c.Status == StatusError && isRefreshReason(c.StatusReason)
			})
		}
		return next, nil
	}
	return nil, r.failed(ctx, e, in, gen, rerr)
}

// report tells Observe the outcome of a call to a token endpoint.
func (r *Refresher) report(providerID string, err error) {
	if r.Observe == nil {
		return
	}
	class := "ok"
	var pf ProviderFailure
	switch {
	case err == nil:
	case ErrorCode(err) == EINVALID && errors.As(err, &pf) && (pf.OAuthCode() == "invalid_client" || pf.OAuthCode() == "unauthorized_client"):
		class = "client_rejected"
	case ErrorCode(err) == EINVALID:
		class = "revoked"
	default:
		class = "transient"
	}
	r.Observe(providerID, class)
}

// failed classifies a refresh failure and records it.
func (r *Refresher) failed(ctx context.Context, e *entry, in *Integration, gen uint64, rerr error) error {
	store := r.Service.Store
	var pf ProviderFailure
	status, oauthCode, retryAfter := 0, "", time.Duration(0)
	if errors.As(rerr, &pf) {
		status, oauthCode, retryAfter = pf.HTTPStatus(), pf.OAuthCode(), pf.RetryAfter()
	}
	pv, _ := r.Service.Provider(in.ProviderID)
	now := r.now()
	if ErrorCode(rerr) == EINVALID {
		if oauthCode == "invalid_client" || oauthCode == "unauthorized_client" {
			msg := fmt.Sprintf("%s refused Switchboard's client credentials while refreshing (%s). Reconnecting will not help: update the client ID and secret in the providers file.", pv.Name, oauthCode)
			_ = store.PutRefreshState(ctx, e.key.ws, e.key.id, gen, RefreshState{FailingSince: e.failingSince})
			r.transition(ctx, gen, in, StatusError, ReasonRefreshFailed, msg, EventError, func(c *Integration) bool {
				return c.Status == StatusConnected || c.Status == StatusError && c.StatusReason == ReasonProviderUnavailable
			})
			r.mu.Lock()
			e.failures++
			r.rescheduleLocked(e, now.Add(r.backoff(e.failures)))
			r.mu.Unlock()
			return rerr
		}
		r.mu.Lock()
		uncertain := e.uncertain
		r.mu.Unlock()
		reason, msg := ReasonTokenRevoked, fmt.Sprintf("%s no longer accepts this connection's sign-in: %s", pv.Name, ErrorMessage(rerr))
		if uncertain && oauthCode == "invalid_grant" {
			reason = ReasonRefreshInterrupted
			msg = fmt.Sprintf("A token refresh with %s was interrupted before its answer could be stored, and %s now refuses the previous refresh token. Reconnect to sign in again; the sync checkpoint is kept.", pv.Name, pv.Name)
		}
		return r.needReconnect(ctx, in, gen, reason, msg)
	}

	// Transient. The provider answered (429, 5xx): it did not rotate.
	// No answer: it may have.
	r.mu.Lock()
	if e.failingSince == nil {
		t := now
		e.failingSince = &t
	}
	if status == 0 {
		e.uncertain = true
	}
	e.failures++
	since := *e.failingSince
	delay := max(r.backoff(e.failures), retryAfter)
	st := RefreshState{FailingSince: &since}
	if e.uncertain {
		st.RefreshStartedAt = &now
	}
	r.rescheduleLocked(e, now.Add(delay))
	r.mu.Unlock()
	if err := store.PutRefreshState(ctx, e.key.ws, e.key.id, gen, st); err != nil && ErrorCode(err) != ECONFLICT {
		r.Service.logger().Error("recording refresh failure", "integration", e.key.id, "err", err)
	}
	r.Service.logger().Warn("refresh failed; will retry", "workspace", e.key.ws, "integration", e.key.id, "provider", in.ProviderID, "failing_since", since, "retry_in", delay, "err", ErrorMessage(rerr))
	if now.Sub(since) >= r.window() {
		msg := fmt.Sprintf("%s has not answered token refreshes since %s (%s). Switchboard keeps retrying and the badge returns to Connected by itself when %s answers.",
			pv.Name, since.Format(time.RFC3339), ErrorMessage(rerr), pv.Name)
		r.transition(ctx, gen, in, StatusError, ReasonProviderUnavailable, msg, EventError, func(c *Integration) bool {
			return c.Status == StatusConnected
		})
	}
	if ErrorCode(rerr) == EUNAVAILABLE {
		return rerr
	}
	return Errorf(EUNAVAILABLE, "%s could not refresh the access token. Try again shortly.", pv.Name)
}

// retryLater reschedules after an internal failure (store), without
// counting it as the provider's.
func (r *Refresher) retryLater(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rescheduleLocked(e, r.now().Add(r.backoff(1)))
}

func (r *Refresher) needReconnect(ctx context.Context, in *Integration, gen uint64, reason, msg string) error {
	r.transition(ctx, gen, in, StatusReconnectRequired, reason, msg, EventReconnectRequired, func(c *Integration) bool {
		return c.Status == StatusConnected || c.Status == StatusError
	})
	r.mu.Lock()
	r.removeLocked(connKey{in.WorkspaceID, in.ID})
	r.mu.Unlock()
	return Errorf(ECONFLICT, "%s", msg)
}

// transition commits a status change for generation gen when cond holds
// on the current state; otherwise (changed meanwhile) nothing is written.
func (r *Refresher) transition(ctx context.Context, gen uint64, in *Integration, status Status, reason, msg string, kind EventKind, cond func(*Integration) bool) {
	_, err := r.Service.commit(ctx, Change{
		WorkspaceID:   in.WorkspaceID,
		IntegrationID: in.ID,
		At:            r.now(),
		Apply: func(c *Integration) (*Integration, EventKind, error) {
			if g, ok := c.CurrentGeneration(); !ok || g != gen || !cond(c) {
				return nil, "", nil
			}
			if c.Status == status && c.StatusReason == reason {
				return nil, "", nil
			}
			c.Status, c.StatusReason, c.StatusMessage = status, reason, msg
			if status == StatusConnected {
				c.MissingScopes = nil
			}
			return c, kind, nil
		},
	})
	if err != nil {
		r.Service.logger().Error("committing status change", "integration", in.ID, "status", status, "reason", reason, "err", err)
	}
}

// TokenID names an access token without revealing it: the first 16 hex
// digits of its SHA-256. The sync API returns it with every token, and an
// authorization failure report names the token that failed by it.
func TokenID(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return hex.EncodeToString(sum[:8])
}

// ---- the heap ----

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = int32(i)
	h[j].index = int32(j)
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = int32(len(*h))
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	e.index = -1
	*h = old[:n-1]
	return e
}
