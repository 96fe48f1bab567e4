package lookup

// Several lookup servers behind a load balancer share the index and the crop store, but watches
// are kept, checked and alerted on by one of them (two checking the same watches would alert
// twice). The others forward the watch and alert routes to it (Config.WatchServer), so a client
// may reach any of them. Each forwarding server authenticates, rate limits and audits the request
// as its own first; the watch server then does the same with the same key (give both the same
// keys), including a scoped key's limits.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// forwardTimeout bounds a forwarded request: a long poll of alerts waits up to maxAlertWait.
const forwardTimeout = maxAlertWait + 15*time.Second

// forwardedHeaders are the request headers the watch server needs: the key, and what the body is.
var forwardedHeaders = []string{"Authorization", "X-API-Key", "Content-Type"}

// answerHeaders are the watch server's response headers that mean something to the client.
var answerHeaders = []string{"Content-Type", "Location", "Retry-After", "Cache-Control", "WWW-Authenticate"}

// forwardedHeader marks a request one lookup server forwarded to another: with an elected watch
// server, one that has just lost the lease answers it rather than forward it on (and back).
const forwardedHeader = "X-Reid-Forwarded-By"

// errNoWatchServer answers the watch routes while no server is known to keep the watches: an
// election is under way (the holder stopped, or has not started yet).
var errNoWatchServer = &apiError{status: http.StatusServiceUnavailable, retryAfter: 5 * time.Second,
	message: "no lookup server keeps the watches at the moment (the servers are electing one); try again shortly"}

// watchServerURL is where the watch routes go: the configured watch server, or the elected one.
func (s *Server) watchServerURL(r *http.Request) (string, error) {
	if s.election == nil {
		return s.config.WatchServer, nil
	}
	elected := s.electedURL.Load()
	if elected == nil || *elected == "" || *elected == s.config.AdvertiseURL || r.Header.Get(forwardedHeader) != "" {
		return "", errNoWatchServer
	}
	return *elected, nil
}

// forwardToWatchServer sends a watch or alert request on to the watch server and its answer back.
func (s *Server) forwardToWatchServer(w http.ResponseWriter, r *http.Request, call *call) error {
	base, err := s.watchServerURL(r)
	if err != nil {
		return err
	}
	watchServer, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("watch server %q: %w", base, err)
	}
	call.params = map[string]any{"forwarded_to": watchServer.Host}
	var body io.Reader
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodDelete {
		read, err := readLimited(r.Body, s.config.MaxUploadBytes+multipartOverhead)
		if err != nil {
			if tooLarge(err) {
				return errorf(http.StatusRequestEntityTooLarge, "the request is larger than %d bytes", s.config.MaxUploadBytes+multipartOverhead)
			}
			return errorf(http.StatusBadRequest, "reading the request: %v", err)
		}
		body = bytes.NewReader(read)
	}
	target := *watchServer
	target.Path, target.RawPath, target.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	request, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), body)
	if err != nil {
		return err
	}
	for _, name := range forwardedHeaders {
		if value := r.Header.Get(name); value != "" {
			request.Header.Set(name, value)
		}
	}
	request.Header.Set("X-Forwarded-For", remoteIP(r))
	if s.config.AdvertiseURL != "" {
		request.Header.Set(forwardedHeader, s.config.AdvertiseURL)
	}
	response, err := s.forwarder.Do(request)
	if err != nil {
		if r.Context().Err() != nil {
			return r.Context().Err()
		}
		s.logger.Warn("lookup: the watch server cannot be reached", "watch_server", watchServer.Host, "err", err)
		return &apiError{status: http.StatusBadGateway, message: fmt.Sprintf("the watch server %s cannot be reached; watches and alerts are kept there", watchServer.Host), retryAfter: 5 * time.Second}
	}
	defer response.Body.Close()
	answer, err := readLimited(response.Body, s.config.MaxUploadBytes+multipartOverhead)
	if err != nil {
		return &apiError{status: http.StatusBadGateway, message: fmt.Sprintf("the watch server %s answered with an unreadable body: %v", watchServer.Host, err)}
	}
	for _, name := range answerHeaders {
		if value := response.Header.Get(name); value != "" {
			w.Header().Set(name, value)
		}
	}
	call.params["status"] = response.StatusCode
	w.WriteHeader(response.StatusCode)
	w.Write(answer)
	return nil
}
