// Package lookup is reid's person-search service: a versioned JSON API (POST /v1/search,
// GET /v1/sightings, crops, cameras, and watches that alert when a person is seen again; OpenAPI
// at /v1/openapi.json) and an embedded web page.
//
// Handlers depend only on the small interfaces below (Searcher, CropStore, Embedder), which the
// caller injects through Config. The index and the embedder may arrive later than the server
// starts (a large gallery takes a while to load, a model a while to initialise): until SetIndex is
// called /readyz and the search routes answer 503.
//
// Because this is a tool for finding people, every data request is authenticated (when API keys
// are configured), rate limited per key and written to an audit log.
package lookup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/lease"
)

// Searcher is the part of index.Index that lookups read.
type Searcher interface {
	Search(ctx context.Context, version string, query index.Query) ([][]index.Match, error)
	Get(ctx context.Context, version string, ids []string) ([]index.Item, error)
	TrackItems(ctx context.Context, version string, tracks []index.TrackRef, limit int) ([]index.Item, error)
}

// CropStore is the part of the crop store (cropstore.Local) that lookups read.
type CropStore interface {
	Metadata(ctx context.Context, id string) (cropstore.CropRecord, error)
	Image(ctx context.Context, id string) ([]byte, error)
	Cameras(ctx context.Context) ([]string, error)
	Walk(ctx context.Context, filter cropstore.Filter, fn func(cropstore.CropRecord) error) error
}

// Embedder turns decoded person crops into L2-normalised vectors of the active model version,
// one per image; *torch.Model implements it. The server decodes uploads itself, once, while
// validating them.
type Embedder interface {
	Embed(ctx context.Context, images []image.Image) ([][]float32, error)
}

// Config is everything a Server needs. Store is required; Index and Embedder may be nil at
// construction and set later with SetIndex / SetEmbedder.
type Config struct {
	Index    Searcher
	Store    CropStore
	Embedder Embedder
	// IndexVersion is the model version searched; "" is the active one.
	IndexVersion string

	// APIKeys are the accepted keys (see LoadAPIKeys). Empty disables authentication, which Serve
	// allows only on loopback unless AllowUnauthenticated is set.
	APIKeys              []string
	AllowUnauthenticated bool
	// AdminAPIKeys are accepted too, and may also erase crops (POST /v1/erasures). Without any
	// keys, only loopback clients may erase.
	AdminAPIKeys []string
	// ScopedAPIKeys are keys that see only some cameras (see scope.go).
	ScopedAPIKeys []KeyScope
	// RateLimit is searches per second per key (0: unlimited); Burst is the bucket size (default
	// 40). Cheap reads (crop metadata, thumbnails, cameras) cost a tenth of a search.
	RateLimit float64
	Burst     int
	// MaxUploadBytes bounds an uploaded image (default 10 MiB); MaxImagePixels bounds its
	// width*height, checked from the header before decoding (default 4096*4096).
	MaxUploadBytes int64
	MaxImagePixels int
	// CORSOrigins are the origins allowed to call the API from a browser ("*" for any).
	CORSOrigins []string
	// Audit receives one JSON line per data request. nil discards audit records (Serve logs a
	// warning); `reid serve` always sets it.
	Audit io.Writer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Collectors are served on /metrics beside the lookup's own (reid run adds the pipeline's).
	Collectors []prometheus.Collector

	// WatchServer, when set, is the base URL of the lookup server that keeps the watches: the
	// watch and alert routes are forwarded to it (see forward.go), and it keeps none itself. Or
	// it is WatchServerElect: the servers sharing WatchStore elect the one that keeps them
	// (election.go), which the others reach at its AdvertiseURL.
	WatchServer string
	// AdvertiseURL is this server's base URL as other lookup servers reach it (WatchServerElect).
	AdvertiseURL string
	// watchLeaseTTL is the election's lease period: watchLeaseTTL, shorter in tests.
	watchLeaseTTL time.Duration
	// WatchStore keeps the watches (POST /v1/watches) and their alerts; WatchDir, when it is nil,
	// names a directory for them. With neither, watches are off.
	WatchStore WatchStore
	WatchDir   string
	// Serve checks them every WatchInterval (0 leaves checking to the caller: CheckWatches) over
	// the crops seen in the last WatchWindow (default 10 minutes). WatchMinScore is a new watch's
	// default threshold (default 0.7).
	WatchInterval time.Duration
	WatchWindow   time.Duration
	WatchMinScore float64
	// ErasureRecorded, when set, is called after each erasure is recorded in the store: reid copies
	// the record into the newest backup with it (backup.CopyErasures).
	ErasureRecorded func(ctx context.Context)
	// ErasureSettle is how long an erasure waits before it looks again for crops of its tracks
	// that stages stored as it was being recorded (see handleErasure). Default
	// cropstore.ErasureRefresh and two seconds: every stage has then read the record, and a batch
	// that read it just before has been written.
	ErasureSettle time.Duration
	// Retention, when set, is the site's retention.max_age: an alert whose last crop is older is
	// deleted, as the crops it points to are, and so is a watch expired for longer.
	Retention time.Duration
	// RetentionPerCamera are cameras' own shorter periods (retention.per_camera): their alerts
	// go sooner, and so does a watch made from one of their crops, when that crop does.
	RetentionPerCamera map[string]time.Duration
	// AlertWebhook, when set, receives every alert (see webhook.go), signed with
	// AlertWebhookSecret when that is set. Serve delivers them.
	AlertWebhook       string
	AlertWebhookSecret string
	// ValidationDir is the site's labelled validation set (reid validation add), whose images
	// are copies of crops: an erasure removes the people an erased crop was one of.
	ValidationDir string
}

// ConfigFrom turns the lookup section of reid's configuration into the security and limit fields
// of a Config, reading the API key file. The caller adds Index, Store, Embedder and Audit.
func ConfigFrom(options config.Lookup) (Config, error) {
	keys, err := LoadAPIKeys(options.APIKeys, options.APIKeysFile)
	if err != nil {
		return Config{}, err
	}
	adminKeys, err := LoadAPIKeys(options.AdminAPIKeys, options.AdminAPIKeysFile)
	if err != nil {
		return Config{}, fmt.Errorf("admin keys: %w", err)
	}
	var scoped []KeyScope
	for _, scope := range options.ScopedAPIKeys {
		keys, err := LoadAPIKeys(scope.Keys, scope.KeysFile)
		if err != nil {
			return Config{}, fmt.Errorf("scope %s: %w", scope.Name, err)
		}
		scoped = append(scoped, KeyScope{Name: scope.Name, Cameras: scope.Cameras, Keys: keys,
			AlertWebhook: scope.AlertWebhook, AlertWebhookSecret: scope.AlertWebhookSecret})
	}
	if _, err := newKeyring(keys, adminKeys, scoped); err != nil {
		return Config{}, err
	}
	advertise := strings.TrimSuffix(options.AdvertiseURL, "/")
	if advertise == "" && options.WatchServer == WatchServerElect {
		if advertise, err = defaultAdvertiseURL(options.Addr); err != nil {
			return Config{}, err
		}
	}
	return Config{
		APIKeys:              keys,
		AdminAPIKeys:         adminKeys,
		ScopedAPIKeys:        scoped,
		AllowUnauthenticated: options.AllowUnauthenticated,
		RateLimit:            options.RateLimit,
		Burst:                options.Burst,
		MaxUploadBytes:       options.MaxUploadBytes,
		MaxImagePixels:       options.MaxImagePixels,
		CORSOrigins:          options.CORSOrigins,
		WatchInterval:        options.WatchInterval,
		WatchWindow:          options.WatchWindow,
		WatchMinScore:        options.WatchMinScore,
		WatchServer:          strings.TrimSuffix(options.WatchServer, "/"),
		AdvertiseURL:         advertise,
		AlertWebhook:         options.AlertWebhook,
		AlertWebhookSecret:   options.AlertWebhookSecret,
	}, nil
}

// SetKeys replaces the accepted keys with those of keys (its APIKeys, AdminAPIKeys and
// ScopedAPIKeys, as ConfigFrom reads them): a key removed from a file stops working with the
// next request, a scope's new cameras count from then on. A reload cannot turn authentication
// off, which would open the server to anyone who reaches it: a server that has keys refuses a set
// with none, and keeps its own.
func (s *Server) SetKeys(keys Config) error {
	ring, err := newKeyring(keys.APIKeys, keys.AdminAPIKeys, keys.ScopedAPIKeys)
	if err != nil {
		return err
	}
	if !ring.enabled() && s.keys.Load().enabled() {
		return errors.New("lookup: the new configuration has no API keys; a reload cannot turn authentication off (restart to do that)")
	}
	s.keys.Store(ring)
	return nil
}

// Server is the lookup HTTP service. Create it with New; it is an http.Handler.
type Server struct {
	config   Config
	logger   *slog.Logger
	index    atomic.Pointer[searcherBox]
	embedder atomic.Pointer[embedderBox]
	// switchMu serialises SetIndex, SetEmbedder and Switch (readers only load the pointers).
	switchMu sync.Mutex
	// keys is replaced whole by SetKeys; each request reads it once.
	keys    atomic.Pointer[keyring]
	limiter *limiter
	audit   *auditLog
	metrics *metrics
	// watches are the watches this server keeps: nil when watches are off, when another server
	// keeps them, and while an elected server is not the one elected.
	watches atomic.Pointer[watchList]
	// election is this server's part in electing the watch server (Config.WatchServer elect);
	// electedURL is the elected server's URL as it last read the lease.
	election   *lease.Lease
	electedURL atomic.Pointer[string]
	// forwarder sends the watch routes to the watch server, when another keeps the watches.
	forwarder *http.Client
	// erasing is held by an erasure, and shared by watch checks (see handleErasure).
	erasing sync.RWMutex
	handler http.Handler
	// routes lists every registered pattern; the OpenAPI test checks each is documented.
	routes []string
	now    func() time.Time
}

// searcherBox is the searched gallery with the embedder of its model (nil until it is loaded):
// a request takes both from one box.
type searcherBox struct {
	Searcher
	version  string
	embedder Embedder
}
type embedderBox struct{ Embedder }

// New checks config, fills defaults and builds the server.
func New(config Config) (*Server, error) {
	if config.Store == nil {
		return nil, errors.New("lookup: Config.Store is required")
	}
	if config.Burst <= 0 {
		config.Burst = 40
	}
	if config.RateLimit < 0 {
		return nil, fmt.Errorf("lookup: rate limit must be >= 0, not %v", config.RateLimit)
	}
	if config.MaxUploadBytes <= 0 {
		config.MaxUploadBytes = 10 << 20
	}
	if config.MaxImagePixels <= 0 {
		config.MaxImagePixels = 4096 * 4096
	}
	if config.Logger == nil {
		config.Logger = slog.Default()
	}
	if config.Now == nil {
		config.Now = time.Now
	}
	if config.WatchWindow <= 0 {
		config.WatchWindow = 10 * time.Minute
	}
	if config.ErasureSettle <= 0 {
		config.ErasureSettle = cropstore.ErasureRefresh + 2*time.Second
	}
	if config.WatchMinScore == 0 {
		config.WatchMinScore = 0.7
	}
	if config.WatchMinScore < 0 || config.WatchMinScore > 1 {
		return nil, fmt.Errorf("lookup: watch min score must be in (0, 1], not %v", config.WatchMinScore)
	}
	if config.WatchStore == nil && config.WatchDir != "" {
		store, err := DirWatchStore(config.WatchDir)
		if err != nil {
			return nil, err
		}
		config.WatchStore = store
	}
	if config.watchesForwarded() && config.WatchStore != nil {
		return nil, errors.New("lookup: a server that forwards its watches to a watch server keeps none itself (Config.WatchStore)")
	}
	var elected swapStore
	if config.WatchServer == WatchServerElect {
		var ok bool
		if elected, ok = config.WatchStore.(swapStore); !ok {
			return nil, errors.New("lookup: electing the watch server needs a watch store that can swap a file (a directory or a bucket's folder)")
		}
		if config.AdvertiseURL == "" {
			return nil, errors.New("lookup: electing the watch server needs this server's URL (Config.AdvertiseURL)")
		}
		checkCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := lease.CheckStore(checkCtx, elected)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("lookup: electing the watch server: %w; name one instead (lookup.watch_server: its URL)", err)
		}
	}
	if len(webhooksOf(config)) > 0 && config.WatchStore == nil {
		return nil, errors.New("lookup: an alert webhook needs watches (Config.WatchStore)")
	}
	ring, err := newKeyring(config.APIKeys, config.AdminAPIKeys, config.ScopedAPIKeys)
	if err != nil {
		return nil, err
	}
	server := &Server{
		config:  config,
		logger:  config.Logger,
		limiter: newLimiter(config.RateLimit, float64(config.Burst), config.Now),
		audit:   newAuditLog(config.Audit),
		metrics: newMetrics(),
		now:     config.Now,
	}
	server.keys.Store(ring)
	if config.WatchServer != "" {
		server.forwarder = &http.Client{Timeout: forwardTimeout}
	}
	if config.WatchServer != "" || config.WatchStore != nil {
		server.metrics.registry.MustRegister(server.metrics.watchServer)
	}
	switch {
	case elected != nil:
		// The watches are loaded when this server is elected (Serve).
		if config.watchLeaseTTL <= 0 {
			config.watchLeaseTTL = watchLeaseTTL
		}
		server.election = lease.New(elected, watchLeaseFile, lease.NewHolder(), config.AdvertiseURL, config.watchLeaseTTL, time.Now, config.Logger)
	case config.WatchStore != nil:
		// New has no context of its own; loading a bucket's watches is bounded instead.
		loadCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		list, err := openWatches(loadCtx, config.WatchStore, config.Logger)
		cancel()
		if err != nil {
			return nil, err
		}
		server.watches.Store(list)
		server.metrics.watches.Set(float64(list.count()))
		server.metrics.watchServer.Set(1)
	}
	for _, hook := range webhooksOf(config) {
		// Both outcomes are served from the start, so that an alert on increase(...) sees a zero
		// before the first failure rather than no series at all.
		server.metrics.webhook.WithLabelValues("delivered", hook.scope)
		server.metrics.webhook.WithLabelValues("failed", hook.scope)
	}
	for _, collector := range config.Collectors {
		if err := server.metrics.registry.Register(collector); err != nil {
			return nil, fmt.Errorf("lookup: metrics: %w", err)
		}
	}
	if config.Index != nil {
		server.SetIndex(config.Index, config.IndexVersion)
	}
	if config.Embedder != nil {
		server.SetEmbedder(config.Embedder)
	}
	server.handler = server.routesHandler()
	return server, nil
}

// SetIndex makes the server ready: searches go to the gallery of version ("" = the active one)
// in searcher from now on. Pin version to the model the embedder runs, so that uploaded images
// are never compared with another model's vectors. A nil searcher makes the server unready.
func (s *Server) SetIndex(searcher Searcher, version string) {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	if searcher == nil {
		s.index.Store(nil)
		return
	}
	s.index.Store(&searcherBox{Searcher: searcher, version: version, embedder: s.embedderOrNil()})
}

// SetEmbedder enables search by uploaded image.
func (s *Server) SetEmbedder(embedder Embedder) {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	s.setEmbedder(embedder)
	if current := s.index.Load(); current != nil {
		s.index.Store(&searcherBox{Searcher: current.Searcher, version: current.version, embedder: embedder})
	}
}

// Switch moves searches to another gallery and the embedder of its model in one step: a request
// sees either the old pair or the new one, never an upload embedded by one model searched in
// the other's gallery. reid run calls it when a new model version's gallery is complete.
func (s *Server) Switch(searcher Searcher, version string, embedder Embedder) {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	s.setEmbedder(embedder)
	s.index.Store(&searcherBox{Searcher: searcher, version: version, embedder: embedder})
}

func (s *Server) setEmbedder(embedder Embedder) {
	if embedder == nil {
		s.embedder.Store(nil)
		return
	}
	s.embedder.Store(&embedderBox{embedder})
}

// searcher returns the index and the version to search, or nil before SetIndex.
func (s *Server) searcher() *searcherBox { return s.index.Load() }

func (s *Server) embedderOrNil() Embedder {
	if box := s.embedder.Load(); box != nil {
		return box.Embedder
	}
	return nil
}

// ServeHTTP serves the API, the web page and the operational endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Routes lists the registered mux patterns ("METHOD /path").
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// Serve listens on addr and serves until ctx is cancelled, then shuts down gracefully (in-flight
// requests get up to 10 s). Without API keys it refuses a non-loopback addr unless
// Config.AllowUnauthenticated is set.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if err := s.exposureError(addr); err != nil {
		return err
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("lookup: %w", err)
	}
	return s.ServeListener(ctx, listener)
}

// ServeListener is Serve on an open listener, which it closes.
func (s *Server) ServeListener(ctx context.Context, listener net.Listener) error {
	if err := s.checkExposure(listener.Addr().String()); err != nil {
		listener.Close()
		return err
	}
	if s.config.Audit == nil {
		s.logger.Warn("lookup: no audit log configured; searches are not recorded")
	}
	httpServer := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	// The record of erasures is enforced once the index is ready, and not beyond the server's life.
	enforceCtx, stopEnforcing := context.WithCancel(ctx)
	var enforcing sync.WaitGroup
	enforcing.Go(func() { s.enforceErasures(enforceCtx) })
	defer enforcing.Wait()
	defer stopEnforcing()
	// The checks and deliveries stop with the server, whether ctx ended or the listener failed.
	watchCtx, stopWatches := context.WithCancel(ctx)
	var watching sync.WaitGroup
	switch list := s.watches.Load(); {
	case s.election != nil:
		watching.Go(func() { s.runElection(watchCtx) })
	case list != nil:
		watching.Go(func() { s.keepWatches(watchCtx, list) })
	}
	defer watching.Wait()
	defer stopWatches()
	var wait sync.WaitGroup
	shutdownDone := make(chan struct{})
	wait.Add(1)
	go func() {
		defer wait.Done()
		select {
		case <-ctx.Done():
		case <-shutdownDone:
			return
		}
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := httpServer.Shutdown(shutdownCtx); err != nil {
			s.logger.Warn("lookup: shutdown", "err", err)
		}
	}()
	s.logger.Info("lookup: serving", "addr", listener.Addr().String(), "auth", s.keys.Load().enabled())
	err := httpServer.Serve(listener)
	close(shutdownDone)
	wait.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		s.logger.Info("lookup: stopped")
		return nil
	}
	return fmt.Errorf("lookup: %w", err)
}

// checkExposure refuses to serve without keys anywhere but loopback, unless configured to, and
// warns when serving without keys.
func (s *Server) checkExposure(addr string) error {
	if err := s.exposureError(addr); err != nil {
		return err
	}
	switch {
	case s.keys.Load().enabled():
	case IsLoopback(addr):
		s.logger.Warn("lookup: no API keys configured; serving without authentication on loopback", "addr", addr)
	default:
		s.logger.Warn("lookup: no API keys configured and lookup.allow_unauthenticated is set: anyone who can reach this address can search for people", "addr", addr)
	}
	return nil
}

func (s *Server) exposureError(addr string) error { return ExposureError(addr, s.config) }

// ExposureError is why a server with config may not listen on addr: people can be searched for
// only with an API key, unless it listens on loopback or unauthenticated access is allowed.
func ExposureError(addr string, config Config) error {
	if len(config.APIKeys) > 0 || len(config.AdminAPIKeys) > 0 || len(config.ScopedAPIKeys) > 0 || IsLoopback(addr) || config.AllowUnauthenticated {
		return nil
	}
	return fmt.Errorf("lookup: refusing to listen on %s without API keys: set lookup.api_keys or lookup.api_keys_file, listen on 127.0.0.1, or set lookup.allow_unauthenticated", addr)
}

// IsLoopback reports whether a HOST:PORT address listens only on the loopback interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// hashKey is the SHA-256 of a key: what the keyring stores and compares, and (its prefix) the
// key id written to the audit log.
func hashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

func keyID(hash [32]byte) string { return "key-" + hex.EncodeToString(hash[:6]) }
