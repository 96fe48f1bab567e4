package lookup

// The watch routes: POST /v1/watches makes one, GET lists them or shows one with its alerts,
// DELETE removes one, and GET /v1/alerts long-polls for new alerts. watch.go has what they act on.

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reid-project/reid/index"
)

// watchJSON is the application/json form of POST /v1/watches.
type watchJSON struct {
	CropID         string   `json:"crop_id"`
	Name           string   `json:"name"`
	Cameras        []string `json:"cameras"`
	ExcludeCameras []string `json:"exclude_cameras"`
	MinScore       *float64 `json:"min_score"`
	ExpiresIn      string   `json:"expires_in"`
}

func decodeWatchJSON(body []byte, values url.Values) error {
	var decoded watchJSON
	if err := decodeStrictJSON(body, &decoded); err != nil {
		return err
	}
	setParam(values, "crop_id", decoded.CropID)
	setParam(values, "name", decoded.Name)
	setParam(values, "expires_in", decoded.ExpiresIn)
	return addCameraParams(values, decoded.Cameras, decoded.ExcludeCameras, decoded.MinScore)
}

func (s *Server) watchList() (*watchList, error) {
	list := s.watches.Load()
	switch {
	case list != nil:
		return list, nil
	case s.election != nil:
		return nil, errNoWatchServer // elected, and lost the lease since the route was chosen
	default:
		return nil, errorf(http.StatusNotFound, "watches are turned off on this server (lookup.watch_interval is 0)")
	}
}

func (s *Server) handleCreateWatch(w http.ResponseWriter, r *http.Request, call *call) error {
	watches, err := s.watchList()
	if err != nil {
		return err
	}
	form, err := readPersonQuery(w, r, s.limits(), decodeWatchJSON)
	if err != nil {
		return err
	}
	// Who asked to watch whom is audited even when the rest of the request is refused.
	call.params = map[string]any{}
	if form.cropID != "" {
		call.params["crop_id"] = form.cropID
	} else {
		call.params["image_sha256"] = imageDigest(form.image)
	}
	values := form.values
	now := s.now().UTC()
	watch := Watch{Name: strings.TrimSpace(values.Get("name")), Created: now, CreatedBy: call.key,
		Scope: call.scope.String(), QueryCropID: form.cropID, MinScore: float32(s.config.WatchMinScore)}
	if len(watch.Name) > maxWatchName {
		return errorf(http.StatusBadRequest, "name is longer than %d bytes", maxWatchName)
	}
	filter, err := parseFilter(values)
	if err != nil {
		return err
	}
	if !filter.From.IsZero() || !filter.To.IsZero() {
		return errorf(http.StatusBadRequest, "a watch looks at crops from now on; from and to do not apply")
	}
	if err := scopeSearch(call.scope, form.cropID, &filter); err != nil {
		return err
	}
	watch.Cameras, watch.ExcludeCameras = filter.Cameras, filter.ExcludeCameras
	if values.Get("min_score") != "" {
		if filter.MinScore <= 0 {
			return errorf(http.StatusBadRequest, "a watch's min_score must be above 0, not %g", filter.MinScore)
		}
		watch.MinScore = filter.MinScore
	}
	ttl := defaultWatchTTL
	if raw := values.Get("expires_in"); raw != "" {
		if ttl, err = time.ParseDuration(raw); err != nil || ttl <= 0 || ttl > maxWatchTTL {
			return errorf(http.StatusBadRequest, "expires_in must be a duration from 1s to %s, such as 72h, not %q", maxWatchTTL, truncateString(raw, 40))
		}
	}
	watch.Expires = now.Add(ttl)
	picture := form.image
	if form.cropID != "" {
		record, err := s.config.Store.Metadata(r.Context(), form.cropID)
		if err != nil {
			return cropError(form.cropID, err)
		}
		if picture, err = s.config.Store.Image(r.Context(), form.cropID); err != nil {
			return cropError(form.cropID, err)
		}
		if record.Track > 0 {
			watch.QueryTrack = &index.TrackRef{Camera: record.Camera, Track: record.Track}
		}
	}
	call.params["name"], call.params["min_score"], call.params["expires"] = watch.Name, watch.MinScore, watch.Expires
	addFilterParams(call.params, filter)
	created, err := watches.add(r.Context(), watch, picture)
	if err != nil {
		return err
	}
	call.params["watch"] = created.ID
	call.results = 1
	s.metrics.watches.Set(float64(watches.count()))
	w.Header().Set("Location", "/v1/watches/"+created.ID)
	writeJSON(w, http.StatusCreated, created)
	return nil
}

// WatchesResponse is the body of GET /v1/watches.
type WatchesResponse struct {
	Watches []Watch `json:"watches"`
}

func (s *Server) handleListWatches(w http.ResponseWriter, r *http.Request, call *call) error {
	watches, err := s.watchList()
	if err != nil {
		return err
	}
	list := slices.DeleteFunc(watches.list(s.now()), func(watch Watch) bool { return !call.scope.seesWatch(watch) })
	call.results = len(list)
	writeJSON(w, http.StatusOK, WatchesResponse{Watches: list})
	return nil
}

// WatchResponse is the body of GET /v1/watches/{id}: the watch and its alerts, newest first.
type WatchResponse struct {
	Watch  Watch   `json:"watch"`
	Alerts []Alert `json:"alerts"`
}

// pathWatch finds the watch a request's path names.
func (s *Server) pathWatch(r *http.Request, call *call) (*watchList, string, error) {
	watches, err := s.watchList()
	if err != nil {
		return nil, "", err
	}
	id := r.PathValue("id")
	call.params = map[string]any{"watch": truncateString(id, 40)}
	if !watchIDPattern.MatchString(id) {
		return nil, "", errorf(http.StatusBadRequest, "%q is not a watch id", truncateString(id, 40))
	}
	return watches, id, nil
}

func (s *Server) handleGetWatch(w http.ResponseWriter, r *http.Request, call *call) error {
	watches, id, err := s.pathWatch(r, call)
	if err != nil {
		return err
	}
	watch, alerts, _, ok := watches.get(id, s.now())
	if !ok || !call.scope.seesWatch(watch) {
		return errorf(http.StatusNotFound, "watch %s not found", id)
	}
	alerts = slices.DeleteFunc(alerts, func(alert Alert) bool { return !call.scope.seesAlert(watch, &alert) })
	call.results = len(alerts)
	writeJSON(w, http.StatusOK, WatchResponse{Watch: watch, Alerts: alerts})
	return nil
}

func (s *Server) handleWatchImage(w http.ResponseWriter, r *http.Request, call *call) error {
	watches, id, err := s.pathWatch(r, call)
	if err != nil {
		return err
	}
	watch, _, picture, ok := watches.get(id, s.now())
	if !ok || !call.scope.seesWatch(watch) {
		return errorf(http.StatusNotFound, "watch %s not found", id)
	}
	call.results = 1
	contentType := "image/jpeg"
	if strings.HasPrefix(string(picture), string(pngMagic)) {
		contentType = "image/png"
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.WriteHeader(http.StatusOK)
	w.Write(picture)
	return nil
}

func (s *Server) handleDeleteWatch(w http.ResponseWriter, r *http.Request, call *call) error {
	watches, id, err := s.pathWatch(r, call)
	if err != nil {
		return err
	}
	if watch, _, _, ok := watches.get(id, s.now()); ok && !call.scope.seesWatch(watch) {
		return errorf(http.StatusNotFound, "watch %s not found", id)
	}
	found, err := watches.remove(r.Context(), id)
	if err != nil {
		return err
	}
	if !found {
		return errorf(http.StatusNotFound, "watch %s not found", id)
	}
	call.results = 1
	s.metrics.watches.Set(float64(watches.count()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// AlertsResponse is the body of GET /v1/alerts.
type AlertsResponse struct {
	Alerts []Alert `json:"alerts"`
	// Next is the after= of the next poll: the last alert's seq, or the one asked for.
	Next int64 `json:"next"`
}

// handleAlerts lists alerts after a seq, waiting up to wait= for one to be raised (a long poll:
// an application keeps one open and is told within moments).
func (s *Server) handleAlerts(w http.ResponseWriter, r *http.Request, call *call) error {
	watches, err := s.watchList()
	if err != nil {
		return err
	}
	values := r.URL.Query()
	after := int64(-1)
	if raw := values.Get("after"); raw != "" {
		if after, err = strconv.ParseInt(raw, 10, 64); err != nil || after < 0 {
			return errorf(http.StatusBadRequest, "after must be an alert seq (an integer >= 0), not %q", truncateString(raw, 40))
		}
	}
	var wait time.Duration
	if raw := values.Get("wait"); raw != "" {
		if wait, err = time.ParseDuration(raw); err != nil || wait < 0 || wait > maxAlertWait {
			return errorf(http.StatusBadRequest, "wait must be a duration from 0s to %s, not %q", maxAlertWait, truncateString(raw, 40))
		}
	}
	limit := 100
	if raw := values.Get("limit"); raw != "" {
		if limit, err = strconv.Atoi(raw); err != nil || limit < 1 || limit > maxAlertsListed {
			return errorf(http.StatusBadRequest, "limit must be an integer from 1 to %d, not %q", maxAlertsListed, truncateString(raw, 40))
		}
	}
	watchID := values.Get("watch")
	if watchID != "" && !watchIDPattern.MatchString(watchID) {
		return errorf(http.StatusBadRequest, "%q is not a watch id", truncateString(watchID, 40))
	}
	call.params = map[string]any{"after": after, "watch": watchID}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		alerts, changed := watches.alertsAfter(after, watchID, call.scope, limit)
		if len(alerts) > 0 || after < 0 || wait == 0 {
			next := max(after, 0)
			if len(alerts) > 0 {
				next = alerts[len(alerts)-1].Seq
			}
			if alerts == nil {
				alerts = []Alert{}
			}
			call.results = len(alerts)
			writeJSON(w, http.StatusOK, AlertsResponse{Alerts: alerts, Next: next})
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			wait = 0
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
}
