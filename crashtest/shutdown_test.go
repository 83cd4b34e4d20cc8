package crashtest

import (
	"errors"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestGracefulShutdownUnderLoad sends SIGTERM while writers and a
// subscriber are busy: the process exits cleanly, the subscriber is told
// 1001 (going away), and after a restart the subscriber resumes and finds
// every acknowledged mutation.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary")
	}
	bin := gatewayBinary(t)
	dir, addr := t.TempDir(), freeAddr(t)
	g := start(t, bin, dir, addr)
	c := &client{base: g.base, token: g.token}
	id := c.connect(t, "ada@sandbox.test")

	var mu sync.Mutex
	acked := map[uint64]string{}
	seen := map[uint64]seenEvent{}
	var last uint64
	follow := func(ws *subscriber) chan error {
		done := make(chan error, 1)
		go func() {
			done <- ws.each(func(rev uint64, ev seenEvent) error {
				mu.Lock()
				defer mu.Unlock()
				if rev <= last {
					return errors.New("revision out of order or repeated: " + strconv.FormatUint(rev, 10))
				}
				seen[rev], last = ev, rev
				return nil
			})
		}()
		return done
	}
	subDone := follow(c.subscribe(t, 0))

	stop := workers(8, func(w, i int) {
		v := strconv.Itoa(5 + (w*150+i)%1400)
		if rev, ok := c.configure(id, v); ok {
			mu.Lock()
			acked[rev] = v
			mu.Unlock()
		}
	})
	time.Sleep(500 * time.Millisecond)
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exit:
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	stop()
	if code := g.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d; want 0", code)
	}
	err := <-subDone
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("subscriber: got %v; want close 1001", err)
	}

	g = start(t, bin, dir, addr)
	mu.Lock()
	from := last
	mu.Unlock()
	ws := c.subscribe(t, from)
	subDone = follow(ws)
	catchUp(t, &mu, &last, g.revision(t))
	ws.close()
	<-subDone
	mu.Lock()
	defer mu.Unlock()
	for rev, v := range acked {
		if ev, ok := seen[rev]; !ok || ev.value != v {
			t.Errorf("acknowledged revision %d (%s): subscriber saw %+v, %v", rev, v, ev, ok)
		}
	}
	t.Logf("graceful shutdown: %d mutations acknowledged, all seen by the resumed subscriber", len(acked))
	g.stop(t, syscall.SIGTERM)
}
