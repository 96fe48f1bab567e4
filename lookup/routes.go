package lookup

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

//go:embed web openapi.json
var assets embed.FS

// apiError is an error with the HTTP status and message the client sees.
type apiError struct {
	status     int
	message    string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.message }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, message: fmt.Sprintf(format, args...)}
}

// call carries what a data handler reports back to the wrapper for the audit log.
type call struct {
	key     string
	params  map[string]any
	results int
	// admin is set for an admin key (lookup.admin_api_keys).
	admin bool
	// scope is the cameras a scoped key may see (lookup.scoped_api_keys); nil for all.
	scope *cameraScope
}

type apiHandler func(w http.ResponseWriter, r *http.Request, call *call) error

// Costs in rate-limit tokens: a search scans the gallery; a metadata or thumbnail read is a file
// read, and a results page shows dozens of thumbnails at once.
const (
	costSearch = 1.0
	costRead   = 0.1
)

func (s *Server) routesHandler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, handler http.Handler) {
		mux.Handle(pattern, handler)
		s.routes = append(s.routes, pattern)
	}
	web, err := fs.Sub(assets, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	handle("GET /{$}", s.page(web, "index.html"))
	handle("GET /static/{file}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.page(web, r.PathValue("file")).ServeHTTP(w, r)
	}))
	handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	handle("GET /readyz", http.HandlerFunc(s.handleReady))
	handle("GET /metrics", s.metrics.handler())
	handle("GET /v1/openapi.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		document, _ := assets.ReadFile("openapi.json")
		w.Header().Set("Content-Type", "application/json")
		w.Write(document)
	}))
	handle("POST /v1/search", s.api(costSearch, s.handleSearch))
	handle("POST /v1/export", s.api(costSearch, s.handleExport))
	handle("GET /v1/sightings", s.api(costSearch, s.handleSightings))
	handle("GET /v1/crops", s.api(costSearch, s.handleListCrops))
	handle("GET /v1/crops/{id}", s.api(costRead, s.handleCrop))
	handle("GET /v1/crops/{id}/image", s.api(costRead, s.handleCropImage))
	handle("GET /v1/cameras", s.api(costRead, s.handleCameras))
	handle("GET /v1/whoami", s.api(costRead, s.handleWhoAmI))
	watchRoute := func(handler apiHandler) apiHandler {
		if s.config.WatchServer == "" {
			return handler
		}
		return func(w http.ResponseWriter, r *http.Request, call *call) error {
			if s.watches.Load() != nil {
				return handler(w, r, call) // elected
			}
			return s.forwardToWatchServer(w, r, call)
		}
	}
	handle("POST /v1/watches", s.api(costSearch, watchRoute(s.handleCreateWatch)))
	handle("GET /v1/watches", s.api(costRead, watchRoute(s.handleListWatches)))
	handle("GET /v1/watches/{id}", s.api(costRead, watchRoute(s.handleGetWatch)))
	handle("GET /v1/watches/{id}/image", s.api(costRead, watchRoute(s.handleWatchImage)))
	handle("DELETE /v1/watches/{id}", s.api(costRead, watchRoute(s.handleDeleteWatch)))
	handle("GET /v1/alerts", s.api(costRead, watchRoute(s.handleAlerts)))
	handle("POST /v1/erasures", s.api(costSearch, s.handleErasure))
	handle("GET /v1/validation", s.api(costRead, s.handleValidation))
	handle("POST /v1/validation/people", s.api(costSearch, s.handleLabelPerson))
	// The catch-all answers unknown paths in JSON rather than the mux's plain text.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all also shadows the mux's own 405, so find the methods the path does take.
		var allowed []string
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = method
			if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
				allowed = append(allowed, method)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, errorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s; use %s", r.Method, truncateString(r.URL.Path, 100), strings.Join(allowed, " or ")))
			return
		}
		writeError(w, errorf(http.StatusNotFound, "no such route: %s %s (see /v1/openapi.json)", r.Method, truncateString(r.URL.Path, 100)))
	})
	return s.recoverPanics(s.securityHeaders(s.cors(s.metrics.instrument(mux))))
}

// page serves one embedded web file.
func (s *Server) page(web fs.FS, name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := fs.ReadFile(web, name)
		if err != nil || strings.Contains(name, "/") {
			writeError(w, errorf(http.StatusNotFound, "no such file: %s", name))
			return
		}
		contentType := map[string]string{
			".html": "text/html; charset=utf-8",
			".css":  "text/css; charset=utf-8",
			".js":   "text/javascript; charset=utf-8",
			".svg":  "image/svg+xml",
		}[path.Ext(name)]
		if contentType == "" {
			contentType = "application/octet-stream"
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(data)
	})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	status := map[string]any{
		"index":    s.searcher() != nil,
		"embedder": s.embedderOrNil() != nil,
	}
	if searcher := s.searcher(); searcher != nil {
		status["version"] = searcher.version
	}
	if s.searcher() == nil {
		status["status"] = "waiting for the index"
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, status)
		return
	}
	status["status"] = "ready"
	writeJSON(w, http.StatusOK, status)
}

// api wraps a data handler with authentication, rate limiting, error rendering and auditing.
// The handler's response is held back until its audit record is written: a request that cannot
// be audited is answered 503, without its data, so that no one sees people's sightings
// unrecorded.
func (s *Server) api(cost float64, handler apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held := &heldResponse{header: http.Header{}}
		call := &call{results: -1}
		err := s.authorize(r, call, cost)
		if err == nil {
			err = handler(held, r, call)
		}
		if err != nil {
			var apiErr *apiError
			if !errors.As(err, &apiErr) {
				apiErr = s.internal(r, err)
			}
			writeError(held, apiErr)
		}
		status := held.status
		if status == 0 {
			status = http.StatusOK
		}
		query := map[string]string{}
		for name, values := range r.URL.Query() {
			query[name] = truncateString(strings.Join(values, ","), 200)
		}
		auditErr := s.audit.write(AuditRecord{
			Time:    s.now().UTC(),
			Key:     call.key,
			Scope:   call.scope.String(),
			Remote:  r.RemoteAddr,
			Method:  r.Method,
			Route:   r.Pattern,
			Status:  status,
			Params:  call.params,
			Query:   query,
			Results: call.results,
		})
		if auditErr != nil {
			s.logger.Error("lookup: audit log write failed; request refused", "route", r.Pattern, "key", call.key, "err", auditErr)
			writeError(w, &apiError{status: http.StatusServiceUnavailable, message: "the audit log cannot be written, so no request is answered", retryAfter: 30 * time.Second})
			return
		}
		maps.Copy(w.Header(), held.header)
		w.WriteHeader(status)
		w.Write(held.body.Bytes())
	})
}

// heldResponse keeps what a handler writes until the request is audited.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(data []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(data)
}

func (s *Server) authorize(r *http.Request, call *call, cost float64) error {
	client := "ip:" + remoteIP(r)
	call.key = "anonymous"
	if keys := s.keys.Load(); keys.enabled() {
		presented := presentedKey(r)
		if presented == "" {
			return &apiError{status: http.StatusUnauthorized, message: "missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"}
		}
		identity, ok := keys.identify(presented)
		if !ok {
			return &apiError{status: http.StatusUnauthorized, message: "invalid API key"}
		}
		call.key, call.admin, call.scope, client = identity.id, identity.admin, identity.scope, identity.id
	}
	if ok, wait := s.limiter.take(client, cost); !ok {
		return &apiError{status: http.StatusTooManyRequests, message: fmt.Sprintf("rate limit exceeded: %.3g requests/s with bursts of %d; retry in %s", s.config.RateLimit, s.config.Burst, wait.Round(time.Millisecond)), retryAfter: wait}
	}
	return nil
}

// internal logs an unexpected error and hides its details from the client.
func (s *Server) internal(r *http.Request, err error) *apiError {
	switch {
	case errors.Is(err, context.Canceled):
		return errorf(499, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, "request timed out")
	case errors.Is(err, index.ErrNoActiveVersion):
		return &apiError{status: http.StatusServiceUnavailable, message: "the index has no active model version yet", retryAfter: 5 * time.Second}
	}
	s.logger.Error("lookup: request failed", "route", r.Pattern, "err", err)
	return errorf(http.StatusInternalServerError, "internal error (logged on the server)")
}

func writeJSON(w http.ResponseWriter, status int, value any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	encoder := json.NewEncoder(w)
	encoder.SetEscapeHTML(true)
	encoder.Encode(value)
}

func writeError(w http.ResponseWriter, err *apiError) {
	if err.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(err.retryAfter.Seconds()))))
	}
	if err.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="reid"`)
	}
	writeJSON(w, err.status, map[string]any{"error": err.message, "status": err.status})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if value := recover(); value != nil {
				if value == http.ErrAbortHandler {
					panic(value)
				}
				s.logger.Error("lookup: handler panic", "path", r.URL.Path, "panic", value)
				writeError(w, errorf(http.StatusInternalServerError, "internal error (logged on the server)"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy lets the page load only its own scripts, styles and images (blob: for
// thumbnails fetched with an API key).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := w.Header()
		header.Set("X-Content-Type-Options", "nosniff")
		header.Set("Referrer-Policy", "no-referrer")
		header.Set("X-Frame-Options", "DENY")
		header.Set("Content-Security-Policy", contentSecurityPolicy)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) corsAllowed(origin string) bool {
	return slices.Contains(s.config.CORSOrigins, "*") || slices.Contains(s.config.CORSOrigins, origin)
}

// cors answers preflights and marks responses readable by the configured origins only.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		allowed := s.corsAllowed(origin)
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Expose-Headers", "Retry-After")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				writeError(w, errorf(http.StatusForbidden, "origin %s is not allowed (lookup.cors_origins)", truncateString(origin, 100)))
				return
			}
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// thumbnailURL is where a crop's image is served.
func thumbnailURL(id string) string { return "/v1/crops/" + url.PathEscape(id) + "/image" }

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// cropError maps crop store errors to client errors.
func cropError(id string, err error) error {
	switch {
	case errors.Is(err, cropstore.ErrInvalidID):
		return errorf(http.StatusBadRequest, "%v", err)
	case errors.Is(err, cropstore.ErrNotFound):
		return errorf(http.StatusNotFound, "crop %s not found", truncateString(id, 100))
	}
	return err
}
