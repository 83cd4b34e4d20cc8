// Package resolvers maps GraphQL fields to the domain service. Each
// resolver is thin: who is asking (from ctx) → one Service call → result.
package resolvers

import (
	"context"

	"github.com/bont/switchboard/gqlws"
	"github.com/bont/switchboard/switchboard"
)

// Resolver is the root resolver.
type Resolver struct {
	Service *switchboard.Service
	// EndSubscription is called when the server ends a subscription for a
	// reason the client should hear (a cut-off slow subscriber); the server
	// closes the websocket with that reason. May be nil.
	EndSubscription func(ctx context.Context, err error)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// stream opens a subscription and hands it to the gqlws transport, which
// polls the broker's queue itself when the broker notifies it: no
// goroutine is involved. When the broker ends the subscription for a
// reason the client should hear (a cut-off), EndSubscription says it.
func (r *Resolver) stream(ctx context.Context, open func(notify func()) (*switchboard.Subscription, error)) (<-chan *switchboard.Event, error) {
	notify, ok := gqlws.Notifier(ctx)
	if !ok {
		return nil, switchboard.Errorf(switchboard.EINVALID, "Subscriptions are served over a websocket (graphql-transport-ws or graphql-ws).")
	}
	sub, err := open(notify)
	if err != nil {
		return nil, err
	}
	// ended gets the context to speak through rather than keeping the
	// subscription's: the transport lets go of that one while the
	// subscription lives.
	ended := func(ctx context.Context) {
		if err := sub.Err(); err != nil && ctx.Err() == nil && r.EndSubscription != nil {
			r.EndSubscription(ctx, err)
		}
	}
	return gqlws.AttachPoll(ctx, func() (*switchboard.Event, bool, bool) {
		ev, more := sub.Poll()
		return ev, ev != nil, more
	}, eventRevision, ended, sub.End), nil
}

func eventRevision(ev *switchboard.Event) uint64 { return ev.Revision }

// once runs a mutation through the service's idempotency keys: with a key,
// a repeat by the same token returns the first result. Without one it just
// runs fn.
func once[T any](ctx context.Context, r *Resolver, key *string, operation string, input any, fn func() (*T, error)) (*T, error) {
	if key == nil || *key == "" {
		return fn()
	}
	out := new(T)
	err := r.Service.Idempotent(ctx, *key, operation, input, out, func() (any, error) { return fn() })
	if err != nil {
		return nil, err
	}
	return out, nil
}
