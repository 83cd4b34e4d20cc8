package httpapi

import (
	"bytes"
	"container/list"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/bont/switchboard/switchboard"
)

// Sizes of the query response cache.
const (
	DefaultQueryCacheBytes = 32 << 20 // all cached responses together
	maxCachedResponse      = 1 << 20  // larger responses are not kept
	maxCachedDocuments     = 1000     // cacheability decisions kept
)

// cacheableFields are the Query fields whose result depends only on the
// workspace's integrations (whose version the store keeps), the viewer
// (workspace, user, role, scopes) and the provider catalogue, which is
// fixed for the life of the process.
var cacheableFields = map[string]bool{"integrations": true, "integration": true, "__typename": true}

// QueryCache keeps the final JSON bytes of successful POST /graphql
// queries that read only integrations. An entry's key holds everything
// that can change those bytes: the viewer's workspace, user, role and
// effective scopes; the workspace's integrations version at the start of
// the request; the Accept header; the query text, operation name and
// variables exactly as sent. A commit raises the version before it
// returns, so the next request misses and runs gqlgen; entries of older
// versions are never looked up again and age out of the LRU. Errors,
// mutations and anything but the fields above are never cached. It runs
// after authentication, so the token's rate limit, lastUsedAt and audit
// apply to hits exactly as to misses.
type QueryCache struct {
	version  func(workspaceID string) uint64
	maxBytes int

	mu      sync.Mutex
	entries map[string]*list.Element
	lru     list.List // of *cacheEntry, most recent first
	size    int

	docsMu sync.Mutex
	docs   map[docKey]bool // query text and operation name → cacheable

	keys sync.Pool // *[]byte
}

type docKey struct{ query, opName string }

type cacheEntry struct {
	key         string
	contentType string
	body        []byte
}

// NewQueryCache returns a response cache of integrations queries; version
// is the store's integrations version (see Options.IntegrationsVersion).
func NewQueryCache(version func(string) uint64, maxBytes int) *QueryCache {
	if maxBytes <= 0 {
		maxBytes = DefaultQueryCacheBytes
	}
	return &QueryCache{version: version, maxBytes: maxBytes, entries: map[string]*list.Element{}, docs: map[docKey]bool{}}
}

// cachedParams is the part of a GraphQL POST body the cache reads.
// Requests with extensions (persisted queries) go to gqlgen uncached.
type cachedParams struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName"`
	Variables     json.RawMessage `json:"variables"`
	Extensions    json.RawMessage `json:"extensions"`
}

// Wrap answers r from the cache or runs next and keeps its answer.
// authenticate has read the body into memory already.
func (c *QueryCache) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := switchboard.PrincipalFromContext(r.Context())
		if c == nil || p == nil || r.Method != http.MethodPost || isWebsocket(r) {
			next.ServeHTTP(w, r)
			return
		}
		body, ok := r.Body.(*bodyReader)
		if !ok {
			data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
			if err != nil {
				writeCodeError(w, http.StatusBadRequest, switchboard.EINVALID, "The request body could not be read.")
				return
			}
			body = &bodyReader{Reader: bytes.NewReader(data), data: data}
			r.Body = body
		}
		var params cachedParams
		err := json.Unmarshal(body.data, &params)
		if err == nil {
			body.params = &params
		}
		if err != nil || params.Query == "" || len(params.Extensions) > 0 ||
			!c.cacheable(params.Query, params.OperationName) {
			next.ServeHTTP(w, r)
			return
		}
		bp := c.getKey()
		key := c.appendKey((*bp)[:0], p, r.Header.Get("Accept"), &params)
		*bp = key
		c.mu.Lock()
		el := c.entries[string(key)]
		var hit *cacheEntry
		if el != nil {
			c.lru.MoveToFront(el)
			hit = el.Value.(*cacheEntry)
		}
		c.mu.Unlock()
		if hit != nil {
			c.keys.Put(bp)
			h := w.Header()
			h["Content-Type"] = []string{hit.contentType}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(hit.body)
			return
		}
		k := string(key)
		c.keys.Put(bp)
		tee := &teeWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(tee, r)
		if tee.status == http.StatusOK && !tee.overflow && bytes.HasPrefix(tee.buf.Bytes(), []byte(`{"data":`)) {
			c.put(&cacheEntry{key: k, contentType: w.Header().Get("Content-Type"), body: bytes.Clone(tee.buf.Bytes())})
		}
	})
}

func (c *QueryCache) getKey() *[]byte {
	if b, ok := c.keys.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 1024)
	return &b
}

func (c *QueryCache) appendKey(b []byte, p *switchboard.Principal, accept string, params *cachedParams) []byte {
	field := func(b []byte, s string) []byte {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		return append(b, s...)
	}
	b = field(b, p.WorkspaceID)
	b = strconv.AppendUint(b, c.version(p.WorkspaceID), 10)
	b = append(b, ';')
	b = field(b, p.UserID)
	b = field(b, string(p.Role))
	scopes := p.Scopes
	if len(scopes) == 0 {
		scopes = switchboard.DefaultScopes
	}
	b = strconv.AppendInt(b, int64(len(scopes)), 10)
	for _, s := range scopes {
		b = field(b, s)
	}
	b = field(b, accept)
	b = field(b, params.OperationName)
	b = field(b, params.Query)
	return field(b, string(params.Variables))
}

// cacheable reports whether the operation is a query selecting only
// cacheableFields at its top level (fields, no fragments there). Parse
// errors are not cacheable: gqlgen answers them.
func (c *QueryCache) cacheable(query, opName string) bool {
	dk := docKey{query, opName}
	c.docsMu.Lock()
	ok, known := c.docs[dk]
	c.docsMu.Unlock()
	if known {
		return ok
	}
	ok = decideCacheable(query, opName)
	c.docsMu.Lock()
	if len(c.docs) >= maxCachedDocuments {
		clear(c.docs)
	}
	c.docs[dk] = ok
	c.docsMu.Unlock()
	return ok
}

func decideCacheable(query, opName string) bool {
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		return false
	}
	var op *ast.OperationDefinition
	if opName == "" {
		if len(doc.Operations) != 1 {
			return false
		}
		op = doc.Operations[0]
	} else {
		op = doc.Operations.ForName(opName)
	}
	if op == nil || op.Operation != ast.Query || len(op.SelectionSet) == 0 {
		return false
	}
	for _, sel := range op.SelectionSet {
		f, ok := sel.(*ast.Field)
		if !ok || !cacheableFields[f.Name] {
			return false
		}
	}
	return true
}

func (c *QueryCache) put(e *cacheEntry) {
	n := len(e.key) + len(e.body) + len(e.contentType)
	if n > c.maxBytes/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.key]; ok {
		old := el.Value.(*cacheEntry)
		c.size -= len(old.key) + len(old.body) + len(old.contentType)
		el.Value = e
		c.lru.MoveToFront(el)
	} else {
		c.entries[e.key] = c.lru.PushFront(e)
	}
	c.size += n
	for c.size > c.maxBytes {
		last := c.lru.Back()
		old := c.lru.Remove(last).(*cacheEntry)
		delete(c.entries, old.key)
		c.size -= len(old.key) + len(old.body) + len(old.contentType)
	}
}

// teeWriter passes a response through and keeps a copy of its body up to
// maxCachedResponse.
type teeWriter struct {
	http.ResponseWriter
	status   int
	wrote    bool
	overflow bool
	buf      bytes.Buffer
}

func (t *teeWriter) WriteHeader(status int) {
	if !t.wrote {
		t.status, t.wrote = status, true
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *teeWriter) Write(b []byte) (int, error) {
	t.wrote = true
	if !t.overflow {
		if t.buf.Len()+len(b) > maxCachedResponse {
			t.overflow = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(b)
		}
	}
	return t.ResponseWriter.Write(b)
}

func (t *teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// bodyReader is the request body as authenticate read it.
type bodyReader struct {
	*bytes.Reader
	data []byte
	// params, when set, is data decoded by the query cache; the POST
	// transport takes the operation from it (post.go).
	params *cachedParams
}

func (b *bodyReader) Close() error { return nil }
