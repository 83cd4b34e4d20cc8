// Package resolvers maps GraphQL fields to the domain service. Each
// resolver is thin: who is asking (from ctx) → one Service call → result.
package resolvers

import (
	"context"
	"errors"
	"fmt"

	"github.com/bont/switchboard/gqlws"
	"github.com/bont/switchboard/switchboard"
)

// Resolver is the root resolver.
type Resolver struct {
	Service *switchboard.Service
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
// reason the client should hear, the transport closes the websocket with
// the code and reason endedBy gives.
func (r *Resolver) stream(ctx context.Context, open func(notify func()) (*switchboard.Subscription, error)) (<-chan *switchboard.Event, error) {
	notify, ok := gqlws.Notifier(ctx)
	if !ok {
		return nil, switchboard.Errorf(switchboard.EINVALID, "Subscriptions are served over a websocket (graphql-transport-ws or graphql-ws).")
	}
	sub, err := open(notify)
	if err != nil {
		return nil, err
	}
	return gqlws.AttachPoll(ctx, func() (*switchboard.Event, bool, bool) {
		ev, more := sub.Poll()
		return ev, ev != nil, more
	}, eventRevision, func() error { return endedBy(sub.Err()) }, sub.End), nil
}

// endedBy is how the websocket closes when the broker ended a
// subscription with err: nil (the subscription ended by the client or the
// socket) keeps it open.
func endedBy(err error) error {
	if err == nil {
		return nil
	}
	var cut *switchboard.CutoffError
	if errors.As(err, &cut) {
		// 1013 "try again later": clients reconnect and resume from the
		// last revision they saw.
		return &gqlws.CloseError{Code: 1013, Reason: fmt.Sprintf("too far behind; resume after revision %d", cut.LastRevision), Message: err.Error()}
	}
	return &gqlws.CloseError{Code: 1011, Reason: switchboard.ErrorMessage(err), Message: err.Error()}
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
