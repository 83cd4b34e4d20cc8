package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// benchConfigureMutation is what the load command's mutations scenario
// sends.
const benchConfigureMutation = `mutation($id: ID!, $v: String!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: $v}]}) { revision } }`

// startWith20Settings starts a dev gateway whose demo workspace holds 20
// connected integrations of custom providers that have the
// sync_interval_minutes setting, as the load command's gateway does.
func startWith20Settings(b *testing.B) (*Main, []string) {
	b.Helper()
	dir := b.TempDir()
	file := writeBenchProviders(b, dir, "mut", 20, `, settings: [{key: sync_interval_minutes, label: Sync interval, type: INTEGER, default: "15", min: 5, max: 1440}]`)
	m := mustStart(b, dir, func(m *Main) { m.Config.ProvidersFile = file })
	ctx := context.Background()
	now := time.Now().UTC()
	ids := make([]string, 20)
	for i := range ids {
		prov := fmt.Sprintf("mut%02d", i)
		id := fmt.Sprintf("int_mut%02d", i)
		ids[i] = id
		_, err := m.store.Commit(ctx, switchboard.Change{WorkspaceID: DemoWorkspaceID, IntegrationID: id, Create: true,
			Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
				return &switchboard.Integration{ID: id, WorkspaceID: DemoWorkspaceID, ProviderID: prov, Category: switchboard.CategoryOther,
					Status: switchboard.StatusConnected, StatusReason: switchboard.ReasonAuthorized, Generation: 1,
					Account:       &switchboard.Account{ID: "acct1", Name: "Ada", Email: "ada@sandbox.test"},
					GrantedScopes: []string{"contacts.read"}, ConnectedAt: &now}, switchboard.EventConnected, nil
			}})
		if err != nil {
			b.Fatal(err)
		}
	}
	return m, ids
}

// BenchmarkConfigureHTTPHandler is the load command's durable mutation
// (configureIntegration of one setting to a new value, so every call
// commits and publishes an event) through the gateway's whole HTTP
// handler in process: authentication, limits, metrics, gqlgen's POST
// transport, the resolver, the service and the bbolt commit through
// DB.Batch with its fsync. 64 goroutines per CPU share 20 integrations,
// so commits batch as they do under the load command's 256 clients; there
// is no network.
//
//	go test -run '^$' -bench BenchmarkConfigureHTTPHandler -benchmem -cpu 2 .
func BenchmarkConfigureHTTPHandler(b *testing.B) {
	m, ids := startWith20Settings(b)
	h := m.server.Handler
	var seq atomic.Int64
	do := func(w *discardWriter, body *bytes.Buffer) {
		i := seq.Add(1)
		body.Reset()
		body.WriteString(`{"query":`)
		q, _ := json.Marshal(benchConfigureMutation)
		body.Write(q)
		fmt.Fprintf(body, `,"variables":{"id":%q,"v":"%d"}}`, ids[i%int64(len(ids))], 5+i%1436)
		req, _ := http.NewRequest("POST", "/graphql", io.NopCloser(bytes.NewReader(body.Bytes())))
		req.RemoteAddr = "127.0.0.1:1"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+m.DemoToken)
		w.status, w.n = 0, 0
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	w := &discardWriter{h: http.Header{}}
	var body bytes.Buffer
	do(w, &body)
	if w.status != http.StatusOK {
		b.Fatalf("got %d", w.status)
	}
	rec := httptestRecorder(b, h, m.DemoToken, ids[0])
	if !strings.Contains(rec, `"revision"`) || strings.Contains(rec, `"errors"`) {
		b.Fatalf("got %s", rec)
	}
	rev0, err := m.store.Revision(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(64)
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		var body bytes.Buffer
		for pb.Next() {
			do(w, &body)
			if w.status != http.StatusOK {
				b.Errorf("got %d", w.status)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "mutations/s")
	// The process's CPU time (user and system, every goroutine and the
	// collector) per mutation: with the batch delay bounding the rate in
	// process, this is the figure that says what a mutation costs.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	rev, err := m.store.Revision(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	// Two mutations setting an integration to the same value commit once;
	// values repeat only 7,180 calls apart, so nearly every call commits.
	if got := rev - rev0; got < uint64(b.N)*99/100 {
		b.Fatalf("%d commits for %d mutations", got, b.N)
	}
}

// processCPU is the user and system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// httptestRecorder runs one configure mutation and returns its body.
func httptestRecorder(b *testing.B, h http.Handler, token, id string) string {
	body, _ := json.Marshal(map[string]any{"query": benchConfigureMutation, "variables": map[string]string{"id": id, "v": strconv.Itoa(1440)}})
	req := httptest.NewRequest("POST", "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Body.String()
}
