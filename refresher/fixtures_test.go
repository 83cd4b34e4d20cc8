package refresher_test

import (
	"context"
	"path"
	"sync"
	"testing"
	"time"

	sb "github.com/bont/switchboard/switchboard"
)

// Copies of small fixtures of the switchboard package's tests.

type modelClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *modelClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *modelClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type pendingAuth struct {
	state   string
	secret  string // the browser's cookie, from the start link
	intent  sb.AuthIntent
	gen     uint64
	started time.Time
}

func pendingOf(t *testing.T, svc *sb.Service, authURL string, intent sb.AuthIntent, gen uint64, now time.Time) pendingAuth {
	t.Helper()
	st, err := svc.BeginAuthorization(context.Background(), path.Base(authURL))
	if err != nil {
		t.Fatalf("start link %s: %v", authURL, err)
	}
	return pendingAuth{st.State, st.BrowserSecret, intent, gen, now}
}
