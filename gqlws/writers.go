package gqlws

import (
	"runtime"
	"sync"
)

// writers runs the drains of a transport's sockets on a few goroutines:
// as many as there are CPUs, each writing one item of the next socket in
// line and putting the socket back at the end of the line if it has more,
// and ending when no socket is left. A socket
// at rest thus has no writer, and a fan-out to many sockets does not start
// a goroutine per socket (a fresh goroutine starts on the runtime's
// smallest stack and has to grow it to run gqlgen and gorilla's write
// path, which cost more than the write itself).
//
// A writer whose socket cannot take its bytes (a client that stopped
// reading) would hold up every socket behind it until the write deadline.
// The socket tells the writer before it waits (Conn.OnBlockingWrite):
// the writer then no longer counts as running, and a new
// writer starts for the sockets waiting, if any.
type writers struct {
	mu      sync.Mutex
	queue   []*conn // sockets waiting for a writer, taken from head
	head    int
	running int // writers not waiting on a socket
	limit   int
}

// start drains c on a writer: a new one while fewer than the limit run,
// else the next one free.
func (w *writers) start(c *conn) {
	w.mu.Lock()
	if w.limit == 0 {
		w.limit = runtime.GOMAXPROCS(0)
	}
	if w.running < w.limit {
		w.running++
		w.mu.Unlock()
		go w.work(c)
		return
	}
	w.queue = append(w.queue, c)
	w.mu.Unlock()
}

// next takes the next waiting socket, or nil.
func (w *writers) nextLocked() *conn {
	if w.head == len(w.queue) {
		return nil
	}
	c := w.queue[w.head]
	w.queue[w.head] = nil
	w.head++
	if w.head == len(w.queue) {
		// Drained: let go of the backing array.
		w.queue, w.head = nil, 0
	}
	return c
}

func (w *writers) work(c *conn) {
	for c != nil {
		more := c.round()
		w.mu.Lock()
		if more {
			w.queue = append(w.queue, c)
		}
		c = w.nextLocked()
		if c == nil {
			w.running--
		}
		w.mu.Unlock()
	}
}

// blocking is called before a write waits for its socket: the writer stops
// counting as running, and the next waiting socket gets a writer of its
// own if the others are all busy.
func (w *writers) blocking() {
	w.mu.Lock()
	w.running--
	var c *conn
	if w.running < w.limit {
		if c = w.nextLocked(); c != nil {
			w.running++
		}
	}
	w.mu.Unlock()
	if c != nil {
		go w.work(c)
	}
}

// unblocked is called when that write has returned.
func (w *writers) unblocked() {
	w.mu.Lock()
	w.running++
	w.mu.Unlock()
}
