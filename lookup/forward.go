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

// forwardToWatchServer sends a watch or alert request on to the watch server and its answer back.
func (s *Server) forwardToWatchServer(w http.ResponseWriter, r *http.Request, call *call) error {
	watchServer, err := url.Parse(s.config.WatchServer)
	if err != nil {
		return fmt.Errorf("watch server %q: %w", s.config.WatchServer, err)
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
