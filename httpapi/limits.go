package httpapi

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"golang.org/x/time/rate"
)

// Error codes of the limits, besides the domain's.
const (
	CodeRateLimited   = "RATE_LIMITED"
	CodeTooLarge      = "REQUEST_TOO_LARGE"
	CodeDepthExceeded = "DEPTH_LIMIT_EXCEEDED"
)

// depthLimit rejects operations whose selections nest deeper than max,
// before any resolver runs (it is an OperationContextMutator, like
// gqlgen's complexity limit). Fragments count where they are spread.
type depthLimit struct{ max int }

var (
	_ graphql.HandlerExtension        = depthLimit{}
	_ graphql.OperationContextMutator = depthLimit{}
)

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }
func (d depthLimit) MutateOperationContext(ctx context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	if rc.Operation == nil {
		return nil
	}
	if got := depth(rc.Doc, rc.Operation.SelectionSet, d.max+1); got > d.max {
		err := gqlerror.Errorf("The operation nests selections deeper than %d levels.", d.max)
		err.Extensions = map[string]any{"code": CodeDepthExceeded, "limit": d.max}
		return err
	}
	return nil
}

// depth returns the nesting of set, stopping once it exceeds stop (so a
// hostile document costs little).
func depth(doc *ast.QueryDocument, set ast.SelectionSet, stop int) int {
	if stop <= 0 {
		return 0
	}
	best := 0
	for _, s := range set {
		var d int
		switch s := s.(type) {
		case *ast.Field:
			d = 1 + depth(doc, s.SelectionSet, stop-1)
		case *ast.InlineFragment:
			d = depth(doc, s.SelectionSet, stop)
		case *ast.FragmentSpread:
			if f := doc.Fragments.ForName(s.Name); f != nil {
				d = depth(doc, f.SelectionSet, stop)
			}
		}
		best = max(best, d)
		if best >= stop {
			return best
		}
	}
	return best
}

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
