// Command switchboard is a GraphQL gateway for a SaaS product's third-party
// integrations: it owns each integration's OAuth connection, keeps its
// status truthful and pushes every badge change to subscribers.
//
//	go run .            # dev mode on 127.0.0.1:8080, data in ./data
//	go run . -h         # flags
//	go run . token create --workspace W --role admin --plan pure   # first admin token
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/fanout"
	"github.com/bont/switchboard/gorillaws"
	"github.com/bont/switchboard/gqlws"
	"github.com/bont/switchboard/httpapi"
	"github.com/bont/switchboard/metrics"
	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/oauthflow/sandbox"
	"github.com/bont/switchboard/refresher"
	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
	"github.com/bont/switchboard/web"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backup":
			os.Exit(runBackup(os.Args[2:], os.Stdout, os.Stderr))
		case "check":
			os.Exit(runCheck(os.Args[2:], os.Stdout, os.Stderr))
		case "rekey":
			os.Exit(runRekey(os.Args[2:], os.Stdout, os.Stderr))
		case "token":
			os.Exit(runCLI(os.Args[1:], os.Stdout, os.Stderr))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err == flag.ErrHelp {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		m.Close()
		os.Exit(1)
	}
	<-ctx.Done()
	stop() // a second signal kills at once
	m.Logger.Info("shutting down")
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

// Config is what the flags set.
type Config struct {
	Addr      string
	DataDir   string
	Dev       bool
	PublicURL string // default: http://<listen address>
	// ProvidersFile configures real and custom providers (YAML); empty
	// lists the built-in providers without credentials.
	ProvidersFile string
	// AllowedOrigins may open websockets and be returned to after OAuth,
	// besides the gateway's own origin.
	AllowedOrigins  []string
	ShutdownTimeout time.Duration

	// Tuning; zero means the package's default.
	ChangelogMaxEvents    int           // per workspace
	SubscriberQueue       int           // events queued per subscriber before it is cut off
	WebsocketWriteTimeout time.Duration // a write to a stalled socket fails after this
	// ExecutorEvents renders every subscription event with gqlgen's
	// executor, without the compiled renderer of integrationEvents.
	ExecutorEvents bool
	// The broker's replay history: the most recent events, over all
	// workspaces, kept in memory to serve resumes without reading the
	// changelog; zero means fanout's default (50,000 events, 32 MiB),
	// negative turns it off.
	ReplayHistoryEvents int
	ReplayHistoryBytes  int64

	// The refresher (refresher.Refresher); zero means its default.
	RefreshInterval      time.Duration // longest time between two refreshes of a connection
	RefreshFailureWindow time.Duration // transient failures this long turn the badge ERROR
	RefreshMinBackoff    time.Duration
	RefreshMaxBackoff    time.Duration
	RefreshMinGap        time.Duration // least time between two refreshes of a connection
	// Metrics (docs/security.md): MetricsAddr serves /metrics alone on a
	// listener of its own, for a scraper on a private network; the main
	// address serves it only with MetricsToken (a bearer token, from
	// SWITCHBOARD_METRICS_TOKEN) or in dev mode.
	MetricsAddr           string
	MetricsToken          string
	SandboxAccessTokenTTL time.Duration // dev sandbox's access token lifetime
	WebsocketInitTimeout  time.Duration // connection_init must come within this
	// Rate limits (requests per second and burst) per API token and per
	// client IP on /oauth/callback; negative disables.
	TokenRate, CallbackRate   float64
	TokenBurst, CallbackBurst int

	// Connection limits (docs/security-limits.md). Websocket caps: zero
	// means httpapi's default, negative none. Server timeouts and
	// MaxHeaderBytes: zero means the defaults below, negative none.
	MaxPendingPerAddress   int // websockets from one address not yet acknowledged
	MaxSocketsPerToken     int
	MaxSocketsPerWorkspace int
	ReadHeaderTimeout      time.Duration
	ReadTimeout            time.Duration // headers and body
	WriteTimeout           time.Duration // from the end of the headers to the end of the response
	IdleTimeout            time.Duration // between two requests on a kept-alive connection
	MaxHeaderBytes         int
	// DevAllowRemote lets dev mode listen on an address that is not
	// loopback (checkDevAddr).
	DevAllowRemote bool
	// GraphQL document limits (httpapi.Options); zero means the default.
	MaxFields, MaxSelectionFields, MaxMerges int
}

// Defaults of the HTTP server's limits. A settings page's and an
// automation's requests are small and quick: these only cut connections
// that trickle (a body at a byte every few seconds) or never read. They
// do not touch websockets: the upgrade clears the connection's deadlines
// (gorilla/websocket does, after hijacking), and websockets have their own
// (gorillaws's write timeout, the connection_init timeout, keep-alives).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
)

// Main is the running program: it opens the store, wires the services and
// serves HTTP. Tests start the same Main on 127.0.0.1:0.
type Main struct {
	Config Config
	Logger *slog.Logger
	Stdout io.Writer

	// Listener, when set, is served instead of listening on Config.Addr.
	Listener net.Listener

	// Set by Run.
	URL       string // the public URL
	DemoToken string // dev mode only
	// SigninURL (dev mode) signs the settings page in as the demo admin
	// with a one-time code that expires after web.DefaultCodeTTL; the
	// token itself is never in it.
	SigninURL string

	store   *bolt.Store
	broker  *fanout.Broker
	ws      *gorillaws.Implementation
	metrics *metrics.Metrics
	// metricsServer serves -metrics-addr; MetricsURL is its /metrics.
	metricsServer *http.Server
	MetricsURL    string
	renders       gqlws.RenderCounts
	service       *switchboard.Service
	refresher     *refresher.Refresher
	sandbox       *sandbox.Server
	signin        *web.LoginCodes // dev mode
	server        *http.Server
	admin         *http.Server
	cancel        context.CancelFunc
	bg            sync.WaitGroup
	draining      atomic.Bool
	closed        sync.Once

	// sandboxTesting, set by a test before Run, holds the dev sandbox's
	// fault hooks; nil otherwise, and then the sandbox has none.
	sandboxTesting *sandbox.Testing
}

// NewMain returns a Main with the defaults of `go run .`.
func NewMain() *Main {
	return &Main{
		Config: Config{
			Addr:            "127.0.0.1:8080",
			DataDir:         "data",
			ProvidersFile:   os.Getenv("SWITCHBOARD_PROVIDERS"),
			MetricsToken:    os.Getenv("SWITCHBOARD_METRICS_TOKEN"),
			Dev:             true,
			ShutdownTimeout: 15 * time.Second,
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Stdout: os.Stdout,
	}
}

// ParseFlags sets Config from command-line arguments.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.StringVar(&m.Config.Addr, "addr", m.Config.Addr, "listen address")
	fs.StringVar(&m.Config.DataDir, "data", m.Config.DataDir, "data directory (the bbolt file, and in dev mode the key and demo token)")
	fs.BoolVar(&m.Config.Dev, "dev", m.Config.Dev, "dev mode: demo workspace and token, generated key, built-in sandbox OAuth provider")
	fs.BoolVar(&m.Config.DevAllowRemote, "dev-allow-remote", m.Config.DevAllowRemote, "let dev mode listen on an address that is not loopback (its sandbox console is unauthenticated and its sandbox client secret is fixed)")
	fs.StringVar(&m.Config.PublicURL, "public-url", m.Config.PublicURL, "URL browsers reach this gateway at; OAuth redirects go to <public-url>/oauth/callback (default http://<addr>)")
	fs.StringVar(&m.Config.ProvidersFile, "providers", m.Config.ProvidersFile, "providers file (YAML: client credentials of built-in providers, custom providers); env SWITCHBOARD_PROVIDERS")
	origins := fs.String("allow-origin", "", "comma-separated extra origins allowed to open websockets and to be returned to after OAuth")
	fs.DurationVar(&m.Config.ShutdownTimeout, "shutdown-timeout", m.Config.ShutdownTimeout, "how long in-flight requests may take to finish on SIGTERM")
	fs.Float64Var(&m.Config.TokenRate, "token-rate", m.Config.TokenRate, "requests per second allowed per API token (0: default 20; negative: no limit)")
	fs.IntVar(&m.Config.TokenBurst, "token-burst", m.Config.TokenBurst, "burst allowed per API token (0: default 40)")
	fs.Float64Var(&m.Config.CallbackRate, "callback-rate", m.Config.CallbackRate, "OAuth callbacks per second allowed per client IP (0: default 2; negative: no limit)")
	fs.DurationVar(&m.Config.RefreshInterval, "refresh-interval", m.Config.RefreshInterval, "longest time between two token refreshes of a connection, so a revocation shows within it (default 1h)")
	fs.IntVar(&m.Config.ReplayHistoryEvents, "replay-history-events", m.Config.ReplayHistoryEvents, "recent events kept in memory, over all workspaces, to replay resuming subscribers without reading the changelog (0: default 50000; negative: none)")
	fs.Int64Var(&m.Config.ReplayHistoryBytes, "replay-history-bytes", m.Config.ReplayHistoryBytes, "bound on the estimated memory of those events, in bytes (0: default 32 MiB; negative: none)")
	fs.BoolVar(&m.Config.ExecutorEvents, "executor-events", m.Config.ExecutorEvents, "render every subscription event with gqlgen's executor instead of the compiled renderer of integrationEvents (for comparison)")
	fs.StringVar(&m.Config.MetricsAddr, "metrics-addr", m.Config.MetricsAddr, "serve /metrics alone on this address too (e.g. a private network's), without a token; the main address serves /metrics only with SWITCHBOARD_METRICS_TOKEN as a bearer token, or in dev mode")
	fs.DurationVar(&m.Config.RefreshMinGap, "refresh-min-gap", m.Config.RefreshMinGap, "least time between two token refreshes of a connection, whatever its tokens' lifetime (default 2s; a tenth of the lifetime when that is longer)")
	fs.IntVar(&m.Config.MaxFields, "max-fields", m.Config.MaxFields, "fields a GraphQL document may hold with its fragments resolved, over all its operations and fragments (0: default 2000)")
	fs.IntVar(&m.Config.MaxSelectionFields, "max-selection-fields", m.Config.MaxSelectionFields, "fields one selection set may hold with its fragments resolved and same-named fields merged (0: default 500)")
	fs.IntVar(&m.Config.MaxMerges, "max-merges", m.Config.MaxMerges, "pairs of same-named fields, or of fragments, spread at one place that validation may have to compare, over a document (0: default 5000)")
	fs.DurationVar(&m.Config.RefreshFailureWindow, "failure-window", m.Config.RefreshFailureWindow, "how long a provider may fail token refreshes before the badge turns Error (default 15m)")
	m.connectionFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			m.Config.AllowedOrigins = append(m.Config.AllowedOrigins, o)
		}
	}
	return nil
}

// Run opens the store, starts serving and the background work, and
// returns; Close stops everything.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	addr := cfg.Addr
	if m.Listener != nil {
		addr = m.Listener.Addr().String()
	}
	if err := cfg.checkDevAddr(addr); err != nil {
		return err
	}
	keyring, err := seal.Load(cfg.DataDir, cfg.Dev)
	if err != nil {
		return err
	}
	m.store, err = bolt.Open(filepath.Join(cfg.DataDir, "switchboard.db"), bolt.Options{Keyring: keyring, ChangelogMaxEvents: cfg.ChangelogMaxEvents})
	if err != nil {
		return err
	}
	if m.admin, err = m.serveAdmin(); err != nil {
		return err
	}
	ln := m.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return err
		}
	}
	m.URL = strings.TrimRight(cfg.PublicURL, "/")
	if m.URL == "" {
		m.URL = "http://" + ln.Addr().String()
	}
	if _, err := url.Parse(m.URL); err != nil {
		ln.Close()
		return fmt.Errorf("-public-url: %w", err)
	}
	allowed := append([]string{origin(m.URL)}, cfg.AllowedOrigins...)

	rev, err := m.store.Revision(ctx)
	if err != nil {
		ln.Close()
		return err
	}
	m.broker = fanout.New(m.store, rev, fanout.Options{Logger: m.Logger, QueueSize: cfg.SubscriberQueue,
		HistoryEvents: cfg.ReplayHistoryEvents, HistoryBytes: cfg.ReplayHistoryBytes})

	redirect := m.URL + "/oauth/callback"
	providers, err := oauthflow.LoadProviders(cfg.ProvidersFile)
	if err != nil {
		ln.Close()
		return err
	}
	if cfg.Dev {
		// The sandbox is dev-only and serves loopback: a fixed client
		// secret is no secret worth keeping.
		const clientID, secret = "switchboard-dev", "sandbox-dev-secret"
		const mailClientID, mailSecret = "switchboard-dev-mail", "sandbox-dev-mail-secret"
		m.sandbox, err = sandbox.New(sandbox.Config{
			BaseURL:          m.URL + "/sandbox",
			ClientID:         clientID,
			ClientSecret:     secret,
			MailClientID:     mailClientID,
			MailClientSecret: mailSecret,
			RedirectURIs:     []string{redirect},
			// Grants survive restarts, so do sandbox connections.
			StateFile:      filepath.Join(cfg.DataDir, "sandbox.json"),
			AccessTokenTTL: cfg.SandboxAccessTokenTTL,
			Testing:        m.sandboxTesting,
			// Revoking or expiring in the sandbox console acts like a
			// provider's deauthorization webhook: the refresher looks at
			// the sandbox's connections at once, so the card flips
			// within a second instead of within -refresh-interval.
			OnGrantChange: func() {
				if r := m.refresher; r != nil {
					r.Recheck("sandbox", "sandbox-mail")
				}
			},
		})
		if err != nil {
			ln.Close()
			return err
		}
		// Sandbox CRM for the workspace, Sandbox Mail for each user.
		mail, _ := m.sandbox.MailProvider()
		providers = append([]oauthflow.ProviderConfig{m.sandbox.Provider(), mail}, providers...)
	}
	registry, err := oauthflow.NewRegistry(oauthflow.Config{RedirectURL: redirect, Providers: providers})
	if err != nil {
		ln.Close()
		return err
	}

	m.metrics = metrics.New(metrics.Sources{
		Subscribers:  func() float64 { return float64(m.broker.Stats().Subscribers) },
		Deliveries:   func() float64 { return float64(m.broker.Stats().Delivered) },
		Cutoffs:      func() float64 { return float64(m.broker.Stats().Cutoffs) },
		Websockets:   func() float64 { return float64(m.ws.Count()) },
		StatusCounts: m.store.StatusCounts,

		// The replay history's size (fanout/history.go).
		ReplayHistoryEvents: func() float64 { return float64(m.broker.Stats().HistoryEvents) },
		ReplayHistoryBytes:  func() float64 { return float64(m.broker.Stats().HistoryBytes) },

		RendersCompiled: func() float64 { return float64(m.renders.Compiled.Load()) },
		RendersExecutor: func() float64 { return float64(m.renders.Executor.Load()) },

		RefreshScheduled:      func() float64 { return float64(m.refresher.Stats().Scheduled) },
		RefreshOverdueSeconds: func() float64 { return m.refresher.Stats().Overdue.Seconds() },
	})
	m.service = &switchboard.Service{
		Store:     metrics.Store{Store: m.store, M: m.metrics},
		Broker:    m.broker,
		OAuth:     registry,
		Catalogue: registry,
		Logger:    m.Logger,
		// The OAuth window opens the gateway's start link first, which
		// binds the flow to that browser (docs/security-oauth.md).
		StartURL:    func(id string) string { return m.URL + "/oauth/start/" + url.PathEscape(id) },
		AuthRefused: m.metrics.ObserveOAuthRefusal,
		ReturnToAllowed: func(u string) bool {
			p, err := url.Parse(u)
			if err != nil || p.Scheme == "" || p.Host == "" {
				return false
			}
			o := origin(u)
			for _, a := range allowed {
				if strings.EqualFold(o, a) {
					return true
				}
			}
			return false
		},
	}
	m.refresher = refresher.New(m.service)
	m.service.Observers = append(m.service.Observers, m.refresher)
	m.service.TokenSource = m.refresher
	m.refresher.Interval = cfg.RefreshInterval
	m.refresher.FailureWindow = cfg.RefreshFailureWindow
	m.refresher.Observe = m.metrics.ObserveRefresh
	m.refresher.MinBackoff = cfg.RefreshMinBackoff
	m.refresher.MaxBackoff = cfg.RefreshMaxBackoff
	m.refresher.MinGap = cfg.RefreshMinGap
	m.refresher.Margin = func(id string) time.Duration {
		if pc, ok := registry.Config(id); ok {
			return pc.RefreshMargin
		}
		return 0
	}
	// An idle socket keeps only a small read buffer; write buffers are
	// lent for the length of a write.
	m.ws = gorillaws.New(gorillaws.Options{
		AllowedOrigins:  allowed,
		WriteTimeout:    cfg.WebsocketWriteTimeout,
		ReadBufferSize:  websocketReadBuffer,
		WriteBufferSize: websocketWriteBuffer,
		WriteBufferPool: websocketWritePool,
	})

	if cfg.Dev {
		if err := m.bootstrapDemo(ctx); err != nil {
			ln.Close()
			return err
		}
	}

	opts := httpapi.Options{
		Service:       m.service,
		Websocket:     m.ws,
		WrapWebsocket: nil, // set below
		Dev:           cfg.Dev,
		Logger:        m.Logger,
		Ready:         func() bool { return !m.draining.Load() },
		Revision:      m.store.Revision,

		IntegrationsVersion: m.store.IntegrationsVersion,
		Settings:            m.settingsPage(),
		Metrics:             m.metrics,
		SecureCookies:       strings.HasPrefix(m.URL, "https://"),

		TokenRate:            cfg.TokenRate,
		TokenBurst:           cfg.TokenBurst,
		CallbackRate:         cfg.CallbackRate,
		CallbackBurst:        cfg.CallbackBurst,
		WebsocketInitTimeout: cfg.WebsocketInitTimeout,
		ExecutorEvents:       cfg.ExecutorEvents,
		MaxFields:            cfg.MaxFields,
		MaxSelectionFields:   cfg.MaxSelectionFields,
		MaxMerges:            cfg.MaxMerges,
		Renders:              &m.renders,

		MetricsToken: cfg.MetricsToken,

		MaxPendingPerAddress:   cfg.MaxPendingPerAddress,
		MaxSocketsPerToken:     cfg.MaxSocketsPerToken,
		MaxSocketsPerWorkspace: cfg.MaxSocketsPerWorkspace,
	}
	opts.WrapWebsocket = m.ws.Middleware
	if m.sandbox != nil {
		opts.Sandbox = m.sandbox
	}
	api := httpapi.New(opts)
	m.service.TokensRevoked = api.TokensRevoked
	m.server = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: durationOr(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       durationOr(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      durationOr(cfg.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       durationOr(cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    intOr(cfg.MaxHeaderBytes, DefaultMaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}

	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("-metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.metrics.Handler())
		m.metricsServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, ErrorLog: slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn)}
		m.MetricsURL = "http://" + metricsLn.Addr().String() + "/metrics"
	}

	bgCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if metricsLn != nil {
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			if err := m.metricsServer.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.Logger.Error("metrics server", "err", err)
			}
		}()
	}
	m.bg.Add(3)
	go func() {
		defer m.bg.Done()
		if err := m.refresher.Run(bgCtx); err != nil {
			m.Logger.Error("token refresher stopped", "err", err)
		}
	}()
	go func() {
		defer m.bg.Done()
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server", "err", err)
		}
	}()
	go func() {
		defer m.bg.Done()
		_ = m.service.Run(bgCtx, time.Second)
	}()

	m.Logger.Info("serving", "url", m.URL, "data", cfg.DataDir, "dev", cfg.Dev, "revision", rev)
	if cfg.Dev && !isLoopback(addr) {
		m.Logger.Warn("dev mode on an address that is not loopback (-dev-allow-remote): the sandbox console is unauthenticated and the sandbox client secret is fixed", "addr", addr)
	}
	if cfg.Dev {
		m.printDevBanner()
	}
	return nil
}

// Close drains: readiness fails, the listener stops, in-flight requests
// (mutations among them) finish, websockets close with 1001, background
// work stops, and the store is closed last.
func (m *Main) Close() error {
	var err error
	m.closed.Do(func() {
		m.draining.Store(true)
		if m.server != nil {
			ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
			done := make(chan error, 1)
			go func() { done <- m.server.Shutdown(ctx) }()
			m.ws.Shutdown("server shutting down")
			if e := <-done; e != nil {
				err = errors.Join(err, fmt.Errorf("http shutdown: %w", e))
			}
			cancel()
		}
		if m.metricsServer != nil {
			_ = m.metricsServer.Close()
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.bg.Wait()
		if m.service != nil {
			m.service.Wait()
		}
		if m.broker != nil {
			_ = m.broker.Close()
		}
		if m.admin != nil {
			_ = m.admin.Close()
			_ = os.Remove(adminSocketPath(m.Config.DataDir))
		}
		if m.store != nil {
			if e := m.store.Close(); e != nil {
				err = errors.Join(err, e)
			}
		}
	})
	return err
}

// Demo workspace of dev mode.
const (
	DemoWorkspaceID = "ws_demo"
	DemoUserID      = "usr_demo_admin"
)

// bootstrapDemo creates the demo workspace (plan pure, so every category is
// available) and an admin token, written to <data>/demo-token. A restart
// reuses the token while it is still valid.
func (m *Main) bootstrapDemo(ctx context.Context) error {
	if _, err := m.store.FindWorkspaceByID(ctx, DemoWorkspaceID); switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		err = m.store.CreateWorkspace(ctx, &switchboard.Workspace{ID: DemoWorkspaceID, Name: "Demo workspace", Plan: switchboard.PlanPure, CreatedAt: time.Now().UTC()})
		if err != nil {
			return fmt.Errorf("create demo workspace: %w", err)
		}
	} else if err != nil {
		return err
	}
	if _, err := m.store.FindUserByID(ctx, DemoWorkspaceID, DemoUserID); switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		err = m.store.CreateUser(ctx, &switchboard.User{ID: DemoUserID, WorkspaceID: DemoWorkspaceID, Name: "Demo admin", Email: "admin@demo.test", Role: switchboard.RoleAdmin})
		if err != nil {
			return fmt.Errorf("create demo user: %w", err)
		}
	} else if err != nil {
		return err
	}
	path := filepath.Join(m.Config.DataDir, "demo-token")
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if p, err := m.service.Authenticate(ctx, tok); err == nil && p.WorkspaceID == DemoWorkspaceID {
			m.DemoToken = tok
			return nil
		}
	}
	tok, err := m.service.CreateAPIToken(ctx, &switchboard.APIToken{
		WorkspaceID: DemoWorkspaceID,
		UserID:      DemoUserID,
		Name:        "demo admin",
		Role:        switchboard.RoleAdmin,
		Scopes:      []string{switchboard.ScopeIntegrationsRead, switchboard.ScopeIntegrationsWrite, switchboard.ScopeTokensAdmin},
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write demo token: %w", err)
	}
	m.DemoToken = tok
	return nil
}

func (m *Main) printDevBanner() {
	fmt.Fprintf(m.Stdout, `
Switchboard is running in dev mode (data in %s).

  Playground  %s/playground
  Settings    %s
              (signs this browser in once; the link works for %s)
  Sandbox     %s/sandbox/     (the built-in OAuth provider)

  Workspace   Demo workspace (%s, plan pure)
  API token   %s
              (also in %s)

In the playground, set the request headers to
  {"Authorization": "Bearer %s"}

`, m.Config.DataDir, m.URL, m.SigninURL, web.DefaultCodeTTL, m.URL, DemoWorkspaceID, m.DemoToken,
		filepath.Join(m.Config.DataDir, "demo-token"), m.DemoToken)
}

// origin returns scheme://host[:port] of a URL.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.ToLower(p.Scheme + "://" + p.Host)
}

// NewSigninURL returns a fresh one-time sign-in link for the settings page
// (dev mode; "" otherwise).
func (m *Main) NewSigninURL() string {
	if m.signin == nil {
		return ""
	}
	return web.SigninURL(m.URL, m.signin.Issue(m.DemoToken))
}

// settingsPage is the live settings page. In dev mode it gets a one-time
// sign-in code for the demo token, printed in the banner as SigninURL.
func (m *Main) settingsPage() http.Handler {
	opts := web.Options{
		Dev:       m.Config.Dev,
		TokenFile: filepath.Join(m.Config.DataDir, "demo-token"),
		Origin:    origin(m.URL),
		Logger:    m.Logger,
		Authenticate: func(ctx context.Context, token string) error {
			_, err := m.service.Authenticate(ctx, token)
			return err
		},
	}
	if m.Config.Dev && m.DemoToken != "" {
		m.signin = web.NewLoginCodes(web.DefaultCodeTTL)
		opts.Codes = m.signin
		m.SigninURL = m.NewSigninURL()
	}
	return web.Handler(opts)
}

// Websocket buffers: messages larger than the read buffer are still read
// whole, in several reads.
const (
	websocketReadBuffer  = 256
	websocketWriteBuffer = 4096
)

var websocketWritePool = &sync.Pool{}
