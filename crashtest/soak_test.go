package crashtest

import (
	"bufio"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSoak holds many websockets with churn and mutations for a fixed
// time, then checks goroutines and sockets return to where they started
// and the heap stayed flat.
//
//	SWITCHBOARD_SOAK=10m SWITCHBOARD_SOAK_SOCKETS=5000 go test -v -timeout 30m -run Soak ./crashtest
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary")
	}
	duration := 12 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SWITCHBOARD_SOAK")); err == nil {
		duration = d
	}
	sockets := 1000
	if n, err := strconv.Atoi(os.Getenv("SWITCHBOARD_SOAK_SOCKETS")); err == nil && n > 0 {
		sockets = n
	}
	g := start(t, gatewayBinary(t), t.TempDir(), freeAddr(t))
	defer g.stop(t, syscall.SIGTERM)
	c := &client{base: g.base, token: g.token}
	id := c.connect(t, "ada@sandbox.test")
	base := scrape(t, g)

	var unexpected, opened, churned, mutations, delivered atomic.Int64
	type conn struct {
		ws      *websocket.Conn
		closing atomic.Bool
	}
	var mu sync.Mutex
	live := map[*conn]bool{}
	open := func() {
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
		ws, _, err := d.Dial("ws"+strings.TrimPrefix(g.base, "http")+"/graphql", nil)
		if err != nil {
			unexpected.Add(1)
			t.Logf("dial: %v", err)
			return
		}
		_ = ws.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + g.token}})
		_ = ws.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": `subscription { integrationEvents { revision } }`}})
		cn := &conn{ws: ws}
		mu.Lock()
		live[cn] = true
		mu.Unlock()
		opened.Add(1)
		go func() {
			for {
				var m struct{ Type string }
				if err := ws.ReadJSON(&m); err != nil {
					if !cn.closing.Load() {
						unexpected.Add(1)
						t.Logf("read: %v", err)
					}
					return
				}
				if m.Type == "next" {
					delivered.Add(1)
				}
			}
		}()
	}
	closeOne := func(cn *conn) {
		cn.closing.Store(true)
		_ = cn.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		cn.ws.Close()
	}
	for i := 0; i < sockets; i++ {
		open()
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if _, ok := c.configure(id, strconv.Itoa(5+(w*700+i)%1400)); ok {
					mutations.Add(1)
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			mu.Lock()
			var victims []*conn
			for cn := range live {
				if r.IntN(sockets) < sockets/20 {
					victims = append(victims, cn)
					delete(live, cn)
				}
			}
			mu.Unlock()
			for _, cn := range victims {
				closeOne(cn)
				churned.Add(1)
				open()
			}
		}
	}()
	time.Sleep(duration / 3)
	mid := scrape(t, g)
	time.Sleep(duration - duration/3)
	end := scrape(t, g)
	close(stop)
	wg.Wait()
	mu.Lock()
	for cn := range live {
		closeOne(cn)
	}
	mu.Unlock()

	// Back to rest: no sockets, goroutines where they started.
	deadline := time.Now().Add(20 * time.Second)
	var rest map[string]float64
	for {
		rest = scrape(t, g)
		if rest["switchboard_websockets"] == 0 && rest["go_goroutines"] <= base["go_goroutines"]+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the soak: %v websockets, %v goroutines (at start %v)", rest["switchboard_websockets"], rest["go_goroutines"], base["go_goroutines"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("soak %v: %d sockets held, %d opened, %d churned, %d mutations, %d deliveries; goroutines %v → %v (mid %v) → %v; heap in use %.1f MiB mid, %.1f MiB end",
		duration, sockets, opened.Load(), churned.Load(), mutations.Load(), delivered.Load(),
		base["go_goroutines"], end["go_goroutines"], mid["go_goroutines"], rest["go_goroutines"],
		mid["go_memstats_heap_inuse_bytes"]/(1<<20), end["go_memstats_heap_inuse_bytes"]/(1<<20))
	if n := unexpected.Load(); n > 0 {
		t.Errorf("%d unexpected errors", n)
	}
	// Steady state: the heap at the end is not growing away from the
	// middle of the run (generous, since collection timing varies).
	if end["go_memstats_heap_inuse_bytes"] > 2*mid["go_memstats_heap_inuse_bytes"]+16<<20 {
		t.Errorf("heap grew from %.1f MiB to %.1f MiB during steady churn", mid["go_memstats_heap_inuse_bytes"]/(1<<20), end["go_memstats_heap_inuse_bytes"]/(1<<20))
	}
	if mutations.Load() == 0 || delivered.Load() == 0 {
		t.Error("the soak did no work")
	}
}

// scrape reads the gateway's unlabelled metrics.
func scrape(t *testing.T, g *gateway) map[string]float64 {
	t.Helper()
	resp, err := http.Get(g.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = f
		}
	}
	return out
}
