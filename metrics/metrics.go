// Package metrics exposes Switchboard's Prometheus metrics: connected
// subscribers, deliveries and cut-offs, commit latency, token refresh
// outcomes, integrations by status, HTTP requests, refusals by the abuse
// limits, and the Go runtime.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bont/switchboard/switchboard"
)

// Sources are read at scrape time.
type Sources struct {
	Subscribers  func() float64
	Deliveries   func() float64
	Cutoffs      func() float64
	Websockets   func() float64
	StatusCounts func(context.Context) (map[switchboard.Status]uint64, error)
	// The broker's replay history: events kept and their estimated bytes.
	ReplayHistoryEvents func() float64
	ReplayHistoryBytes  func() float64
	// Subscription events rendered by the compiled renderer and by
	// gqlgen's executor (once per group of identical subscriptions).
	RendersCompiled func() float64
	RendersExecutor func() float64
	// The token refresher's schedule: connections on it, and how late
	// the most overdue refresh is.
	RefreshScheduled      func() float64
	RefreshOverdueSeconds func() float64
}

// Metrics holds the collectors. Its methods are safe for concurrent use.
type Metrics struct {
	registry        *prometheus.Registry
	commitSeconds   *prometheus.HistogramVec
	httpRequests    *prometheus.CounterVec
	httpSeconds     *prometheus.HistogramVec
	refreshOutcomes *prometheus.CounterVec
	limitRefusals   *prometheus.CounterVec
	oauthRefusals   *prometheus.CounterVec
	graphqlRefusals *prometheus.CounterVec
}

// New registers every collector on a registry of its own.
func New(src Sources) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		commitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_commit_duration_seconds",
			Help:    "Time from a change's submission to its durable commit (fsync), by outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"outcome"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_http_request_duration_seconds",
			Help:    "HTTP request duration by route (websockets: until the upgrade).",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		refreshOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_token_refreshes_total",
			Help: "Calls to providers' token endpoints by provider and outcome: ok, invalid_grant (the grant was refused: the badge turns Reconnect), client_rejected (the providers file's client credentials were refused), transient (network, timeout, 429, 5xx: retried).",
		}, []string{"provider", "class"}),
		limitRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_limit_refusals_total",
			Help: "Requests, operations and connections refused or cut by an abuse limit, by limit (docs/security-limits.md).",
		}, []string{"limit"}),
	}
	m.oauthRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_oauth_refusals_total",
		Help: "OAuth start links and callbacks refused though their state was genuine, by step (start, callback) and reason (not_this_browser, token_revoked, token_expired).",
	}, []string{"step", "reason"})
	m.registry.MustRegister(m.oauthRefusals)
	m.graphqlRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_graphql_limit_refusals_total",
		Help: "GraphQL documents refused before they ran, by limit (fields, selectionFields, merges, depth, complexity, introspection, work).",
	}, []string{"limit"})
	m.registry.MustRegister(m.graphqlRefusals)
	m.registry.MustRegister(m.commitSeconds, m.httpRequests, m.httpSeconds, m.refreshOutcomes, m.limitRefusals,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func() float64) {
		if f != nil {
			m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
		}
	}
	counter := func(name, help string, f func() float64) {
		if f != nil {
			m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
		}
	}
	gauge("switchboard_subscribers", "Subscriptions currently connected.", src.Subscribers)
	gauge("switchboard_websockets", "Websocket connections currently open.", src.Websockets)
	counter("switchboard_deliveries_total", "Events delivered to subscribers.", src.Deliveries)
	counter("switchboard_subscriber_cutoffs_total", "Subscribers cut off for falling too far behind.", src.Cutoffs)
	gauge("switchboard_refresh_scheduled_connections", "Connections on the token refresher's schedule.", src.RefreshScheduled)
	gauge("switchboard_refresh_overdue_seconds", "How late the most overdue scheduled token refresh is (0: none is late). Growing means the refresher cannot keep up or is stuck.", src.RefreshOverdueSeconds)
	gauge("switchboard_replay_history_events", "Recent events kept in memory to replay resuming subscribers.", src.ReplayHistoryEvents)
	gauge("switchboard_replay_history_bytes", "Estimated memory of the events kept to replay resuming subscribers.", src.ReplayHistoryBytes)
	for by, f := range map[string]func() float64{"compiled": src.RendersCompiled, "executor": src.RendersExecutor} {
		if f != nil {
			m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "switchboard_event_renders_total",
				Help:        "Subscription events rendered, once per group of identical subscriptions, by the compiled renderer or by gqlgen's executor (operations or events the renderer does not know).",
				ConstLabels: prometheus.Labels{"by": by},
			}, f))
		}
	}
	if src.StatusCounts != nil {
		m.registry.MustRegister(&statusCollector{src.StatusCounts})
	}
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// ObserveHTTP records one request.
func (m *Metrics) ObserveHTTP(route string, code int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, codeLabel(code)).Inc()
	m.httpSeconds.WithLabelValues(route).Observe(d.Seconds())
}

// ObserveRefresh records a token refresh outcome.
func (m *Metrics) ObserveRefresh(provider, class string) {
	m.refreshOutcomes.WithLabelValues(provider, class).Inc()
}

// Refused records one refusal by the named limit. A nil *Metrics records
// nothing.
func (m *Metrics) Refused(limit string) {
	if m == nil {
		return
	}
	m.limitRefusals.WithLabelValues(limit).Inc()
}

// ObserveOAuthRefusal records a refused OAuth start link or callback
// (switchboard.Service.AuthRefused).
func (m *Metrics) ObserveOAuthRefusal(step, reason string) {
	m.oauthRefusals.WithLabelValues(step, reason).Inc()
}

// ObserveLimitRefusal records a GraphQL document refused by a limit.
func (m *Metrics) ObserveLimitRefusal(limit string) {
	m.graphqlRefusals.WithLabelValues(limit).Inc()
}

func codeLabel(code int) string {
	const digits = "0123456789"
	if code < 100 || code > 999 {
		return "other"
	}
	return string([]byte{digits[code/100], digits[code/10%10], digits[code%10]})
}

// Store wraps a switchboard.Store to time commits.
type Store struct {
	switchboard.Store
	M *Metrics
}

// Commit times the wrapped Commit.
func (s Store) Commit(ctx context.Context, c switchboard.Change) (*switchboard.Event, error) {
	start := time.Now()
	ev, err := s.Store.Commit(ctx, c)
	outcome := "ok"
	switch {
	case err != nil && switchboard.ErrorCode(err) == switchboard.EINTERNAL:
		outcome = "error"
	case err != nil:
		outcome = "refused"
	case ev == nil:
		outcome = "unchanged"
	}
	s.M.commitSeconds.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return ev, err
}

type statusCollector struct {
	counts func(context.Context) (map[switchboard.Status]uint64, error)
}

var statusDesc = prometheus.NewDesc("switchboard_integrations", "Integrations by status, across workspaces.", []string{"status"}, nil)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- statusDesc }

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(statusDesc, err)
		return
	}
	for _, st := range []switchboard.Status{switchboard.StatusConnected, switchboard.StatusReconnectRequired, switchboard.StatusError, switchboard.StatusDisconnected} {
		ch <- prometheus.MustNewConstMetric(statusDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}
