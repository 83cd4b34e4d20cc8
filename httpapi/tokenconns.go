package httpapi

import (
	"context"
	"sync"
	"time"
)

// tokenConns tracks websockets by the API token they were opened with, so
// that revoking (or deleting) a token closes them at once with 4403, and a
// token's expiry closes them when it comes. It also caps the sockets of a
// token and of a workspace.
type tokenConns struct {
	close func(ctx context.Context, code int, reason string) bool
	// Caps; <= 0: none.
	maxPerToken, maxPerWorkspace int

	mu         sync.Mutex
	conns      map[string]map[*tokenConn]struct{}
	workspaces map[string]int
}

type tokenConn struct{ ctx context.Context }

// add tracks the websocket of ctx (the connection's context, alive while
// the connection is) until ctx ends or the token expires. It holds no
// goroutine: context.AfterFunc and a runtime timer do the waiting. When
// the token or the workspace already has its cap of sockets, it tracks
// nothing and returns the limit (LimitSocketsPerToken,
// LimitSocketsPerWorkspace); "" otherwise.
func (t *tokenConns) add(ctx context.Context, tokenID, workspaceID string, expiresAt *time.Time) (refused string) {
	tc := &tokenConn{ctx: ctx}
	t.mu.Lock()
	switch {
	case t.maxPerToken > 0 && len(t.conns[tokenID]) >= t.maxPerToken:
		refused = LimitSocketsPerToken
	case t.maxPerWorkspace > 0 && t.workspaces[workspaceID] >= t.maxPerWorkspace:
		refused = LimitSocketsPerWorkspace
	}
	if refused != "" {
		t.mu.Unlock()
		return refused
	}
	if t.conns == nil {
		t.conns = map[string]map[*tokenConn]struct{}{}
		t.workspaces = map[string]int{}
	}
	if t.conns[tokenID] == nil {
		t.conns[tokenID] = map[*tokenConn]struct{}{}
	}
	t.conns[tokenID][tc] = struct{}{}
	t.workspaces[workspaceID]++
	t.mu.Unlock()
	var timer *time.Timer
	if expiresAt != nil {
		timer = time.AfterFunc(time.Until(*expiresAt), func() {
			t.close(ctx, 4403, "Forbidden: the API token expired")
		})
	}
	context.AfterFunc(ctx, func() {
		if timer != nil {
			timer.Stop()
		}
		t.mu.Lock()
		delete(t.conns[tokenID], tc)
		if len(t.conns[tokenID]) == 0 {
			delete(t.conns, tokenID)
		}
		if t.workspaces[workspaceID]--; t.workspaces[workspaceID] <= 0 {
			delete(t.workspaces, workspaceID)
		}
		t.mu.Unlock()
	})
	return ""
}

// revoked closes every websocket opened with one of ids.
func (t *tokenConns) revoked(ids []string) {
	var ctxs []context.Context
	t.mu.Lock()
	for _, id := range ids {
		for tc := range t.conns[id] {
			ctxs = append(ctxs, tc.ctx)
		}
	}
	t.mu.Unlock()
	for _, ctx := range ctxs {
		t.close(ctx, 4403, "Forbidden: the API token was revoked")
	}
}
