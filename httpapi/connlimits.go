package httpapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/bont/switchboard/gqlws"
	"github.com/bont/switchboard/switchboard"
)

// Caps on websockets; zero in Options means these, negative means none.
// A settings page holds one socket per open tab and automation a few, so
// none of them comes near.
const (
	// Sockets from one client address that have not been acknowledged
	// (no connection_init yet, or one still being checked). Each lives at
	// most WebsocketInitTimeout.
	DefaultMaxPendingPerAddress = 50
	// Acknowledged sockets per API token and per workspace.
	DefaultMaxSocketsPerToken     = 100
	DefaultMaxSocketsPerWorkspace = 1000
)

// Websocket close codes of the caps. 4429 is graphql-transport-ws's "too
// many" (its own use: a second connection_init); clients of the graphql-ws
// library do not retry it, which is what a cap wants.
const CloseTooMany = 4429

// The label values of switchboard_limit_refusals_total
// (metrics.Metrics.Refused).
const (
	LimitTokenRate           = "token_rate"          // a request or websocket operation over the token's rate
	LimitCallbackRate        = "callback_rate"       // an OAuth callback over the address's rate
	LimitPendingPerAddress   = "pending_per_address" // an unacknowledged socket over the address's cap
	LimitSocketsPerToken     = "sockets_per_token"
	LimitSocketsPerWorkspace = "sockets_per_workspace"
	LimitBodyTimeout         = "body_timeout" // a GraphQL request body not received within the server's read timeout
	LimitBodySize            = "body_size"    // a GraphQL request body over MaxBodyBytes
)

func capOr(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

func (o Options) refused(limit string) {
	o.Metrics.Refused(limit)
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(wait float64) int {
	return max(1, int(math.Ceil(wait)))
}

// admitOperation is gqlws's Admit: every operation a websocket starts
// (query, mutation or subscription) takes one request from its token's
// rate limiter, the very one HTTP requests take from. A refused operation
// gets an error for its id; the socket lives on, as an HTTP client that
// got a 429 keeps its connection.
func (o Options) admitOperation(ctx context.Context) error {
	p := switchboard.PrincipalFromContext(ctx)
	if p == nil {
		return nil
	}
	ok, wait := o.tokenLimits.allow(p.TokenID)
	if ok {
		return nil
	}
	o.refused(LimitTokenRate)
	secs := retryAfterSeconds(wait.Seconds())
	return &gqlerror.Error{
		Message:    fmt.Sprintf("Too many requests with this API token; retry after %d seconds.", secs),
		Extensions: map[string]any{"code": CodeRateLimited, "retryAfter": secs},
	}
}

// pendingSockets counts, per client address, the websockets that have not
// been acknowledged. It is gqlws's Pending.
type pendingSockets struct {
	max     int // <= 0: no cap
	refused func()

	mu sync.Mutex
	n  map[string]int
}

func (p *pendingSockets) open(r *http.Request) (func(), error) {
	if p == nil || p.max <= 0 {
		return nil, nil
	}
	addr := clientIP(r)
	p.mu.Lock()
	if p.n[addr] >= p.max {
		p.mu.Unlock()
		if p.refused != nil {
			p.refused()
		}
		return nil, &gqlws.CloseError{Code: CloseTooMany, Reason: "Too many unauthenticated connections from this address",
			Message: "too many connections from this address that have not sent connection_init"}
	}
	p.n[addr]++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.n[addr]--; p.n[addr] <= 0 {
				delete(p.n, addr)
			}
			p.mu.Unlock()
		})
	}, nil
}
