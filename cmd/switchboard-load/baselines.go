package main

// The baselines: small servers of the load command's own, started as
// child processes of the same binary (`switchboard-load baseline KIND`),
// so each has its own RSS and goroutines to measure. None is part of the
// gateway.
//
//	bare    gorilla websockets, acks every socket, writes one pre-serialized
//	        `next` message per subscription from one goroutine per CPU; no
//	        GraphQL at all; replays its last 10,000 events, pre-serialized,
//	        to a subscribe with variables.after (the resume scenario)
//	gqlgen  stock gqlgen: handler.New, its default websocket transport
//	        (coder/websocket), a channel per subscriber (stockgql/), the
//	        last 10,000 events kept in memory for afterRevision
//	list    plain net/http handler serving the gateway's integrations
//	        response from memory
//	batch   plain net/http JSON handler doing one bbolt DB.Batch write per
//	        request, acknowledged after fsync: the record read, changed and
//	        written back, an event embedding it appended to a changelog and
//	        an audit entry appended, both with retention, each of the sizes
//	        the gateway's own commit writes (-record-bytes, -event-bytes,
//	        -audit-bytes, -retain; all 0: the small write, two values of
//	        about 60 bytes)

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bont/switchboard/cmd/switchboard-load/stockgql"
	"github.com/gorilla/websocket"
	bbolt "go.etcd.io/bbolt"
)

func runBaseline(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("baseline: want bare, gqlgen, list or batch")
	}
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	body := fs.String("body", "", "list: file holding the response body to serve")
	dir := fs.String("dir", "", "batch: directory for the bbolt file")
	var sizes writeSizes
	fs.IntVar(&sizes.Record, "record-bytes", 0, "batch: size of the record written back (0: just its settings)")
	fs.IntVar(&sizes.Event, "event-bytes", 0, "batch: size of the changelog entry, which embeds the record (0: the record itself)")
	fs.IntVar(&sizes.Audit, "audit-bytes", 0, "batch: size of an audit entry (0: none)")
	fs.IntVar(&sizes.Retain, "retain", 0, "batch: changelog and audit entries kept, the oldest deleted beyond (0: all)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	raiseFDLimit()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "go_goroutines %d\ngo_memstats_heap_alloc_bytes %d\n", runtime.NumGoroutine(), ms.HeapAlloc)
	})
	switch args[0] {
	case "bare":
		b := newBare()
		mux.HandleFunc("GET /graphql", b.serveWS)
		mux.HandleFunc("POST /publish", b.publish)
	case "gqlgen":
		mux.Handle("/graphql", stockgql.Handler())
	case "list":
		data, err := os.ReadFile(*body)
		if err != nil {
			return err
		}
		mux.HandleFunc("POST /graphql", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(data)
		})
	case "batch":
		h, err := newBatchHandler(*dir, sizes)
		if err != nil {
			return err
		}
		defer h.db.Close()
		mux.HandleFunc("POST /configure", h.serve)
	default:
		return fmt.Errorf("baseline: unknown kind %q", args[0])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("LISTEN %s\n", ln.Addr())
	return http.Serve(ln, mux)
}

// ---- bare-write ----

type bareConn struct {
	c   *websocket.Conn
	ids []string // subscription ids, in order
}

type bare struct {
	up     websocket.Upgrader
	mu     sync.Mutex
	conns  map[*bareConn]struct{}
	rev    int
	events chan []byte // each event's payload, {"data":…}
	// history is the payloads of revisions rev-len(history)+1 … rev; the
	// last stockgql.Retained are replayed to a subscribe with
	// variables.after, pre-serialized like live events.
	history [][]byte
}

func newBare() *bare {
	b := &bare{
		up:     websocket.Upgrader{Subprotocols: []string{"graphql-transport-ws"}, CheckOrigin: func(*http.Request) bool { return true }},
		conns:  map[*bareConn]struct{}{},
		events: make(chan []byte, 1024),
	}
	go b.dispatch()
	return b
}

// serveWS acks connection_init and records subscribe ids; one goroutine
// per socket reads (gorilla needs a reader for control frames).
func (b *bare) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := b.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	bc := &bareConn{c: c}
	defer func() {
		b.mu.Lock()
		delete(b.conns, bc)
		b.mu.Unlock()
		c.Close()
	}()
	for {
		var m struct {
			ID, Type string
			Payload  struct {
				Variables struct {
					After *string
				}
			}
		}
		if err := c.ReadJSON(&m); err != nil {
			return
		}
		switch m.Type {
		case "connection_init":
			b.mu.Lock()
			err = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_ack"}`))
			b.conns[bc] = struct{}{}
			b.mu.Unlock()
		case "subscribe":
			b.mu.Lock()
			if after := m.Payload.Variables.After; after != nil {
				err = b.replay(c, m.ID, *after)
			}
			bc.ids = append(bc.ids, m.ID)
			b.mu.Unlock()
		case "ping":
			b.mu.Lock()
			err = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
			b.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (b *bare) publish(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.rev++
	rev := b.rev
	at := time.Now().UTC().Format(time.RFC3339Nano)
	payload := fmt.Appendf(nil, `{"data":{"integrationEvents":{"revision":"%d","at":%q,"kind":"CONFIGURED","integration":{"id":"int_0123456789abcdef","status":"CONNECTED","badge":{"label":"Connected","tone":"SUCCESS"}}}}}`, rev, at)
	if len(b.history) == 2*stockgql.Retained { // amortized: drop the older half at once
		b.history = append(b.history[:0], b.history[stockgql.Retained:]...)
	}
	b.history = append(b.history, payload)
	b.mu.Unlock()
	b.events <- payload
	fmt.Fprintf(w, `{"revision":"%d"}`, rev)
}

// replay writes the retained events after revision after to c, one next
// message each, with b.mu held so no live event comes between.
func (b *bare) replay(c *websocket.Conn, id, after string) error {
	a, err := strconv.Atoi(after)
	kept := b.history[max(0, len(b.history)-stockgql.Retained):]
	first := b.rev - len(kept) + 1
	if err != nil || a < first-1 || a > b.rev {
		return c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"id":%q,"type":"error","payload":[{"message":"afterRevision %s is not retained"}]}`, id, after))
	}
	prefix := fmt.Appendf(nil, `{"id":%q,"type":"next","payload":`, id)
	var buf []byte
	for _, p := range kept[a-first+1:] {
		buf = append(append(append(buf[:0], prefix...), p...), '}')
		if err := c.WriteMessage(websocket.TextMessage, buf); err != nil {
			return err
		}
	}
	return nil
}

// dispatch writes each event to every subscription, one event at a time,
// from one goroutine per CPU. The message for an id is serialized once.
func (b *bare) dispatch() {
	for payload := range b.events {
		prepared := map[string]*websocket.PreparedMessage{}
		msg := func(id string) *websocket.PreparedMessage {
			if p := prepared[id]; p != nil {
				return p
			}
			data := append(append(fmt.Appendf(nil, `{"id":%q,"type":"next","payload":`, id), payload...), '}')
			p, _ := websocket.NewPreparedMessage(websocket.TextMessage, data)
			prepared[id] = p
			return p
		}
		b.mu.Lock() // held while writing: subscribes wait, as the ids are read
		conns := make([]*bareConn, 0, len(b.conns))
		for c := range b.conns {
			conns = append(conns, c)
			for _, id := range c.ids {
				msg(id)
			}
		}
		n := runtime.NumCPU()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				for j := i; j < len(conns); j += n {
					c := conns[j]
					_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					for _, id := range c.ids {
						if c.c.WritePreparedMessage(prepared[id]) != nil {
							break
						}
					}
				}
			})
		}
		wg.Wait()
		b.mu.Unlock()
	}
}

// ---- durable write ----

type batchHandler struct {
	db    *bbolt.DB
	sizes writeSizes
}

// writeSizes is what one configure writes in the gateway's file, read
// from it after its run (gatewayWriteSizes), so that the baseline does the
// same DB.Batch write: a record of Record bytes, a changelog entry of
// Event bytes embedding it, an audit entry of Audit bytes, and Retain
// entries kept in each log. Zero values give the small write.
type writeSizes struct {
	Record, Event, Audit, Retain int
}

var (
	bucketState     = []byte("state")
	bucketChangelog = []byte("changelog")
	bucketAudit     = []byte("audit")
)

func newBatchHandler(dir string, sizes writeSizes) (*batchHandler, error) {
	db, err := bbolt.Open(filepath.Join(dir, "baseline.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketChangelog, bucketAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	return &batchHandler{db: db, sizes: sizes}, err
}

// padded returns the JSON object fields with a "pad" member added so that
// it is at least n bytes long.
func padded(fields map[string]any, n int) ([]byte, error) {
	data, err := json.Marshal(fields)
	if err != nil || len(data) >= n {
		return data, err
	}
	pad := n - len(data) - len(`,"pad":""`)
	if pad < 0 {
		pad = 0
	}
	fields["pad"] = strings.Repeat("x", pad)
	return json.Marshal(fields)
}

// appendRetained appends v under the bucket's next sequence and deletes
// the entry that falls out of the last retain (0: keeps all).
func appendRetained(b *bbolt.Bucket, v []byte, retain int) (uint64, error) {
	seq, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	if err := b.Put(k[:], v); err != nil {
		return 0, err
	}
	if retain > 0 && seq > uint64(retain) {
		binary.BigEndian.PutUint64(k[:], seq-uint64(retain))
		if err := b.Delete(k[:]); err != nil {
			return 0, err
		}
	}
	return seq, nil
}

// serve decodes {"id","key","value"}, and in one DB.Batch transaction
// reads the record, sets the value, writes it back, appends a changelog
// entry embedding it (its revision) and an audit entry; it answers after
// the commit's fsync.
func (h *batchHandler) serve(w http.ResponseWriter, r *http.Request) {
	var in struct{ ID, Key, Value string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil || in.ID == "" {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	var out struct {
		ID       string            `json:"id"`
		Revision string            `json:"revision"`
		Settings map[string]string `json:"settings"`
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	err := h.db.Batch(func(tx *bbolt.Tx) error {
		st := tx.Bucket(bucketState)
		rec := struct {
			ID       string            `json:"id"`
			Settings map[string]string `json:"settings"`
		}{ID: in.ID, Settings: map[string]string{}}
		if v := st.Get([]byte(in.ID)); v != nil {
			// The small write stores the settings alone.
			var dst any = &rec.Settings
			if h.sizes.Record > 0 {
				dst = &rec
			}
			if err := json.Unmarshal(v, dst); err != nil {
				return err
			}
			if rec.Settings == nil {
				rec.Settings = map[string]string{}
			}
		}
		rec.Settings[in.Key] = in.Value
		var data []byte
		var err error
		if h.sizes.Record > 0 {
			data, err = padded(map[string]any{"id": rec.ID, "settings": rec.Settings, "updatedAt": now}, h.sizes.Record)
		} else {
			data, err = json.Marshal(rec.Settings)
		}
		if err != nil {
			return err
		}
		if err := st.Put([]byte(in.ID), data); err != nil {
			return err
		}
		event := data
		if h.sizes.Event > 0 {
			event, err = padded(map[string]any{"kind": "CONFIGURED", "at": now, "integration": json.RawMessage(data)}, h.sizes.Event)
			if err != nil {
				return err
			}
		}
		seq, err := appendRetained(tx.Bucket(bucketChangelog), event, h.sizes.Retain)
		if err != nil {
			return err
		}
		if h.sizes.Audit > 0 {
			entry, err := padded(map[string]any{"at": now, "action": "configureIntegration", "target": in.ID}, h.sizes.Audit)
			if err != nil {
				return err
			}
			if _, err := appendRetained(tx.Bucket(bucketAudit), entry, h.sizes.Retain); err != nil {
				return err
			}
		}
		out.ID, out.Revision = in.ID, strconv.FormatUint(seq, 10)
		out.Settings = rec.Settings
		return nil
	})
	if err != nil {
		http.Error(w, `{"error":"write failed"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
