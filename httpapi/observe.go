package httpapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

// requestInfo travels in a request's context so the layers inside (auth)
// can add what the access log should say.
//
// A websocket's connection_init may be read after the request has been
// logged (gqlws reads in a goroutine of its own), hence the atomic.
type requestInfo struct {
	id        string
	workspace atomic.Pointer[string]
}

func (ri *requestInfo) setWorkspace(ws string) { ri.workspace.Store(&ws) }

func (ri *requestInfo) workspaceID() string {
	if p := ri.workspace.Load(); p != nil {
		return *p
	}
	return ""
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return ri
}

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	if ri := infoFrom(ctx); ri != nil {
		return ri.id
	}
	return ""
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// observe gives every request an id (a sane inbound X-Request-Id, or a new
// one, echoed in the response), logs it, and records its metrics. It logs
// no query string: OAuth callbacks carry one-time codes there.
func (o Options) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		ri := &requestInfo{id: id}
		w.Header().Set("X-Request-Id", id)
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri)))

		d := time.Since(start)
		route := routeOf(r.URL.Path)
		if o.Metrics != nil {
			o.Metrics.ObserveHTTP(route, rec.status, d)
		}
		level := slog.LevelDebug
		switch {
		case rec.status >= 500:
			level = slog.LevelWarn
		case rec.status >= 400 && route != "/healthz" && route != "/readyz":
			level = slog.LevelInfo
		}
		o.Logger.LogAttrs(r.Context(), level, "http request",
			slog.String("request_id", id),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", rec.status),
			slog.Duration("duration", d),
			slog.String("workspace", ri.workspaceID()),
			slog.Bool("websocket", rec.hijacked),
		)
	})
}

// routeOf maps a path to a bounded set of metric labels.
func routeOf(path string) string {
	for _, p := range []string{"/graphql", "/playground", "/oauth/callback", "/oauth/start", "/healthz", "/readyz", "/metrics", "/settings", "/sandbox", "/sync"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return p
		}
	}
	return "other"
}

// recorder remembers the status; it keeps Hijack and Flush working for
// websockets and streaming.
type recorder struct {
	http.ResponseWriter
	status   int
	wrote    bool
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	r.hijacked, r.status = true, http.StatusSwitchingProtocols
	return h.Hijack()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
