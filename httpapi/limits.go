package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Error codes of the limits, besides the domain's.
const (
	CodeRateLimited   = "RATE_LIMITED"
	CodeTooLarge      = "REQUEST_TOO_LARGE"
	CodeDepthExceeded = "DEPTH_LIMIT_EXCEEDED"
)

// limiters is a rate limiter per key (token ID, client IP). Idle
// limiters are dropped after a while: by then they would be full again.
type limiters struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	m         map[string]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	l    *rate.Limiter
	seen time.Time
}

const limiterIdle = 10 * time.Minute

func newLimiters(perSecond float64, burst int) *limiters {
	return &limiters{limit: rate.Limit(perSecond), burst: burst, m: map[string]*limiterEntry{}}
}

// allow takes one event for key; when refused it returns how long to wait.
func (l *limiters) allow(key string) (bool, time.Duration) {
	if l == nil || l.limit <= 0 {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.lastSweep) > time.Minute {
		for k, e := range l.m {
			if now.Sub(e.seen) > limiterIdle {
				delete(l.m, k)
			}
		}
		l.lastSweep = now
	}
	e := l.m[key]
	if e == nil {
		e = &limiterEntry{l: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = e
	}
	e.seen = now
	l.mu.Unlock()

	r := e.l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// tooMany answers 429 with Retry-After in whole seconds (at least 1).
func tooMany(w http.ResponseWriter, wait time.Duration, what string) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeCodeError(w, http.StatusTooManyRequests, CodeRateLimited, fmt.Sprintf("Too many requests %s; retry after %d seconds.", what, secs))
}

// clientIP is the peer's address. Proxies are not trusted: behind one,
// every client shares its limit.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
