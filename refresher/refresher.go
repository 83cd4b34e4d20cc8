// Package refresher keeps every connection's access token fresh and its
// badge true. Its Refresher is wired by main as one of the Service's
// commit observers (switchboard.CommitObserver), which keeps its schedule
// in step with every credential write, and as the Service's token source
// for the sync API (switchboard.TokenSource). It changes integrations only
// through Service.Commit.
package refresher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/bont/switchboard/switchboard"
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
	// DefaultMinRefreshGap is the least time between two refreshes of a
	// connection's credentials, whatever their lifetime (see dueFor).
	DefaultMinRefreshGap = 2 * time.Second
	// DefaultRefreshWarnPerMinute: a connection refreshed more often than
	// this in a minute is logged once as a warning naming its provider.
	DefaultRefreshWarnPerMinute = 10
)

// Refresher keeps every connection's access token fresh and its badge
// true. It refreshes each connection before its access token expires (see
// dueFor: the provider's margin before expiry, capped at a fifth of the
// token's lifetime, never sooner than MinGap or a tenth of the lifetime
// after the last refresh), at least every Interval (so a revocation shows
// within one interval, and tokens without expires_in are still refreshed),
// and on demand (Token). It classifies what the provider answers:
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
// from Store.TokenSchedule without opening any token. Its invariant, which
// Check verifies: every connection with a current generation and
// credentials that can be refreshed or expire has exactly one entry, for
// that generation, which is either queued or being refreshed; and a
// refresh that ends puts its entry back in the queue unless the
// connection left the schedule. Each credential write starts a new entry;
// a refresh that began from credentials a reconnect has since replaced
// can write nothing (the store checks TokenSet.Serial) and leaves the new
// entry alone.
type Refresher struct {
	Service *switchboard.Service
	// Margin returns how long before expiry a provider's tokens are
	// refreshed. Nil or a non-positive answer means DefaultRefreshMargin.
	// It is capped at a fifth of the token's lifetime: tokens that live
	// less than five margins are refreshed at 80% of their lifetime.
	Margin func(providerID string) time.Duration
	// MinGap is the least time between two refreshes of a connection's
	// credentials: a refresh is never scheduled sooner than the larger of
	// MinGap and a tenth of the token's lifetime after the last one, and
	// a caller asking for a token meanwhile gets the current one (or
	// EUNAVAILABLE once it expired) instead of a call to the provider.
	// Zero means DefaultMinRefreshGap.
	MinGap time.Duration
	// WarnPerMinute: a connection refreshed more often than this within a
	// minute is logged once as a warning. Zero means
	// DefaultRefreshWarnPerMinute.
	WarnPerMinute int
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
	// endpoint: "ok", "invalid_grant" (the grant was refused),
	// "client_rejected" or "transient".
	Observe func(providerID, class string)

	mu    sync.Mutex
	queue entryHeap
	byKey map[connKey]*entry
	// gone remembers the revision of the commit that took a connection
	// off the schedule, so an older commit observed after it (publishing
	// is not ordered) cannot put it back. Bounded: see bury.
	gone map[connKey]uint64
	seq  uint64 // numbers entries, for flight keys
	busy int    // dispatched refreshes and Token calls not finished
	// providers interns provider ids, so entries share their strings.
	providers map[string]string
	wake      chan struct{}
	flights   singleflight.Group
	running   sync.WaitGroup
	sem       chan struct{}
	initOnce  sync.Once
	// base parents every refresh: Run's context once it runs, so ending
	// Run (a shutdown) aborts calls to a hung token endpoint instead of
	// waiting out Timeout.
	base atomic.Pointer[context.Context]
}

type connKey struct{ ws, id string }

// entry is one scheduled connection. Kept small: 100,000 of them live in
// memory.
type entry struct {
	key      connKey
	provider string
	gen      uint64
	seq      uint64 // unique per entry
	rev      uint64 // revision of the commit that started it (0: loaded)
	due      time.Time
	issuedAt time.Time
	// life is the lifetime of the credentials (expiry - issuedAt); 0 when
	// they do not expire or are not known yet.
	life         time.Duration
	failingSince *time.Time
	failures     int32
	index        int32 // in queue; -1 when not queued
	// serial is the TokenSet.Serial of the credentials the entry stands
	// for (0: not known yet; adopted at the first refresh).
	serial uint64
	// call serialises the refreshes of this entry (scheduled, on demand
	// and forced flights have different keys), so two never present the
	// same refresh token to a rotating provider.
	call sync.Mutex
	// taken: a dispatched refresh holds it; settle puts it back.
	taken bool
	// uncertain: an attempt's answer was lost (stopped process, timeout,
	// network error after sending), so the provider may have rotated.
	uncertain bool
	warned    bool  // the refresh-rate warning was logged
	minute    int64 // the minute (Unix) calls counts refreshes of
	calls     int32
}

// New returns a Refresher for s. It keeps its schedule only when
// it is among s.Observers, so that every credential write and status
// change committed by s reaches it; main also makes it s.TokenSource.
func New(s *switchboard.Service) *Refresher {
	r := &Refresher{Service: s}
	r.init()
	return r
}

var (
	_ switchboard.CommitObserver = (*Refresher)(nil)
	_ switchboard.TokenSource    = (*Refresher)(nil)
)

func (r *Refresher) init() {
	r.initOnce.Do(func() {
		r.byKey = make(map[connKey]*entry)
		r.gone = make(map[connKey]uint64)
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
	return r.Service.CurrentTime()
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

func (r *Refresher) minGap() time.Duration { return orDefault(r.MinGap, DefaultMinRefreshGap) }

// gap is the least time between two refreshes of credentials that live
// life (0: no expiry): MinGap, or a tenth of the lifetime if that is more
// (but no more than Interval, which an operator sets to see revocations
// sooner).
func (r *Refresher) gap(life time.Duration) time.Duration {
	return max(r.minGap(), min(life/10, r.interval()))
}

// dueFor is when credentials issued at issued, expiring at expiry, should
// next be refreshed; false means never (no refresh token and no expiry).
// Without a refresh token the due time is the expiry, when the badge turns
// RECONNECT_REQUIRED (TOKEN_EXPIRED).
//
// The rule: the provider's margin before expiry, but never more than a
// fifth of the token's lifetime (so a token is used for at least 80% of
// its life, and one shorter than the margin is not due the moment it is
// issued); at the latest after Interval; when the lifetime decides, less a
// jitter of up to a sixteenth, so connections issued together spread out;
// and never sooner than gap(lifetime). An hour-long token with the default
// 2-minute margin is refreshed at about 56-58 minutes, an 8-second one at
// about 6-6.4 seconds, a 1-second one every MinGap.
func (r *Refresher) dueFor(providerID string, expiry, issued time.Time, hasRefresh bool) (time.Time, bool) {
	if !hasRefresh {
		return expiry, !expiry.IsZero()
	}
	span := r.interval()
	var life time.Duration
	if !expiry.IsZero() {
		life = max(expiry.Sub(issued), 0)
		if s := life - min(r.margin(providerID), life/5); s < span {
			span = s
			if span > 0 {
				span -= rand.N(span/16 + 1)
			}
		}
	}
	return issued.Add(max(span, r.gap(life))), true
}

// lifetime is how long credentials issued at issued and expiring at expiry
// live; 0 for credentials without expiry.
func lifetime(expiry, issued time.Time) time.Duration {
	if expiry.IsZero() {
		return 0
	}
	return max(expiry.Sub(issued), 0)
}

// ---- the schedule ----

// Load rebuilds the schedule from the store. Run calls it; it is exported
// for tests and benchmarks that drive the refresher step by step. A
// connection that a commit observed meanwhile keeps the entry that commit
// gave it.
func (r *Refresher) Load(ctx context.Context) (int, error) {
	r.init()
	now := r.now()
	n := 0
	err := r.Service.Store.TokenSchedule(ctx, func(m *switchboard.TokenMeta) error {
		if m.Status == switchboard.StatusReconnectRequired {
			return nil
		}
		e := &entry{key: connKey{m.WorkspaceID, m.IntegrationID}, gen: m.Generation, issuedAt: m.IssuedAt, serial: m.Serial, index: -1}
		due, ok := now, true
		switch {
		case !m.Known:
			// Credentials without metadata: read them once.
		case m.RefreshStartedAt != nil:
			e.uncertain = true
		case m.FailingSince != nil, m.Status == switchboard.StatusError && isRefreshReason(m.StatusReason):
			// Failing before the restart: try again now.
		default:
			due, ok = r.dueFor(m.ProviderID, m.Expiry, m.IssuedAt, m.HasRefreshToken)
		}
		if m.Known {
			e.life = lifetime(m.Expiry, m.IssuedAt)
		}
		e.failingSince = m.FailingSince
		if !ok {
			return nil
		}
		e.due = due
		r.mu.Lock()
		if r.byKey[e.key] == nil && r.gone[e.key] == 0 {
			e.provider = r.intern(m.ProviderID)
			r.putLocked(e)
			n++
		}
		r.mu.Unlock()
		return nil
	})
	r.poke()
	return n, err
}

func isRefreshReason(reason string) bool {
	return reason == switchboard.ReasonProviderUnavailable || reason == switchboard.ReasonRefreshFailed
}

func (r *Refresher) intern(s string) string {
	if v, ok := r.providers[s]; ok {
		return v
	}
	r.providers[s] = s
	return s
}

// putLocked makes e the connection's entry, queued at e.due, in place of
// any other.
func (r *Refresher) putLocked(e *entry) {
	if old := r.byKey[e.key]; old != nil && old.index >= 0 {
		r.queue.remove(int(old.index))
	}
	r.seq++
	e.seq = r.seq
	r.byKey[e.key] = e
	delete(r.gone, e.key)
	r.queue.push(e)
}

// removeLocked takes a connection off the schedule. Only a commit (Committed)
// removes by key; a refresh drops its own entry (dropLocked).
func (r *Refresher) removeLocked(k connKey) {
	if old := r.byKey[k]; old != nil {
		if old.index >= 0 {
			r.queue.remove(int(old.index))
		}
		delete(r.byKey, k)
	}
}

// dropLocked takes e off the schedule, unless it was replaced meanwhile.
func (r *Refresher) dropLocked(e *entry) {
	if r.byKey[e.key] == e {
		r.removeLocked(e.key)
	}
}

func (r *Refresher) drop(e *entry) {
	r.mu.Lock()
	r.dropLocked(e)
	r.mu.Unlock()
}

// bury remembers that the commit at rev took k off the schedule. The
// memory is only needed while commits of the same connection may still be
// observed out of order (microseconds), so it is simply cleared when it
// grows large.
func (r *Refresher) buryLocked(k connKey, rev uint64) {
	if len(r.gone) >= 4096 {
		clear(r.gone)
	}
	r.gone[k] = max(r.gone[k], rev)
}

// rescheduleLocked moves e to due, queueing it if needed, unless e was
// replaced or removed meanwhile.
func (r *Refresher) rescheduleLocked(e *entry, due time.Time) {
	if r.byKey[e.key] != e {
		return
	}
	e.due = due
	if e.index >= 0 {
		r.queue.fix(int(e.index))
	} else {
		r.queue.push(e)
	}
}

func (r *Refresher) reschedule(e *entry, due time.Time) {
	r.mu.Lock()
	r.rescheduleLocked(e, due)
	r.mu.Unlock()
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

// Committed updates the schedule after a commit: written credentials
// start a fresh entry; a connection without a current generation, or
// waiting for a reconnect, leaves the schedule. Commits may be observed out
// of order; one older than the last that changed the connection's schedule
// changes nothing.
func (r *Refresher) Committed(ev *switchboard.Event, tokens *switchboard.TokenSet) {
	in := ev.Integration
	k := connKey{in.WorkspaceID, in.ID}
	rev := ev.Revision
	gen, ok := in.CurrentGeneration()
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.byKey[k]; cur != nil && cur.rev > rev || r.gone[k] > rev {
		return
	}
	if !ok || in.Status == switchboard.StatusReconnectRequired {
		r.removeLocked(k)
		r.buryLocked(k, rev)
		return
	}
	if tokens == nil {
		if e := r.byKey[k]; e != nil && e.gen != gen {
			r.removeLocked(k)
			r.buryLocked(k, rev)
		}
		return
	}
	due, ok := r.dueFor(in.ProviderID, tokens.Expiry, ev.At, tokens.RefreshToken != "")
	if !ok {
		r.removeLocked(k)
		r.buryLocked(k, rev)
		return
	}
	r.putLocked(&entry{key: k, provider: r.intern(in.ProviderID), gen: gen, rev: rev, due: due, issuedAt: ev.At,
		life: lifetime(tokens.Expiry, ev.At), serial: tokens.Serial, index: -1})
	r.poke()
}

// track returns the entry for a connection, creating one (due now) for a
// connection the schedule does not hold yet.
func (r *Refresher) track(in *switchboard.Integration, gen uint64) *entry {
	k := connKey{in.WorkspaceID, in.ID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.byKey[k]; e != nil && e.gen == gen {
		return e
	}
	e := &entry{key: k, provider: r.intern(in.ProviderID), gen: gen, rev: in.Revision, due: r.now(), index: -1}
	r.putLocked(e)
	return e
}

// Len returns how many connections are scheduled.
func (r *Refresher) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byKey)
}

// Stats is what an operator sees of the schedule.
type Stats struct {
	// Scheduled is the number of connections on the schedule.
	Scheduled int
	// Overdue is how late the most overdue queued refresh is (0 if none
	// is late).
	Overdue time.Duration
	// Running is the number of refreshes in progress: dispatched by the
	// schedule, or asked for through Token, until they have finished
	// (a dispatched one until its entry is settled).
	Running int
}

// Stats returns the schedule's figures as of now.
func (r *Refresher) Stats() Stats {
	r.init()
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Stats{Scheduled: len(r.byKey), Running: r.busy}
	if len(r.queue) > 0 && now.After(r.queue[0].e.due) {
		st.Overdue = now.Sub(r.queue[0].e.due)
	}
	return st
}

func (r *Refresher) addBusy(n int) {
	r.mu.Lock()
	r.busy += n
	r.mu.Unlock()
}

// takeDue pops up to limit entries due at now, marking them taken.
func (r *Refresher) takeDue(now time.Time, limit int) []*entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*entry
	for len(r.queue) > 0 && !r.queue[0].e.due.After(now) && len(out) < limit {
		e := r.queue.pop()
		e.taken = true
		out = append(out, e)
	}
	return out
}

// settle ends a dispatched refresh of e: if the refresh neither put e
// back in the queue nor took it off the schedule, e is queued again after
// a backoff. This is what makes a lost entry impossible, whatever the
// refresh did.
func (r *Refresher) settle(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.taken = false
	if r.byKey[e.key] == e && e.index < 0 {
		r.rescheduleLocked(e, r.now().Add(r.backoff(1)))
	}
}

func (r *Refresher) next() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return time.Time{}, false
	}
	return r.queue[0].e.due, true
}

// Check verifies the schedule's invariant against the store: every
// connection with a current generation, not waiting for a reconnect, whose
// credentials can be refreshed or expire (or are not known yet) has
// exactly one entry, for its current generation, queued or being
// refreshed; no other connection has one; the queue holds exactly the
// entries not being refreshed. It is meant for tests and for an operator's
// check of a quiet gateway: a commit or refresh that runs meanwhile can
// make it report a difference that is about to be resolved.
func (r *Refresher) Check(ctx context.Context) error {
	r.init()
	want := make(map[connKey]uint64)
	err := r.Service.Store.TokenSchedule(ctx, func(m *switchboard.TokenMeta) error {
		if m.Status == switchboard.StatusReconnectRequired {
			return nil
		}
		if m.Known && !m.HasRefreshToken && m.Expiry.IsZero() {
			return nil
		}
		want[connKey{m.WorkspaceID, m.IntegrationID}] = m.Generation
		return nil
	})
	if err != nil {
		return fmt.Errorf("refresher check: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for i, it := range r.queue {
		e := it.e
		if it.due != e.due.UnixNano() {
			errs = append(errs, fmt.Errorf("queue[%d] (%s/%s) is ordered by a stale due time", i, e.key.ws, e.key.id))
		}
		if int(e.index) != i {
			errs = append(errs, fmt.Errorf("queue[%d] (%s/%s) has index %d", i, e.key.ws, e.key.id, e.index))
		}
		if r.byKey[e.key] != e {
			errs = append(errs, fmt.Errorf("queue[%d] (%s/%s) is not the connection's entry", i, e.key.ws, e.key.id))
		}
	}
	for k, e := range r.byKey {
		if e.index < 0 && !e.taken {
			errs = append(errs, fmt.Errorf("%s/%s generation %d: entry neither queued nor being refreshed (lost)", k.ws, k.id, e.gen))
		}
		gen, ok := want[k]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s/%s generation %d: scheduled, but the store has nothing to refresh", k.ws, k.id, e.gen))
		case gen != e.gen:
			errs = append(errs, fmt.Errorf("%s/%s: scheduled for generation %d, current is %d", k.ws, k.id, e.gen, gen))
		}
	}
	for k, gen := range want {
		if r.byKey[k] == nil {
			errs = append(errs, fmt.Errorf("%s/%s generation %d: not scheduled", k.ws, k.id, gen))
		}
	}
	return errors.Join(errs...)
}

// ---- running ----

// Run loads the schedule and refreshes connections as they come due until
// ctx ends; then it waits for the refreshes in flight. A refresh that hangs
// holds one worker until Timeout and delays no other connection's.
func (r *Refresher) Run(ctx context.Context) error {
	r.base.Store(&ctx)
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

// StartDue starts a refresh for every connection due at now, as many as
// there are free workers, without waiting for them; Wait waits. Tests use
// it to interleave refreshes with commits.
func (r *Refresher) StartDue(ctx context.Context, now time.Time) int {
	return r.dispatch(ctx, now, false)
}

// Wait waits for the refreshes started by StartDue or RunDue.
func (r *Refresher) Wait() { r.running.Wait() }

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
		r.addBusy(1) // before the goroutine runs, so Stats never misses it
		go func() {
			defer r.running.Done()
			defer r.addBusy(-1)
			defer func() { <-r.sem; r.poke() }()
			defer r.settle(e)
			if _, err := r.refreshEntry(e, scheduled, ""); err != nil && switchboard.ErrorCode(err) == switchboard.EINTERNAL {
				r.Service.Log().Error("refresh failed", "workspace", e.key.ws, "integration", e.key.id, "err", err)
			}
		}()
	}
	return n
}

// ---- refreshing ----

// errReplaced: the credentials a refresh started from were replaced (a
// reconnect) while it ran; nothing was written. Token asks again.
var errReplaced = switchboard.Errorf(switchboard.ECONFLICT, "The connection's credentials were replaced while they were being refreshed.")

// Token returns usable credentials for a connection's generation,
// refreshing them first when the schedule says they are due (or they
// expired), but never sooner than MinGap after the last refresh. With
// force (the provider's API refused a token) it refreshes, unless
// failedID names a token (TokenID) that was already replaced: many workers
// reporting the same refused token cause one refresh, not one each. The
// result is stored before it is returned. It fails with ECONFLICT when the
// generation is not current or the connection needs a reconnect,
// EUNAVAILABLE when the provider cannot be reached or the credentials
// expired and the next refresh may not start yet (the badge follows the
// failure window), and ENOTFOUND for an unknown integration.
func (r *Refresher) Token(ctx context.Context, workspaceID, integrationID string, generation uint64, force bool, failedID string) (*switchboard.TokenSet, *switchboard.Integration, error) {
	r.init()
	r.addBusy(1)
	defer r.addBusy(-1)
	mode := onDemand
	if force {
		mode = forced
	}
	for attempt := 0; ; attempt++ {
		in, err := r.Service.Store.FindIntegrationByID(ctx, workspaceID, integrationID)
		if err != nil {
			return nil, nil, err
		}
		gen, err := usableGeneration(in, generation)
		if err != nil {
			return nil, in, err
		}
		t, err := r.refreshEntry(r.track(in, gen), mode, failedID)
		if errors.Is(err, errReplaced) && attempt < 3 {
			continue // a reconnect wrote new credentials: use those
		}
		if cur, ferr := r.Service.Store.FindIntegrationByID(ctx, workspaceID, integrationID); ferr == nil {
			in = cur
		}
		if err != nil {
			return nil, in, err
		}
		return t, in, nil
	}
}

// usableGeneration checks that generation (0: whichever is current) may
// use credentials.
func usableGeneration(in *switchboard.Integration, generation uint64) (uint64, error) {
	gen, ok := in.CurrentGeneration()
	if !ok {
		return 0, switchboard.Errorf(switchboard.ECONFLICT, "Integration %s is disconnected; nothing may sync for it.", in.ID)
	}
	if generation != 0 && generation != gen {
		return 0, switchboard.Errorf(switchboard.ECONFLICT, "Generation %d of integration %s is over (current generation %d); stop syncing it and start again from the current generation.", generation, in.ID, gen)
	}
	if in.Status == switchboard.StatusReconnectRequired {
		return 0, switchboard.Errorf(switchboard.ECONFLICT, "Integration %s needs a reconnect (%s); nothing can sync until an admin reconnects it.", in.ID, in.StatusReason)
	}
	return gen, nil
}

type flightResult struct{ tokens *switchboard.TokenSet }

// refreshMode is why a refresh runs.
type refreshMode int8

const (
	scheduled refreshMode = iota // the schedule says so: ask the provider
	onDemand                     // a caller needs a token: refresh only if due or expired
	forced                       // the token was refused by the provider's API: refresh unless just refreshed
)

// refreshEntry runs at most one refresh per entry at a time; callers
// arriving during one share its result. An entry stands for one write of
// credentials, so a refresh of replaced credentials is never shared with
// callers of the new ones. Forced callers share only forced flights, so a
// report of a refused token is never answered by a check that found the
// same token still fresh.
func (r *Refresher) refreshEntry(e *entry, mode refreshMode, failedID string) (*switchboard.TokenSet, error) {
	r.mu.Lock()
	key := e.key.ws + "\x00" + e.key.id + "\x00" + strconv.FormatUint(e.seq, 10)
	r.mu.Unlock()
	if mode == forced {
		key = "force\x00" + key + "\x00" + failedID
	}
	v, err, _ := r.flights.Do(key, func() (any, error) {
		// Detached from any one caller (the others wait for it too), but
		// not from Run: a shutdown ends it.
		parent := context.Background()
		if b := r.base.Load(); b != nil {
			parent = *b
		}
		ctx, cancel := context.WithTimeout(parent, r.timeout())
		defer cancel()
		t, err := r.refresh(ctx, e, mode, failedID)
		return flightResult{t}, err
	})
	if err != nil {
		return nil, err
	}
	return v.(flightResult).tokens, nil
}

func (r *Refresher) refresh(ctx context.Context, e *entry, mode refreshMode, failedID string) (*switchboard.TokenSet, error) {
	e.call.Lock()
	defer e.call.Unlock()
	svc := r.Service
	store := svc.Store
	in, err := store.FindIntegrationByID(ctx, e.key.ws, e.key.id)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		r.drop(e)
		return nil, err
	} else if err != nil {
		r.retryLater(e)
		return nil, fmt.Errorf("refresh %s: %w", e.key.id, err)
	}
	gen, err := usableGeneration(in, e.gen)
	if err != nil {
		r.drop(e)
		return nil, err
	}
	tokens, err := store.FindTokens(ctx, e.key.ws, e.key.id, gen)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		var none uint64
		return nil, r.needReconnect(ctx, e, in, gen, none, switchboard.ReasonTokenExpired, "No credentials are stored for this connection; reconnect to sign in again.")
	} else if err != nil {
		r.retryLater(e)
		return nil, fmt.Errorf("refresh %s: %w", e.key.id, err)
	}
	now := r.now()
	valid := tokens.Expiry.IsZero() || tokens.Expiry.After(now)
	r.mu.Lock()
	if r.byKey[e.key] == e && e.serial == 0 {
		e.serial = tokens.Serial
	}
	if r.byKey[e.key] != e || e.serial != tokens.Serial {
		// Newer credentials were written since this entry was made; their
		// commit gives (or gave) the connection its new entry.
		r.mu.Unlock()
		return nil, errReplaced
	}
	due, failing, next := e.due, e.failures > 0, e.issuedAt.Add(r.gap(e.life))
	if e.issuedAt.IsZero() && !tokens.Expiry.IsZero() {
		// Not scheduled yet (the schedule is still loading after a start):
		// without the issue time the lifetime is unknown, so the margin
		// alone says when these are due. The refresh, if any, makes the
		// entry known.
		due = tokens.Expiry.Add(-r.margin(in.ProviderID))
	}
	r.mu.Unlock()
	switch mode {
	case scheduled:
		// Another refresh of this entry ran while this one waited, and
		// moved it on: nothing is due.
		if now.Before(due) && valid {
			return tokens, nil
		}
	case onDemand:
		// A caller needs a token: one that is valid and not yet due does,
		// and so does a valid one while the provider is failing (the badge
		// says so after the window) or right after a refresh.
		if valid && (tokens.Expiry.IsZero() || now.Before(due) || failing || now.Before(next)) {
			return tokens, nil
		}
		if failing && now.Before(due) || now.Before(next) {
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "The access token expired and the next refresh may start in %s. Try again then.", max(due.Sub(now), next.Sub(now)).Round(time.Second))
		}
	case forced:
		// The token that failed was replaced meanwhile (another worker's
		// report refreshed it): hand out the replacement.
		if failedID != "" && switchboard.TokenID(tokens.AccessToken) != failedID && valid {
			return tokens, nil
		}
	}
	if tokens.RefreshToken == "" {
		if !tokens.Expiry.IsZero() && !now.Before(tokens.Expiry) {
			return nil, r.needReconnect(ctx, e, in, gen, tokens.Serial, switchboard.ReasonTokenExpired, "The access token expired and the provider gave no refresh token; reconnect to sign in again.")
		}
		// Still valid and not refreshable: hand it out, and look again
		// when it expires.
		if tokens.Expiry.IsZero() {
			r.drop(e)
		} else {
			r.reschedule(e, tokens.Expiry)
		}
		return tokens, nil
	}

	// Write ahead that a refresh is on its way to the provider.
	r.mu.Lock()
	st := switchboard.RefreshState{FailingSince: e.failingSince, RefreshStartedAt: &now}
	r.mu.Unlock()
	if err := store.PutRefreshState(ctx, e.key.ws, e.key.id, gen, tokens.Serial, st); err != nil {
		if switchboard.ErrorCode(err) == switchboard.ECONFLICT {
			// A reconnect or disconnect came first: its commit owns the
			// schedule now.
			r.drop(e)
			return nil, errReplaced
		}
		r.retryLater(e)
		return nil, fmt.Errorf("refresh %s: %w", e.key.id, err)
	}
	r.count(e, in.ProviderID, now)
	next2, rerr := svc.OAuth.Refresh(ctx, in.ProviderID, tokens)
	r.report(in.ProviderID, rerr)
	if rerr == nil {
		// Store first: a rotated refresh token must be durable before
		// anyone uses the new access token.
		if err := store.PutTokens(ctx, e.key.ws, e.key.id, gen, tokens.Serial, next2); err != nil {
			if switchboard.ErrorCode(err) == switchboard.ECONFLICT {
				// Disconnected or reconnected meanwhile: nobody will use
				// these.
				svc.RevokeOrphan(in.ProviderID, next2)
				r.drop(e)
				return nil, errReplaced
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
		e.failingSince, e.failures, e.uncertain, e.issuedAt, e.serial = nil, 0, false, issued, next2.Serial
		e.life = lifetime(next2.Expiry, issued)
		if due, ok := r.dueFor(in.ProviderID, next2.Expiry, issued, next2.RefreshToken != ""); ok {
			r.rescheduleLocked(e, due)
		} else {
			r.dropLocked(e)
		}
		r.mu.Unlock()
		if in.Status == switchboard.StatusError && isRefreshReason(in.StatusReason) {
			_ = r.transition(ctx, gen, next2.Serial, in, switchboard.StatusConnected, switchboard.ReasonAuthorized, "", switchboard.EventRecovered, func(c *switchboard.Integration) bool {
				return c.Status == switchboard.StatusError && isRefreshReason(c.StatusReason)
			})
		}
		return next2, nil
	}
	return nil, r.failed(ctx, e, in, gen, tokens.Serial, rerr)
}

// count notes a call to the token endpoint for e, and warns once when a
// connection is refreshed more than WarnPerMinute times within a minute.
func (r *Refresher) count(e *entry, providerID string, now time.Time) {
	limit := r.WarnPerMinute
	if limit <= 0 {
		limit = DefaultRefreshWarnPerMinute
	}
	r.mu.Lock()
	m := now.Unix() / 60
	if e.minute != m {
		e.minute, e.calls = m, 0
	}
	e.calls++
	warn := int(e.calls) > limit && !e.warned
	if warn {
		e.warned = true
	}
	life := e.life
	r.mu.Unlock()
	if warn {
		r.Service.Log().Warn("connection refreshed unusually often; check the provider's token lifetime",
			"provider", providerID, "workspace", e.key.ws, "integration", e.key.id,
			"refreshes_this_minute", limit+1, "token_lifetime", life)
	}
}

// report tells Observe the outcome of a call to a token endpoint.
func (r *Refresher) report(providerID string, err error) {
	if r.Observe == nil {
		return
	}
	class := "ok"
	if err != nil {
		switch switchboard.ProviderFailureOf(err).Kind {
		case switchboard.FailureClientRefused:
			class = "client_rejected"
		case switchboard.FailureGrantRefused, switchboard.FailureRefused:
			class = "invalid_grant"
		default:
			class = "transient"
		}
	}
	r.Observe(providerID, class)
}

// failed classifies a refresh failure of the credentials with Serial
// serial and records it.
func (r *Refresher) failed(ctx context.Context, e *entry, in *switchboard.Integration, gen, serial uint64, rerr error) error {
	store := r.Service.Store
	pf := switchboard.ProviderFailureOf(rerr)
	pv, _ := r.Service.Provider(in.ProviderID)
	now := r.now()
	if pf.Kind != switchboard.FailureTransient {
		if pf.Kind == switchboard.FailureClientRefused {
			msg := fmt.Sprintf("%s refused Switchboard's client credentials while refreshing (%s). Reconnecting will not help: update the client ID and secret in the providers file.", pv.Name, pf.Code)
			_ = store.PutRefreshState(ctx, e.key.ws, e.key.id, gen, serial, switchboard.RefreshState{FailingSince: e.failingSince})
			_ = r.transition(ctx, gen, serial, in, switchboard.StatusError, switchboard.ReasonRefreshFailed, msg, switchboard.EventError, func(c *switchboard.Integration) bool {
				return c.Status == switchboard.StatusConnected || c.Status == switchboard.StatusError && c.StatusReason == switchboard.ReasonProviderUnavailable
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
		reason, msg := switchboard.ReasonTokenRevoked, fmt.Sprintf("%s no longer accepts this connection's sign-in: %s", pv.Name, switchboard.ErrorMessage(rerr))
		if uncertain && pf.Kind == switchboard.FailureGrantRefused {
			reason = switchboard.ReasonRefreshInterrupted
			msg = fmt.Sprintf("A token refresh with %s was interrupted before its answer could be stored, and %s now refuses the previous refresh token. Reconnect to sign in again; the sync checkpoint is kept.", pv.Name, pv.Name)
		}
		return r.needReconnect(ctx, e, in, gen, serial, reason, msg)
	}

	// Transient. The provider answered (429, 5xx): it did not rotate.
	// No answer: it may have.
	r.mu.Lock()
	if e.failingSince == nil {
		t := now
		e.failingSince = &t
	}
	if !pf.Answered {
		e.uncertain = true
	}
	e.failures++
	since := *e.failingSince
	delay := max(r.backoff(e.failures), pf.RetryAfter)
	st := switchboard.RefreshState{FailingSince: &since}
	if e.uncertain {
		st.RefreshStartedAt = &now
	}
	r.rescheduleLocked(e, now.Add(delay))
	r.mu.Unlock()
	if err := store.PutRefreshState(ctx, e.key.ws, e.key.id, gen, serial, st); err != nil && switchboard.ErrorCode(err) != switchboard.ECONFLICT {
		r.Service.Log().Error("recording refresh failure", "integration", e.key.id, "err", err)
	}
	r.Service.Log().Warn("refresh failed; will retry", "workspace", e.key.ws, "integration", e.key.id, "provider", in.ProviderID, "failing_since", since, "retry_in", delay, "err", switchboard.ErrorMessage(rerr))
	if now.Sub(since) >= r.window() {
		msg := fmt.Sprintf("%s has not answered token refreshes since %s (%s). Switchboard keeps retrying and the badge returns to Connected by itself when %s answers.",
			pv.Name, since.Format(time.RFC3339), switchboard.ErrorMessage(rerr), pv.Name)
		_ = r.transition(ctx, gen, serial, in, switchboard.StatusError, switchboard.ReasonProviderUnavailable, msg, switchboard.EventError, func(c *switchboard.Integration) bool {
			return c.Status == switchboard.StatusConnected
		})
	}
	if switchboard.ErrorCode(rerr) == switchboard.EUNAVAILABLE {
		return rerr
	}
	return switchboard.Errorf(switchboard.EUNAVAILABLE, "%s could not refresh the access token. Try again shortly.", pv.Name)
}

// retryLater reschedules after an internal failure (store), without
// counting it as the provider's.
func (r *Refresher) retryLater(e *entry) {
	r.reschedule(e, r.now().Add(r.backoff(1)))
}

// needReconnect turns the badge RECONNECT_REQUIRED because the credentials
// with Serial serial were refused, unless a reconnect replaced them
// meanwhile (then the refusal is about old credentials: errReplaced).
func (r *Refresher) needReconnect(ctx context.Context, e *entry, in *switchboard.Integration, gen, serial uint64, reason, msg string) error {
	err := r.transition(ctx, gen, serial, in, switchboard.StatusReconnectRequired, reason, msg, switchboard.EventReconnectRequired, func(c *switchboard.Integration) bool {
		return c.Status == switchboard.StatusConnected || c.Status == switchboard.StatusError
	})
	r.drop(e)
	if switchboard.ErrorCode(err) == switchboard.ECONFLICT {
		return errReplaced
	}
	return switchboard.Errorf(switchboard.ECONFLICT, "%s", msg)
}

// transition commits a status change for generation gen, whose
// credentials have Serial serial, when cond holds on the current state;
// otherwise (changed meanwhile) nothing is written. It returns ECONFLICT
// when the credentials were replaced meanwhile.
func (r *Refresher) transition(ctx context.Context, gen, serial uint64, in *switchboard.Integration, status switchboard.Status, reason, msg string, kind switchboard.EventKind, cond func(*switchboard.Integration) bool) error {
	_, err := r.Service.Commit(ctx, switchboard.Change{
		WorkspaceID:   in.WorkspaceID,
		IntegrationID: in.ID,
		At:            r.now(),
		IfCredentials: &serial,
		Apply: func(c *switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			if g, ok := c.CurrentGeneration(); !ok || g != gen || !cond(c) {
				return nil, "", nil
			}
			if c.Status == status && c.StatusReason == reason {
				return nil, "", nil
			}
			c.Status, c.StatusReason, c.StatusMessage = status, reason, msg
			if status == switchboard.StatusConnected {
				c.MissingScopes = nil
			}
			return c, kind, nil
		},
	})
	if err != nil && switchboard.ErrorCode(err) != switchboard.ECONFLICT {
		r.Service.Log().Error("committing status change", "integration", in.ID, "status", status, "reason", reason, "err", err)
	}
	return err
}

// ---- the heap ----

// entryHeap is a min-heap of entries by due time. Each item keeps its due
// time beside the pointer, so ordering 100,000 entries reads the slice
// only, not every entry.
type entryHeap []heapItem

type heapItem struct {
	due int64 // e.due in Unix nanoseconds
	e   *entry
}

func (h entryHeap) less(i, j int) bool { return h[i].due < h[j].due }

func (h entryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.index = int32(i)
	h[j].e.index = int32(j)
}

func (h entryHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h entryHeap) down(i int) bool {
	i0, n := i, len(h)
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

func (h *entryHeap) push(e *entry) {
	e.index = int32(len(*h))
	*h = append(*h, heapItem{e.due.UnixNano(), e})
	h.up(len(*h) - 1)
}

func (h *entryHeap) pop() *entry {
	return h.remove(0)
}

func (h *entryHeap) remove(i int) *entry {
	old := *h
	n := len(old) - 1
	if n != i {
		old.swap(i, n)
		if !old[:n].down(i) {
			old[:n].up(i)
		}
	}
	e := old[n].e
	old[n] = heapItem{}
	e.index = -1
	*h = old[:n]
	return e
}

// fix restores the order after the due time of the entry at i changed.
func (h entryHeap) fix(i int) {
	h[i].due = h[i].e.due.UnixNano()
	if !h.down(i) {
		h.up(i)
	}
}
