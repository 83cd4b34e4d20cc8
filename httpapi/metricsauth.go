package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/bont/switchboard/metrics"
)

// metricsHandler serves the Prometheus metrics, to requests that carry
// token as a bearer token when token is not empty. The metrics hold
// aggregates over every workspace (counts by status, by provider), not any
// workspace's data, but they are the operator's, not the tenants'.
func metricsHandler(m *metrics.Metrics, token string) http.Handler {
	h := m.Handler()
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "/metrics needs the scrape token (SWITCHBOARD_METRICS_TOKEN) as a bearer token.", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
