package gqlws

import (
	"context"
	"encoding/json"

	"github.com/99designs/gqlgen/graphql"
)

// notify queues s on its socket and makes sure a writer will drain it. It
// is called from the broker's publish path: it never blocks.
func (s *sub) notify() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.started {
		s.early = true
		return
	}
	c.queueLocked(s)
}

func (c *conn) queueLocked(s *sub) {
	if s.queued {
		return
	}
	s.queued = true
	c.ready = append(c.ready, s)
	if !c.draining {
		c.draining = true
		c.t.writers.start(c)
	}
}

// step writes the items of the next ready subscription, at most its
// visitLimit of them, and reports whether the socket has more to write;
// when it has not, the socket is no longer draining. A subscription
// stopped by the limit goes back to the end of the ready list.
func (c *conn) step() bool {
	c.mu.Lock()
	if len(c.ready) == 0 {
		c.draining = false
		c.ready = nil
		c.mu.Unlock()
		return false
	}
	s := c.ready[0]
	c.ready[0] = nil
	c.ready = c.ready[1:]
	s.queued = false
	c.mu.Unlock()
	more := c.pump(s, s.visitLimit())
	c.mu.Lock()
	defer c.mu.Unlock()
	if more && !s.queued {
		s.queued = true
		c.ready = append(c.ready, s)
	}
	if len(c.ready) == 0 {
		c.draining = false
		c.ready = nil
		return false
	}
	return true
}

// round is a writer's visit: a few items of each subscription that was
// ready when the visit began (see visitLimit), and whether the socket has
// more to write. A socket with several subscriptions thus gets an event to
// all of them in one visit, while a fan-out of several events still goes
// out event by event across the sockets, which keeps each group's few
// cached payloads useful, and no socket with a backlog holds a writer.
// The socket is corked for the visit, so its frames leave in one write.
func (c *conn) round() bool {
	c.ws.Cork()
	defer func() {
		if err := c.ws.Uncork(); err != nil {
			c.report(err)
		}
	}()
	c.mu.Lock()
	n := len(c.ready)
	c.mu.Unlock()
	more := false
	for range max(n, 1) {
		if more = c.step(); !more {
			break
		}
	}
	return more
}

// soloVisit is how many items a subscription alone in its group (or in
// none) writes per visit: a replaying subscriber's backlog then goes out
// that many frames per write. Members of a larger group write one, so
// that the group's sockets move through events together and its cache of
// groupCacheSize payloads keeps serving them.
const soloVisit = 16

// visitLimit is how many of s's items one visit writes.
func (s *sub) visitLimit() int {
	if s.group == nil || s.group.members.Load() <= 1 {
		return soloVisit
	}
	return 1
}

// pump writes s's items until none is left, or limit were written (0: no
// limit); it reports whether it stopped at the limit.
func (c *conn) pump(s *sub, limit int) (atLimit bool) {
	defer func() {
		if r := recover(); r != nil {
			ctx := s.ctx
			if s.group != nil {
				ctx = s.group.exec.ctx
			}
			err := graphql.GetOperationContext(ctx).Recover(ctx, r)
			c.sendError(s.id, toGQLError(err))
			s.end()
			atLimit = false
		}
	}()
	for n := 0; limit == 0 || n < limit; {
		key, state := s.src.take()
		switch state {
		case itemNone:
			return false
		case itemClosed:
			c.finish(s)
			return false
		}
		n++
		payload := c.render(s, key)
		if payload == nil {
			continue
		}
		if err := c.ws.WriteText(s.prefix, payload, suffix); err != nil {
			c.report(err)
		}
	}
	return true
}

var suffix = []byte("}")

// render runs gqlgen's executor on the item s.src holds, once per group,
// with the group's executor.
func (c *conn) render(s *sub, key uint64) []byte {
	g := s.group
	if g == nil {
		return c.execute(s, s.fast, s.responses, s.ctx)
	}
	if b := g.lookup(key); b != nil {
		return b
	}
	g.renderMu.Lock()
	defer g.renderMu.Unlock()
	if b := g.lookup(key); b != nil {
		return b
	}
	b := c.execute(s, g.exec.fast, g.exec.responses, g.exec.ctx)
	if b != nil {
		g.store(key, b)
	}
	return b
}

// execute renders the item s.src holds: with fast when it can, else with
// gqlgen's executor.
func (c *conn) execute(s *sub, fast Renderer, responses graphql.ResponseHandler, ctx context.Context) []byte {
	if fast != nil {
		if b, ok := fast(nil, s.src.current()); ok {
			s.src.drop()
			if n := c.t.Renders; n != nil {
				n.Compiled.Add(1)
			}
			return b
		}
	}
	if n := c.t.Renders; n != nil {
		n.Executor.Add(1)
	}
	s.src.feed()
	resp := responses(ctx)
	if resp == nil {
		return nil
	}
	b, err := json.Marshal(resp)
	if err != nil {
		c.report(err)
		return nil
	}
	return b
}
