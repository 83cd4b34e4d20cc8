// Package httpapi is Switchboard's HTTP surface: /graphql (queries,
// mutations, websocket subscriptions), /playground, /oauth/callback,
// /healthz, the sync engine's JSON API under /sync/v1/ and, in dev mode,
// the sandbox provider. It turns requests into
// Service calls; it holds no state of its own.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/bont/switchboard/eventrender"
	"github.com/bont/switchboard/gqlws"
	"github.com/bont/switchboard/graph"
	"github.com/bont/switchboard/metrics"
	"github.com/bont/switchboard/resolvers"
	"github.com/bont/switchboard/switchboard"
)

// Limits of the GraphQL endpoint.
const (
	MaxBodyBytes         = 1 << 20 // request bodies and websocket frames
	ComplexityLimit      = 500
	DepthLimit           = 15 // deep enough for the introspection query
	ParserTokenLimit     = 15000
	WebsocketInitTimeout = 10 * time.Second
	WebsocketPing        = 25 * time.Second
	MaxSubscriptions     = 50 // per websocket connection

	// Per API token: sustained requests per second and burst. Each
	// websocket connection counts as one request, and so does each
	// operation started on it.
	DefaultTokenRate  = 20
	DefaultTokenBurst = 40
	// Per client IP on /oauth/callback.
	DefaultCallbackRate  = 2
	DefaultCallbackBurst = 20
)

// Options wires the handler.
type Options struct {
	Service *switchboard.Service
	// Websocket accepts websocket connections (gorillaws).
	Websocket gqlws.Upgrader
	// WrapWebsocket, when set, wraps the /graphql handler (gorillaws.Middleware).
	WrapWebsocket func(http.Handler) http.Handler
	// Sandbox, when set (dev mode), is served under /sandbox/.
	Sandbox http.Handler
	// Settings, when set, is served at /settings.
	Settings http.Handler
	Dev      bool
	Logger   *slog.Logger
	// Ready reports readiness for /healthz; false while draining.
	Ready func() bool
	// Revision returns the store's latest revision, for /healthz.
	Revision func(context.Context) (uint64, error)
	// Metrics, when set, records HTTP metrics and serves /metrics: with a
	// MetricsToken to requests that carry it as a bearer token; without
	// one only in dev mode (which listens on loopback). A listener of its
	// own (-metrics-addr) serves metrics.Handler directly.
	Metrics *metrics.Metrics
	// MetricsToken is the scrape token /metrics asks for ("" for none).
	MetricsToken string
	// IntegrationsVersion, when set, turns on the response cache of
	// integrations queries (querycache.go): it must return a value that
	// changes with every commit to the workspace's integrations before
	// that commit returns (bolt.Store.IntegrationsVersion).
	IntegrationsVersion func(workspaceID string) uint64
	// QueryCacheBytes bounds the response cache: zero means
	// DefaultQueryCacheBytes, negative turns the cache off.
	QueryCacheBytes int

	// Rate limits; zero means the defaults above, negative means none.
	TokenRate, CallbackRate   float64
	TokenBurst, CallbackBurst int
	// WebsocketInitTimeout: zero means the default above.
	WebsocketInitTimeout time.Duration
	// Websocket caps (connlimits.go); zero means the defaults there,
	// negative means none.
	MaxPendingPerAddress, MaxSocketsPerToken, MaxSocketsPerWorkspace int
	// Document limits (document.go); zero or negative means
	// DefaultMaxFields, DefaultMaxSelectionFields and DefaultMaxMerges.
	MaxFields, MaxSelectionFields, MaxMerges int
	// ExecutorEvents leaves every subscription event to gqlgen's
	// executor: no compiled renderer (eventrender).
	ExecutorEvents bool
	// Renders, when set, counts subscription items by renderer (for
	// /metrics).
	Renders *gqlws.RenderCounts

	// SecureCookies marks the OAuth flow's cookie Secure (an https public
	// URL); requests that arrive over TLS get it anyway.
	SecureCookies bool

	tokenLimits    *limiters
	callbackLimits *limiters
	conns          *tokenConns
	pending        *pendingSockets
}

func limitsOr(r float64, b int, dr float64, db int) *limiters {
	if r == 0 {
		r, b = dr, db
	}
	if b <= 0 {
		b = int(math.Max(1, r))
	}
	return newLimiters(r, b)
}

// Handler is the gateway's HTTP handler.
type Handler struct {
	http.Handler
	conns *tokenConns
}

// TokensRevoked closes at once the websockets opened with the API tokens
// ids. main wires it to switchboard.Service.TokensRevoked, so revoked and
// deleted tokens lose their websockets.
func (h *Handler) TokensRevoked(ids []string) { h.conns.revoked(ids) }

// New returns the gateway's HTTP handler.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.WebsocketInitTimeout <= 0 {
		o.WebsocketInitTimeout = WebsocketInitTimeout
	}
	o.tokenLimits = limitsOr(o.TokenRate, o.TokenBurst, DefaultTokenRate, DefaultTokenBurst)
	o.callbackLimits = limitsOr(o.CallbackRate, o.CallbackBurst, DefaultCallbackRate, DefaultCallbackBurst)
	o.conns = &tokenConns{close: gqlws.Close,
		maxPerToken:     capOr(o.MaxSocketsPerToken, DefaultMaxSocketsPerToken),
		maxPerWorkspace: capOr(o.MaxSocketsPerWorkspace, DefaultMaxSocketsPerWorkspace),
	}
	o.pending = &pendingSockets{max: capOr(o.MaxPendingPerAddress, DefaultMaxPendingPerAddress), n: map[string]int{},
		refused: func() { o.refused(LimitPendingPerAddress) }}
	mux := http.NewServeMux()
	gql := o.graphQLServer()
	var qc *QueryCache
	if o.IntegrationsVersion != nil && o.QueryCacheBytes >= 0 {
		qc = NewQueryCache(o.IntegrationsVersion, o.QueryCacheBytes)
	}
	var gqlHandler http.Handler = o.authenticate(checkRequest(qc.Wrap(gql)))
	if o.WrapWebsocket != nil {
		gqlHandler = o.WrapWebsocket(gqlHandler)
	}
	mux.Handle("/graphql", gqlHandler)
	if o.Dev {
		// GraphiQL, like introspection and field suggestions, is for
		// development only.
		mux.HandleFunc("GET /playground", playground)
	}
	mux.HandleFunc("GET /oauth/callback", o.limitCallback(o.callback))
	mux.HandleFunc("GET /oauth/start/{id}", o.limitCallback(o.start))
	mux.HandleFunc("GET /healthz", o.healthz)
	mux.HandleFunc("GET /readyz", o.readyz)
	if o.Metrics != nil {
		switch {
		case o.MetricsToken != "":
			mux.Handle("GET /metrics", metricsHandler(o.Metrics, o.MetricsToken))
		case o.Dev:
			mux.Handle("GET /metrics", o.Metrics.Handler())
		}
	}
	o.syncRoutes(mux)
	if o.Settings != nil {
		mux.Handle("/settings", o.Settings)
		mux.Handle("/settings/", o.Settings)
	}
	if o.Sandbox != nil {
		mux.Handle("/sandbox/", http.StripPrefix("/sandbox", o.Sandbox))
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/settings", http.StatusFound)
	})
	return &Handler{Handler: o.observe(mux), conns: o.conns}
}

func (o Options) graphQLServer() *handler.Server {
	root := &resolvers.Resolver{Service: o.Service}
	cfg := graph.Config{Resolvers: root}
	srv := handler.New(graph.NewExecutableSchema(cfg))
	compile := func(ctx context.Context, rc *graphql.OperationContext) gqlws.Renderer {
		return eventrender.Compile(ctx, o.Service, rc)
	}
	if o.ExecutorEvents {
		compile = nil
	}
	o.addWebsocket(srv, compile)
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	// gqlgen's POST transport, without decoding the body a second time
	// (post.go).
	srv.AddTransport(postTransport{})
	docs := lru.New[*ast.QueryDocument](1000)
	srv.SetQueryCache(docs)
	if o.Dev {
		srv.Use(extension.Introspection{})
	} else {
		// Production answers nothing that names the schema beyond what
		// the client wrote: no suggestions (executor.go swaps only two
		// of the rules that make them), no introspection (refused by the
		// document guard, before validation).
		srv.SetValidationRulesFn(rulesWithoutSuggestions)
	}
	srv.SetDisableSuggestion(!o.Dev)
	srv.SetParserTokenLimit(ParserTokenLimit)
	var refused func(string)
	if o.Metrics != nil {
		refused = o.Metrics.ObserveLimitRefusal
	}
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](1000)})
	// After the persisted query has put the document in the parameters,
	// before the executor validates it (documentguard.go).
	srv.Use(&documentGuard{
		limits: documentLimits{
			maxFields:          positiveOr(o.MaxFields, DefaultMaxFields),
			maxSelectionFields: positiveOr(o.MaxSelectionFields, DefaultMaxSelectionFields),
			maxMerges:          positiveOr(o.MaxMerges, DefaultMaxMerges),
			maxDepth:           DepthLimit,
			noIntrospection:    !o.Dev,
		},
		tokenLimit: ParserTokenLimit,
		cache:      docs,
		refused:    refused,
	})
	// gqlgen's FixedComplexityLimit, once per fragment and remembering
	// each operation's figure while no field has a complexity function
	// (complexity.go).
	srv.Use(&complexityLimit{limit: ComplexityLimit, variableFree: reflect.ValueOf(cfg.Complexity).IsZero(), refused: refused})
	srv.SetErrorPresenter(o.presentError)
	srv.SetRecoverFunc(func(ctx context.Context, p any) error {
		o.Logger.Error("panic in resolver", "panic", p, "stack", string(debug.Stack()))
		return switchboard.Errorf(switchboard.EINTERNAL, "Internal error.")
	})
	return srv
}

func positiveOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// rulesWithoutSuggestions is gqlparser's default rule set with every
// rule that suggests names ("Did you mean ...?" for fields, arguments,
// enum values, input fields and types) in its variant that does not.
func rulesWithoutSuggestions() *rules.Rules {
	r := rules.NewDefaultRules()
	for _, v := range []validator.Rule{
		rules.FieldsOnCorrectTypeRuleWithoutSuggestions,
		rules.ScalarLeafsRuleWithoutSuggestions,
		rules.KnownArgumentNamesRuleWithoutSuggestions,
		rules.KnownTypeNamesRuleWithoutSuggestions,
		rules.ValuesOfCorrectTypeRuleWithoutSuggestions,
	} {
		r.RemoveRule(strings.TrimSuffix(v.Name, "WithoutSuggestions"))
		r.AddRule(v.Name, v.RuleFunc)
	}
	return r
}

// addWebsocket serves subscriptions with the gqlws transport; compile
// renders integrationEvents without gqlgen's executor where it can
// (eventrender).
func (o Options) addWebsocket(srv *handler.Server, compile func(context.Context, *graphql.OperationContext) gqlws.Renderer) {
	srv.AddTransport(&gqlws.Transport{
		Upgrader:         o.Websocket,
		InitFunc:         o.websocketInit,
		InitTimeout:      o.WebsocketInitTimeout,
		KeepAlive:        WebsocketPing,
		MaxSubscriptions: MaxSubscriptions,
		ReadLimit:        MaxBodyBytes,
		Pending:          o.pending.open,
		Admit:            o.admitOperation,
		ViewerKey:        viewerKey,
		Compile:          compile,
		Renders:          o.Renders,
		ErrorFunc: func(ctx context.Context, err error) {
			o.Logger.Debug("websocket", "err", err)
		},
	})
}

// presentError puts a stable code in extensions.code. Domain errors keep
// their code and message; errors of GraphQL itself (parse, validation,
// variable coercion) keep gqlgen's code or become INVALID_INPUT; anything
// else is INTERNAL and its text is logged, never sent.
func (o Options) presentError(ctx context.Context, err error) *gqlerror.Error {
	gerr := graphql.DefaultErrorPresenter(ctx, err)
	if gerr.Extensions == nil {
		gerr.Extensions = map[string]any{}
	}
	var e *switchboard.Error
	if errors.As(err, &e) {
		gerr.Message = e.Message
		gerr.Extensions["code"] = e.Code
		if e.Field != "" {
			gerr.Extensions["field"] = e.Field
		}
		if e.Code == switchboard.EINTERNAL {
			gerr.Message = "Internal error."
		}
		return gerr
	}
	if _, ok := gerr.Extensions["code"]; ok {
		return gerr
	}
	if gerr.Err == nil {
		// Raised by the GraphQL machinery about the request itself.
		gerr.Extensions["code"] = switchboard.EINVALID
		return gerr
	}
	o.Logger.Error("internal error", "path", gerr.Path.String(), "err", err)
	gerr.Message = "Internal error."
	gerr.Extensions["code"] = switchboard.EINTERNAL
	return gerr
}

// authenticate resolves the bearer token of HTTP requests. Websocket
// upgrades pass through: their token comes in connection_init.
func (o Options) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		p, err := o.Service.Authenticate(r.Context(), bearer(r.Header.Get("Authorization")))
		if err != nil {
			writeGraphQLError(w, http.StatusUnauthorized, err)
			return
		}
		if ri := infoFrom(r.Context()); ri != nil {
			ri.setWorkspace(p.WorkspaceID)
		}
		if ok, wait := o.tokenLimits.allow(p.TokenID); !ok {
			o.refused(LimitTokenRate)
			tooMany(w, wait, "with this API token")
			return
		}
		// Read the body here, so that an oversized one is a 413 rather
		// than a decoding error.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			o.refused(LimitBodySize)
			writeCodeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("The request body is over the limit of %d bytes.", MaxBodyBytes))
			return
		} else if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				o.refused(LimitBodyTimeout)
			}
			writeCodeError(w, http.StatusBadRequest, switchboard.EINVALID, "The request body could not be read.")
			return
		}
		r.Body = &bodyReader{Reader: bytes.NewReader(body), data: body}
		next.ServeHTTP(w, r.WithContext(switchboard.NewContextWithPrincipal(r.Context(), p)))
	})
}

func bearer(h string) string {
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}

// websocketInit authenticates a websocket from its connection_init payload:
// {"authorization": "Bearer <token>"}, "Authorization" too, or the same
// inside "headers" (as some GraphQL clients send it). A bad token closes
// the connection without an ack.
func (o Options) websocketInit(ctx context.Context, payload transport.InitPayload) (context.Context, error) {
	h := payload.Authorization()
	if h == "" {
		if hs, ok := payload["headers"].(map[string]any); ok {
			for k, v := range hs {
				if strings.EqualFold(k, "authorization") {
					h, _ = v.(string)
				}
			}
		}
	}
	p, err := o.Service.Authenticate(ctx, bearer(h))
	if err != nil {
		// graphql-transport-ws: 4403 Forbidden, no ack.
		return ctx, &gqlws.CloseError{Code: 4403, Reason: "Forbidden", Message: switchboard.ErrorMessage(err)}
	}
	if ri := infoFrom(ctx); ri != nil {
		ri.setWorkspace(p.WorkspaceID)
	}
	if ok, _ := o.tokenLimits.allow(p.TokenID); !ok {
		o.refused(LimitTokenRate)
		return ctx, &gqlws.CloseError{Code: CloseTooMany, Reason: "Too many requests with this API token", Message: "too many requests with this API token; retry later"}
	}
	switch o.conns.add(ctx, p.TokenID, p.WorkspaceID, p.ExpiresAt) {
	case LimitSocketsPerToken:
		o.refused(LimitSocketsPerToken)
		return ctx, &gqlws.CloseError{Code: CloseTooMany, Reason: "Too many connections with this API token",
			Message: fmt.Sprintf("too many websockets with this API token (limit %d); close one first", o.conns.maxPerToken)}
	case LimitSocketsPerWorkspace:
		o.refused(LimitSocketsPerWorkspace)
		return ctx, &gqlws.CloseError{Code: CloseTooMany, Reason: "Too many connections for this workspace",
			Message: fmt.Sprintf("too many websockets for this workspace (limit %d); close one first", o.conns.maxPerWorkspace)}
	}
	return switchboard.NewContextWithPrincipal(ctx, p), nil
}

// viewerKey is what about a websocket's viewer can change a subscription's
// result: the workspace, the user (personal integrations are theirs
// alone), the role and the scopes (actions are filtered by what the viewer
// may do). Subscriptions with equal keys and equal operations share one
// execution per event.
func viewerKey(ctx context.Context) (string, bool) {
	p := switchboard.PrincipalFromContext(ctx)
	if p == nil {
		return "", false
	}
	scopes := append([]string(nil), p.EffectiveScopes()...)
	sort.Strings(scopes)
	return strings.Join([]string{p.WorkspaceID, p.UserID, string(p.Role), strings.Join(scopes, " ")}, "\x00"), true
}

// limitCallback rate-limits the OAuth callback per client IP.
func (o Options) limitCallback(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := o.callbackLimits.allow(clientIP(r)); !ok {
			o.refused(LimitCallbackRate)
			tooMany(w, wait, "from this address")
			return
		}
		next(w, r)
	}
}

func writeCodeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]any{{"message": message, "extensions": map[string]any{"code": code}}},
	})
}

func writeGraphQLError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]any{{
			"message":    switchboard.ErrorMessage(err),
			"extensions": map[string]any{"code": switchboard.ErrorCode(err)},
		}},
	})
}

// healthz is liveness: the process serves and its store answers. It stays
// 200 while draining, so an orchestrator does not kill a draining process.
func (o Options) healthz(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"status": "ok"}
	status := http.StatusOK
	if o.Revision != nil {
		rev, err := o.Revision(r.Context())
		if err != nil {
			body["status"] = "store unavailable"
			status = http.StatusServiceUnavailable
		} else {
			body["revision"] = fmt.Sprint(rev)
		}
	}
	writeJSON(w, status, body)
}

// readyz is readiness: 503 while draining, so load balancers stop sending
// new requests before the listener closes.
func (o Options) readyz(w http.ResponseWriter, r *http.Request) {
	if o.Ready != nil && !o.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "draining"})
		return
	}
	if o.Revision != nil {
		if _, err := o.Revision(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "store unavailable"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
