package refresher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bont/switchboard/refresher"
	sb "github.com/bont/switchboard/switchboard"
)

// memStore is an in-memory stand-in for the parts of the Store the
// refresher uses, so the benchmark measures the refresher itself: its
// schedule, single-flight and bookkeeping, not bbolt's fsyncs or a
// provider's latency. Other Store methods are not implemented (nil
// embedded interface) and would panic if called.
type memStore struct {
	sb.Store
	mu     sync.Mutex
	ins    map[string]*sb.Integration
	toks   map[string]*sb.TokenSet
	states map[string]sb.RefreshState
}

func (m *memStore) FindIntegrationByID(_ context.Context, _, id string) (*sb.Integration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ins[id], nil
}
func (m *memStore) FindTokens(_ context.Context, _, id string, _ uint64) (*sb.TokenSet, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := *m.toks[id]
	return &t, nil
}
func (m *memStore) PutTokens(_ context.Context, _, id string, _, _ uint64, t *sb.TokenSet) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.toks[id] = t
	delete(m.states, id)
	return nil
}
func (m *memStore) PutRefreshState(_ context.Context, _, id string, _, _ uint64, st sb.RefreshState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[id] = st
	return nil
}
func (m *memStore) TokenSchedule(_ context.Context, fn func(*sb.TokenMeta) error) error {
	for id, in := range m.ins {
		t := m.toks[id]
		if err := fn(&sb.TokenMeta{WorkspaceID: in.WorkspaceID, IntegrationID: id, ProviderID: in.ProviderID, Generation: 1,
			Status: in.Status, Expiry: t.Expiry, HasRefreshToken: true, IssuedAt: t.Expiry.Add(-time.Hour), Known: true}); err != nil {
			return err
		}
	}
	return nil
}

// instantOAuth answers every refresh at once with an hour-long token.
type instantOAuth struct {
	sb.OAuth
	now func() time.Time
}

func (o instantOAuth) Refresh(_ context.Context, _ string, t *sb.TokenSet) (*sb.TokenSet, error) {
	n := *t
	n.AccessToken = "at"
	n.Expiry = o.now().Add(time.Hour)
	return &n, nil
}

type oneProvider struct{}

func (oneProvider) Providers() []*sb.Provider { return nil }
func (oneProvider) Provider(string) (*sb.Provider, bool) {
	return &sb.Provider{ID: "acme", Name: "Acme", Category: sb.CategoryCRM, Available: true}, true
}

// BenchmarkRefresher100k runs the refresher over 100,000 connections whose
// access tokens last an hour (expiries spread over the hour), for one hour
// of simulated time per iteration, stepping the clock a minute at a time.
// Reported: CPU per connection-hour, allocations per connection-hour, and
// the schedule's heap per connection.
func BenchmarkRefresher100k(b *testing.B) {
	const conns = 100_000
	clk := newClock()
	st := &memStore{ins: map[string]*sb.Integration{}, toks: map[string]*sb.TokenSet{}, states: map[string]sb.RefreshState{}}
	for i := 0; i < conns; i++ {
		id := fmt.Sprintf("int_%06d", i)
		st.ins[id] = &sb.Integration{ID: id, WorkspaceID: fmt.Sprintf("ws_%04d", i%1000), ProviderID: "acme",
			Category: sb.CategoryCRM, Status: sb.StatusConnected, Generation: 1}
		st.toks[id] = &sb.TokenSet{AccessToken: "a", RefreshToken: "r", Expiry: clk.Now().Add(time.Duration(i%3600) * time.Second)}
	}
	svc := &sb.Service{Store: st, Broker: &recorder{}, OAuth: instantOAuth{now: clk.Now}, Catalogue: oneProvider{},
		Now: clk.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r := refresher.New(svc)
	svc.Observers, svc.TokenSource = []sb.CommitObserver{r}, r
	ctx := context.Background()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if n, err := r.Load(ctx); err != nil || n != conns {
		b.Fatalf("load: %d %v", n, err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapPerConn := float64(after.HeapAlloc-before.HeapAlloc) / conns

	refreshes := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for m := 0; m < 60; m++ {
			clk.Add(time.Minute)
			refreshes += r.RunDue(ctx, clk.Now())
		}
	}
	b.StopTimer()
	hours := float64(b.N)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(hours*conns), "ns/conn-hour")
	b.ReportMetric(float64(refreshes)/(hours*conns), "refreshes/conn-hour")
	b.ReportMetric(heapPerConn, "scheduleB/conn")
	if r.Len() != conns {
		b.Fatalf("scheduled: %d; want %d", r.Len(), conns)
	}
}
