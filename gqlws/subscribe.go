package gqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/bont/switchboard/internal/textcut"
)

type sub struct {
	c      *conn
	id     string
	ctx    context.Context
	cancel context.CancelFunc
	prefix []byte // {"id":"…","type":"next","payload":

	// Set before started; then read-only.
	responses graphql.ResponseHandler
	fast      Renderer // nil: every item through responses
	src       source
	group     *group
	release   func() // ends the source; nil when its context does

	// mu of the conn:
	started bool // responses is set; notifications may queue it
	early   bool // notified before started
	queued  bool // in c.ready
	stopped bool // the client completed it: stop sent the complete
}

// end cancels the subscription's context and ends its source.
func (s *sub) end() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.release != nil {
		s.release()
	}
}

type pumpKey struct{}

// Notifier returns the function an event source must call after each item
// it queues for the poll function later handed to AttachPoll, and after it
// ends. ok is false when ctx is not a subscription served by this
// transport.
func Notifier(ctx context.Context) (notify func(), ok bool) {
	s, ok := ctx.Value(pumpKey{}).(*sub)
	if !ok {
		return nil, false
	}
	return s.notify, true
}

// subscribe starts operation id. The resolver runs here, while the reader
// waits:
// for the broker that is registering and reading the first replay page.
func (c *conn) subscribe(id string, payload json.RawMessage) bool {
	c.mu.Lock()
	dup := c.findLocked(id) != nil
	full := c.t.MaxSubscriptions > 0 && len(c.subs) >= c.t.MaxSubscriptions
	c.mu.Unlock()
	if dup {
		c.close(4409, "Subscriber for "+textcut.Bytes(id, 64)+" already exists")
		return false
	}
	if full {
		c.sendError(id, &gqlerror.Error{
			Message:    "Too many subscriptions on this connection; complete one first or open another connection.",
			Extensions: map[string]any{"code": "LIMIT_EXCEEDED", "limit": c.t.MaxSubscriptions},
		})
		return true
	}
	if c.t.Admit != nil {
		if err := c.t.Admit(c.ctx); err != nil {
			c.sendError(id, toGQLError(err))
			return true
		}
	}

	start := graphql.Now()
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil {
		c.sendError(id, &gqlerror.Error{Message: "invalid json"})
		c.write(outMessage{ID: id, Type: c.proto.complete})
		return true
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	// params.Headers stays nil: no resolver reads OperationContext.Headers
	// (authentication is connection_init's), and keeping the upgrade
	// request's headers would pin them for the socket's life.

	ctx := graphql.StartOperationTrace(c.ctx)
	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.sendError(id, resp.Errors...)
		} else {
			c.sendResponse(id, &graphql.Response{Errors: errs})
		}
		c.write(outMessage{ID: id, Type: c.proto.complete})
		return true
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	ctx, cancel := context.WithCancel(ctx)
	s := &sub{c: c, id: id, cancel: cancel, prefix: c.nextPrefix(id)}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()

	if rc.Operation.Operation != ast.Subscription {
		// Queries and mutations over the socket: one result, written by a
		// goroutine that ends with it.
		go c.runOnce(s, ctx, rc)
		return true
	}

	responses, ctx := c.exec.DispatchOperation(context.WithValue(ctx, pumpKey{}, s), rc)
	// The timings and extension stats (the complexity limit's) served
	// validation and are not read again per event; a subscription keeps
	// its operation context for its whole life, so let them go. Written
	// before started is set under c.mu, so the drain sees it.
	rc.Stats = graphql.Stats{}
	s.ctx = ctx
	s.responses = responses
	if s.src == nil {
		// The resolver failed (a one-shot error response) or does not
		// hand its source over: gqlgen's loop, in a goroutine.
		go c.runOnce(s, ctx, nil)
		return true
	}
	if c.grouped {
		// The group renders with the executor of the member that made
		// it. Any other member only polls its own source: gqlgen's state
		// for its operation (operation and field contexts, arguments,
		// collected fields, the context layers) is let go, which is most
		// of what a subscription costs at rest.
		g, exec := c.t.groups.join(c.viewer+"\x00"+operationKey(rc), s.src, responses, ctx, c.t.compile(rc))
		if exec || s.src.share(g.exec.src) {
			s.group = g
			s.ctx, s.responses = nil, nil
			if s.release != nil {
				// Nothing runs under this subscription's context any
				// more (the group's executor has a copy without its
				// cancellation) and its source ends by release:
				// cancelling it now detaches it from the connection's.
				s.cancel()
				s.cancel = nil
			}
		} else {
			c.t.groups.leave(g)
		}
	}
	if s.group == nil && c.t.Compile != nil {
		s.fast = c.t.Compile(ctx, rc)
	}
	c.mu.Lock()
	s.started = true
	if s.early {
		c.queueLocked(s)
	}
	c.mu.Unlock()
	return true
}

// runOnce serves an operation the gqlgen way: call the response handler
// until it ends. rc is set when the operation is yet to be dispatched.
func (c *conn) runOnce(s *sub, ctx context.Context, rc *graphql.OperationContext) {
	defer func() {
		if r := recover(); r != nil {
			err := graphql.GetOperationContext(ctx).Recover(ctx, r)
			c.sendError(s.id, toGQLError(err))
		}
		c.mu.Lock()
		c.removeLocked(s)
		skip := s.stopped || c.closed
		c.mu.Unlock()
		if !skip && c.ctx.Err() == nil {
			c.write(outMessage{ID: s.id, Type: c.proto.complete})
		}
		s.cancel()
	}()
	responses := s.responses
	if rc != nil {
		responses, ctx = c.exec.DispatchOperation(ctx, rc)
	}
	for {
		resp := responses(ctx)
		if resp == nil {
			return
		}
		c.sendResponse(s.id, resp)
	}
}

// finish ends a subscription whose source ended.
func (c *conn) finish(s *sub) {
	c.mu.Lock()
	skip := s.stopped || c.closed
	c.mu.Unlock()
	if !skip && c.ctx.Err() == nil {
		if err := s.src.ended(); err != nil {
			// The source ended for a reason the client should hear:
			// the socket closes with it.
			c.close(closeCode(err, 1011, "Internal error"))
		}
	}
	c.mu.Lock()
	c.removeLocked(s)
	skip = s.stopped || c.closed
	c.mu.Unlock()
	s.end()
	if s.group != nil {
		c.t.groups.leave(s.group)
	}
	if !skip && c.ctx.Err() == nil {
		c.write(outMessage{ID: s.id, Type: c.proto.complete})
	}
}

func (c *conn) stop(id string) {
	c.mu.Lock()
	s := c.findLocked(id)
	if s != nil {
		c.removeLocked(s)
		s.stopped = true
	}
	c.mu.Unlock()
	if s != nil {
		s.end()
		// As gqlgen does, confirm with complete; sent here, in the
		// reader, so it precedes anything of a later subscription that
		// reuses the id.
		c.write(outMessage{ID: id, Type: c.proto.complete})
	}
}

func (c *conn) sendError(id string, errs ...*gqlerror.Error) {
	var payload any = errs
	if c.proto.legacy && len(errs) > 0 {
		// graphql-ws sends one error object.
		payload = errs[0]
	}
	c.write(outMessage{ID: id, Type: c.proto.error, Payload: payload})
}

func toGQLError(err error) *gqlerror.Error {
	var g *gqlerror.Error
	if errors.As(err, &g) {
		return g
	}
	g = &gqlerror.Error{}
	if err != nil {
		g.Message = err.Error()
	}
	return g
}

func (c *conn) sendResponse(id string, resp *graphql.Response) {
	c.write(outMessage{ID: id, Type: c.proto.next, Payload: resp})
}

func (c *conn) nextPrefix(id string) []byte {
	typ := c.proto.next
	b := make([]byte, 0, len(id)+40)
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, id)
	b = append(b, `,"type":"`...)
	b = append(b, typ...)
	b = append(b, `","payload":`...)
	return b
}

// findLocked returns the running subscription id, or nil.
func (c *conn) findLocked(id string) *sub {
	for _, s := range c.subs {
		if s.id == id {
			return s
		}
	}
	return nil
}

// removeLocked takes s out of the running subscriptions, if it is there.
func (c *conn) removeLocked(s *sub) {
	for i, x := range c.subs {
		if x == s {
			last := len(c.subs) - 1
			c.subs[i] = c.subs[last]
			c.subs[last] = nil
			c.subs = c.subs[:last]
			if last == 0 {
				c.subs = nil
			}
			return
		}
	}
}

// String is for debugging.
func (s *sub) String() string { return fmt.Sprintf("subscription %q", s.id) }
