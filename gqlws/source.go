package gqlws

import (
	"context"
)

const (
	itemNone = iota
	itemGot
	itemClosed
)

// source is a subscription's event source as the transport sees it.
type source interface {
	// take receives without blocking: itemGot (with the item's cache
	// key), itemNone, or itemClosed.
	take() (key uint64, state int)
	// current is the item take received, for a Renderer; drop lets go
	// of it once rendered.
	current() any
	drop()
	// feed hands the item take received to gqlgen's executor, which
	// receives it on the channel the resolver returned (or, after share,
	// on the group executor's).
	feed()
	// share makes feed send to the channel other's executor reads, and
	// reports whether it could (both sources of one item type).
	share(other source) bool
	// ended runs the resolver's end hook: a non-nil error closes the
	// socket (see AttachPoll).
	ended() error
}

// AttachPoll hands a subscription's source to the transport and returns
// the channel the resolver returns to gqlgen: the transport polls the
// source and feeds the channel itself, so no goroutine waits on either.
// poll returns the next item (ok true), or nothing yet (ok false, more
// true), or the end (ok false, more false: the source has ended and every
// item was taken). The event source calls the function Notifier returns
// after each item it queues and after it ends. Items with equal key
// render to equal results for equal operations and viewers (an event's
// revision). release, when set, is called when the subscription stops
// (complete, the socket's end, a panic): the source then ends without
// watching the subscription's context.
//
// ended, when set, runs once the source has ended and every item was
// written, unless the client completed the subscription or the socket is
// closing. An error it returns closes the socket: with the Code and Reason
// of a *CloseError (a subscriber cut off for falling behind, told to
// resume), else 1011. It should keep no context of the subscription's:
// the transport lets go of that context, and of gqlgen's state for the
// operation, when another subscription of the same group renders for it.
func AttachPoll[T any](ctx context.Context, poll func() (v T, ok, more bool), key func(T) uint64, ended func() error, release func()) <-chan T {
	s, ok := ctx.Value(pumpKey{}).(*sub)
	if !ok {
		return nil
	}
	s.release = release
	ps := &pollSource[T]{poll: poll, slot: make(chan T, 1), key: key, end: ended}
	s.src = ps
	return ps.slot
}

type pollSource[T any] struct {
	poll func() (T, bool, bool)
	slot chan T
	key  func(T) uint64
	end  func() error
	cur  T
}

func (ps *pollSource[T]) take() (uint64, int) {
	v, ok, more := ps.poll()
	switch {
	case ok:
		ps.cur = v
		return ps.key(v), itemGot
	case more:
		return 0, itemNone
	default:
		return 0, itemClosed
	}
}

func (ps *pollSource[T]) current() any { return ps.cur }

func (ps *pollSource[T]) drop() {
	var zero T
	ps.cur = zero
}

func (ps *pollSource[T]) feed() {
	var zero T
	ps.slot <- ps.cur
	ps.cur = zero
}

func (ps *pollSource[T]) share(other source) bool {
	o, ok := other.(*pollSource[T])
	if ok {
		ps.slot = o.slot
	}
	return ok
}

func (ps *pollSource[T]) ended() error {
	if ps.end != nil {
		return ps.end()
	}
	return nil
}
