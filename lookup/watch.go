package lookup

// Watches answer the question a search cannot: "tell me when this person is seen again". A watch
// is a standing search, made from a crop or an uploaded image, that the server repeats every
// lookup.watch_interval over the crops seen since the watch was made (within the last
// lookup.watch_window). Each new track whose
// track-consensus score reaches the watch's threshold raises one alert, which later crops of the
// same track extend rather than repeat, so a person walking past a camera for a minute is one
// alert, not sixty.
//
// The query image is kept with the watch, not its vector: after a model switch the watch is
// embedded again by the model of the gallery it searches. Watches and their alerts live in one
// JSON file each in the server's WatchStore (a directory, or a folder of the bucket), so a restart
// forgets nothing; alert numbers grow with the clock and across restarts, so a client that polls
// GET /v1/alerts?after=N never misses one.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// Watch bounds. Alerts beyond maxAlertsPerWatch drop the oldest: a watch that keeps alerting that
// often is matching someone else, and its threshold needs raising.
const (
	maxWatches        = 256
	maxAlertsPerWatch = 200
	maxAlertCrops     = 20
	maxWatchName      = 200
	defaultWatchTTL   = 7 * 24 * time.Hour
	maxWatchTTL       = 90 * 24 * time.Hour
	maxAlertWait      = 25 * time.Second
	maxAlertsListed   = 500
	// watchCandidates is how many matches one check ranks: the crops of a few dozen tracks.
	watchCandidates = 200
)

// Watch is a standing search for one person.
type Watch struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// CreatedBy is the key id (as in the audit log) of whoever made the watch.
	CreatedBy string `json:"created_by"`
	// Scope is the key scope (lookup.scoped_api_keys) that made the watch and alone sees it
	// besides unscoped keys; empty for an unscoped key's watch.
	Scope string `json:"scope,omitempty"`
	// QueryCropID is the crop the watch was made from; empty for an upload.
	QueryCropID string `json:"query_crop_id,omitempty"`
	// QueryTrack is that crop's track, which raises no alert: it is the sighting the watch was
	// made from.
	QueryTrack     *index.TrackRef `json:"query_track,omitempty"`
	Cameras        []string        `json:"cameras,omitempty"`
	ExcludeCameras []string        `json:"exclude_cameras,omitempty"`
	// MinScore is the alert threshold on a match's rank score (track consensus).
	MinScore float32 `json:"min_score"`
	// Alerts counts the alerts raised and kept.
	Alerts    int        `json:"alerts"`
	LastAlert *time.Time `json:"last_alert,omitempty"`
	Expired   bool       `json:"expired"`
	ImageURL  string     `json:"image_url"`
}

// Alert is one new sighting of a watched person: a track (or an untracked crop) on one camera.
type Alert struct {
	// Seq orders all alerts of the server; GET /v1/alerts?after=Seq returns the later ones.
	Seq       int64     `json:"seq"`
	WatchID   string    `json:"watch_id"`
	WatchName string    `json:"watch_name,omitempty"`
	Raised    time.Time `json:"raised"`
	Camera    string    `json:"camera"`
	Track     int64     `json:"track"`
	// First and Last are the times of the sighting's first and last matching crop so far.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Score is the best rank score (track consensus) of its crops; BestCropID is that crop.
	Score      float32 `json:"score"`
	BestCropID string  `json:"best_crop_id"`
	// CropIDs are the first matching crops in time order (at most 20); Crops counts them all
	// (those within the watch window when it was last looked at).
	CropIDs      []string `json:"crop_ids"`
	Crops        int      `json:"crops"`
	Model        string   `json:"model,omitempty"`
	ThumbnailURL string   `json:"thumbnail_url"`
}

// watchFile is one watch and its alerts as kept on disk; the query image is beside it.
type watchFile struct {
	Watch
	Alerts []*Alert `json:"alert_list"`
}

// watchEntry is a watch in memory.
type watchEntry struct {
	file  watchFile
	image []byte
	// vector is the query's embedding for the gallery in vectorFor (a searcherBox, which a model
	// switch replaces).
	vector    []float32
	vectorFor *searcherBox
}

// sightingKey names what one alert is about.
type sightingKey struct {
	camera string
	track  int64
	crop   string // untracked crops are sightings of their own
}

func alertKey(alert *Alert) sightingKey {
	if alert.Track > 0 {
		return sightingKey{camera: alert.Camera, track: alert.Track}
	}
	return sightingKey{camera: alert.Camera, crop: alert.BestCropID}
}

// watchList holds the watches and persists them in store.
type watchList struct {
	store   WatchStore
	mu      sync.Mutex
	entries map[string]*watchEntry
	lastSeq int64
	// changed is closed, and replaced, whenever an alert is raised: long polls wait on it.
	changed chan struct{}
	// erasuresApplied counts the records of erasures applied to the watches (enforceOnWatches).
	erasuresApplied int
}

var watchIDPattern = regexp.MustCompile(`^w[0-9a-f]{12}$`)

// openWatches loads the watches kept in store.
func openWatches(ctx context.Context, store WatchStore, logger *slog.Logger) (*watchList, error) {
	list := &watchList{store: store, entries: map[string]*watchEntry{}, changed: make(chan struct{})}
	names, err := store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("lookup: watches in %s: %w", store.Location(), err)
	}
	for _, name := range names {
		id, isWatch := strings.CutSuffix(name, ".json")
		if !isWatch || !watchIDPattern.MatchString(id) {
			continue
		}
		entry, err := list.load(ctx, id)
		if err != nil {
			// One damaged watch must not take the others (or the server) down with it.
			logger.Error("lookup: a watch cannot be read; it is skipped", "watch", id, "err", err)
			continue
		}
		list.entries[id] = entry
		for _, alert := range entry.file.Alerts {
			list.lastSeq = max(list.lastSeq, alert.Seq)
		}
	}
	return list, nil
}

func (l *watchList) load(ctx context.Context, id string) (*watchEntry, error) {
	data, err := l.store.Read(ctx, id+".json")
	if err != nil {
		return nil, err
	}
	var file watchFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s.json: %w", id, err)
	}
	if file.ID != id {
		return nil, fmt.Errorf("%s.json names watch %q", id, file.ID)
	}
	picture, err := l.store.Read(ctx, id+".img")
	if err != nil {
		return nil, err
	}
	return &watchEntry{file: file, image: picture}, nil
}

// save writes entry's file; the caller holds l.mu.
func (l *watchList) save(ctx context.Context, entry *watchEntry) error {
	data, err := json.Marshal(entry.file)
	if err != nil {
		return err
	}
	if err := l.store.Write(ctx, entry.file.ID+".json", data); err != nil {
		return fmt.Errorf("lookup: saving watch %s: %w", entry.file.ID, err)
	}
	return nil
}

// add stores a new watch with its query image.
func (l *watchList) add(ctx context.Context, watch Watch, picture []byte) (Watch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) >= maxWatches {
		return Watch{}, errorf(http.StatusConflict, "there are already %d watches, the most a server keeps; delete some first", maxWatches)
	}
	var random [6]byte
	if _, err := rand.Read(random[:]); err != nil {
		return Watch{}, err
	}
	watch.ID = "w" + hex.EncodeToString(random[:])
	entry := &watchEntry{file: watchFile{Watch: watch, Alerts: []*Alert{}}, image: picture}
	// The image first: a watch file without its image would be skipped at the next start.
	if err := l.store.Write(ctx, watch.ID+".img", picture); err != nil {
		return Watch{}, fmt.Errorf("lookup: saving watch image: %w", err)
	}
	if err := l.save(ctx, entry); err != nil {
		l.store.Remove(ctx, watch.ID+".img")
		return Watch{}, err
	}
	l.entries[watch.ID] = entry
	return entry.view(watch.Created), nil
}

// latestSeq is the seq of the newest alert ever raised here.
func (l *watchList) latestSeq() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeq
}

func (l *watchList) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// remove deletes a watch and its alerts; false when there is no such watch.
func (l *watchList) remove(ctx context.Context, id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.entries[id]; !ok {
		return false, nil
	}
	err := l.removeLocked(ctx, id)
	_, kept := l.entries[id]
	return !kept, err
}

// removeLocked deletes a watch's file, then its image; the caller holds l.mu.
func (l *watchList) removeLocked(ctx context.Context, id string) error {
	if err := l.store.Remove(ctx, id+".json"); err != nil {
		return fmt.Errorf("lookup: deleting watch %s: %w", id, err)
	}
	delete(l.entries, id)
	if err := l.store.Remove(ctx, id+".img"); err != nil {
		return fmt.Errorf("lookup: deleting watch image %s: %w", id, err)
	}
	return nil
}

// view is a watch as served at now.
func (entry *watchEntry) view(now time.Time) Watch {
	watch := entry.file.Watch
	watch.Expired = !now.Before(watch.Expires)
	watch.Alerts = len(entry.file.Alerts)
	watch.ImageURL = "/v1/watches/" + watch.ID + "/image"
	return watch
}

// list returns every watch, newest first.
func (l *watchList) list(now time.Time) []Watch {
	l.mu.Lock()
	defer l.mu.Unlock()
	watches := make([]Watch, 0, len(l.entries))
	for _, entry := range l.entries {
		watches = append(watches, entry.view(now))
	}
	sort.Slice(watches, func(i, j int) bool {
		if !watches[i].Created.Equal(watches[j].Created) {
			return watches[i].Created.After(watches[j].Created)
		}
		return watches[i].ID < watches[j].ID
	})
	return watches
}

// get returns a watch with its alerts, newest first.
func (l *watchList) get(id string, now time.Time) (Watch, []Alert, []byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	entry, ok := l.entries[id]
	if !ok {
		return Watch{}, nil, nil, false
	}
	alerts := make([]Alert, 0, len(entry.file.Alerts))
	for i := len(entry.file.Alerts) - 1; i >= 0; i-- {
		alerts = append(alerts, *entry.file.Alerts[i])
	}
	return entry.view(now), alerts, entry.image, true
}

// alertsAfter returns up to limit alerts with a Seq above after (of one watch when watchID is not
// empty) that scope sees, oldest first, and the channel that is closed when the next alert is
// raised.
func (l *watchList) alertsAfter(after int64, watchID string, scope *cameraScope, limit int) ([]Alert, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var alerts []Alert
	for id, entry := range l.entries {
		if watchID != "" && id != watchID {
			continue
		}
		for _, alert := range entry.file.Alerts {
			if alert.Seq > after && scope.seesAlert(entry.file.Watch, alert) {
				alerts = append(alerts, *alert)
			}
		}
	}
	sort.Slice(alerts, func(i, j int) bool { return alerts[i].Seq < alerts[j].Seq })
	if after < 0 && len(alerts) > limit {
		alerts = alerts[len(alerts)-limit:] // the latest, when the client has seen none yet
	}
	if len(alerts) > limit {
		alerts = alerts[:limit]
	}
	return alerts, l.changed
}

// toCheck returns the watches that have not expired, with the query vector each already has for
// box (nil when it needs embedding).
func (l *watchList) toCheck(now time.Time, box *searcherBox) []checkedWatch {
	l.mu.Lock()
	defer l.mu.Unlock()
	var watches []checkedWatch
	for _, entry := range l.entries {
		if !now.Before(entry.file.Expires) {
			continue
		}
		checked := checkedWatch{watch: entry.file.Watch, image: entry.image}
		if entry.vectorFor == box {
			checked.vector = entry.vector
		}
		watches = append(watches, checked)
	}
	sort.Slice(watches, func(i, j int) bool { return watches[i].watch.ID < watches[j].watch.ID })
	return watches
}

// checkedWatch is what one check needs of a watch.
type checkedWatch struct {
	watch  Watch
	image  []byte
	vector []float32
}

// keepVector remembers a watch's query vector for box.
func (l *watchList) keepVector(id string, box *searcherBox, vector []float32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if entry, ok := l.entries[id]; ok {
		entry.vector, entry.vectorFor = vector, box
	}
}

// record merges one check's sightings into a watch's alerts: a sighting it has no alert for yet
// raises one, the others extend theirs. It returns how many alerts were raised.
func (l *watchList) record(ctx context.Context, id string, sightings []*Alert, now time.Time) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	entry, ok := l.entries[id]
	if !ok || len(sightings) == 0 {
		return 0, nil // deleted while it was being checked
	}
	existing := make(map[sightingKey]*Alert, len(entry.file.Alerts))
	for _, alert := range entry.file.Alerts {
		existing[alertKey(alert)] = alert
	}
	raised, changed := 0, false
	for _, sighting := range sightings {
		alert, ok := existing[alertKey(sighting)]
		if !ok {
			l.lastSeq = max(l.lastSeq+1, now.UnixMicro())
			sighting.Seq, sighting.Raised = l.lastSeq, now.UTC()
			sighting.WatchID, sighting.WatchName = id, entry.file.Name
			entry.file.Alerts = append(entry.file.Alerts, sighting)
			raised++
			continue
		}
		changed = alert.extend(sighting) || changed
	}
	if raised > 0 {
		if extra := len(entry.file.Alerts) - maxAlertsPerWatch; extra > 0 {
			entry.file.Alerts = slices.Delete(entry.file.Alerts, 0, extra)
		}
		last := now.UTC()
		entry.file.LastAlert = &last
	}
	if raised == 0 && !changed {
		return 0, nil
	}
	err := l.save(ctx, entry)
	if raised > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return raised, err
}

// extend adds a later look at the same sighting to the alert; it reports whether anything changed.
// Each look sees the sighting's matching crops within the watch window, so the largest count of
// one look is the count.
func (a *Alert) extend(sighting *Alert) bool {
	if sighting.Crops <= a.Crops && !sighting.Last.After(a.Last) && sighting.Score <= a.Score {
		return false
	}
	a.Crops = max(a.Crops, sighting.Crops)
	for _, id := range sighting.CropIDs {
		if len(a.CropIDs) < maxAlertCrops && !slices.Contains(a.CropIDs, id) {
			a.CropIDs = append(a.CropIDs, id)
		}
	}
	sort.Strings(a.CropIDs)
	if sighting.First.Before(a.First) {
		a.First = sighting.First
	}
	if sighting.Last.After(a.Last) {
		a.Last = sighting.Last
	}
	if sighting.Score > a.Score {
		a.Score, a.BestCropID, a.ThumbnailURL = sighting.Score, sighting.BestCropID, sighting.ThumbnailURL
	}
	return true
}

// prune deletes the alerts whose last crop is before cutoff (retention deleted their crops), and
// the watches that expired before it, with their images: a person's picture is kept no longer
// than the crops are.
func (l *watchList) prune(ctx context.Context, cutoffs retentionCutoffs) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pruned := 0
	var errs []error
	for id, entry := range l.entries {
		if entry.file.Expires.Before(cutoffs.site) || cutoffs.expired(entry.file.QueryCropID) {
			errs = append(errs, l.removeLocked(ctx, id))
			continue
		}
		kept := entry.file.Alerts[:0]
		for _, alert := range entry.file.Alerts {
			if alert.Last.Before(cutoffs.of(alert.Camera)) {
				continue
			}
			kept = append(kept, alert)
		}
		if removed := len(entry.file.Alerts) - len(kept); removed > 0 {
			clear(entry.file.Alerts[len(kept):])
			entry.file.Alerts = kept
			pruned += removed
			errs = append(errs, l.save(ctx, entry))
		}
	}
	return pruned, errors.Join(errs...)
}

// retentionCutoffs are the times before which a site keeps nothing: site for every camera
// (zero: keep everything), perCamera for the cameras with shorter periods of their own.
type retentionCutoffs struct {
	site      time.Time
	perCamera map[string]time.Time
}

func newRetentionCutoffs(now time.Time, site time.Duration, perCamera map[string]time.Duration) retentionCutoffs {
	cutoffs := retentionCutoffs{perCamera: map[string]time.Time{}}
	if site > 0 {
		cutoffs.site = now.Add(-site)
	}
	for camera, period := range perCamera {
		cutoffs.perCamera[camera] = now.Add(-period)
	}
	return cutoffs
}

func (c retentionCutoffs) of(camera string) time.Time {
	if cutoff, ok := c.perCamera[camera]; ok {
		return cutoff
	}
	return c.site
}

// expired says whether a crop is older than its camera's own period: a watch made from it holds
// a copy of it, which goes when the crop does. (The site's period bounds a watch's expiry.)
func (c retentionCutoffs) expired(cropID string) bool {
	parsed, err := cropstore.ParseID(cropID)
	if err != nil {
		return false
	}
	cutoff, ok := c.perCamera[parsed.Camera]
	return ok && parsed.Time.Before(cutoff)
}

// erasedCrops names what an erasure took: crops by id, and whole tracks (every crop of each, the
// ones no index or store holds any more included).
type erasedCrops struct {
	ids    map[string]bool
	tracks map[index.TrackRef]bool
}

func (e erasedCrops) track(camera string, track int64) bool {
	return track > 0 && e.tracks[index.TrackRef{Camera: camera, Track: track}]
}

// eraseCrops drops what the watches keep of erased crops: a watch made from one goes with its
// image (a copy of the crop), and an alert that shows one goes whole (it is a sighting of the
// person). With dryRun it only counts. It returns the watches deleted and the alerts deleted
// from the others.
func (l *watchList) eraseCrops(ctx context.Context, erased erasedCrops, dryRun bool) (watches []string, alerts int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	watches = []string{} // a list in JSON even when empty
	var errs []error
	for id, entry := range l.entries {
		query := entry.file.QueryTrack
		if erased.ids[entry.file.QueryCropID] || query != nil && erased.track(query.Camera, query.Track) {
			watches = append(watches, id)
			if !dryRun {
				errs = append(errs, l.removeLocked(ctx, id))
			}
			continue
		}
		kept := make([]*Alert, 0, len(entry.file.Alerts))
		for _, alert := range entry.file.Alerts {
			if !erased.track(alert.Camera, alert.Track) && !erased.ids[alert.BestCropID] &&
				!slices.ContainsFunc(alert.CropIDs, func(crop string) bool { return erased.ids[crop] }) {
				kept = append(kept, alert)
			}
		}
		if removed := len(entry.file.Alerts) - len(kept); removed > 0 {
			alerts += removed
			if !dryRun {
				entry.file.Alerts = kept
				errs = append(errs, l.save(ctx, entry))
			}
		}
	}
	slices.Sort(watches)
	return watches, alerts, errors.Join(errs...)
}

// keepWatches checks list's watches and delivers their alerts until ctx ends: ServeListener runs
// it for the watches this server keeps, and runElection while this server is elected.
func (s *Server) keepWatches(ctx context.Context, list *watchList) {
	var keeping sync.WaitGroup
	if s.config.WatchInterval > 0 {
		keeping.Go(func() { s.RunWatches(ctx, s.config.WatchInterval) })
	}
	for _, hook := range webhooksOf(s.config) {
		keeping.Go(func() { s.deliverAlerts(ctx, list, hook) })
	}
	keeping.Wait()
}

// RunWatches checks the watches every interval until ctx ends. ServeListener runs it when watches
// are configured.
func (s *Server) RunWatches(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if _, err := s.CheckWatches(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("lookup: checking watches", "err", err)
		}
	}
}

// CheckWatches runs every live watch's search once over the crops seen within the watch window
// and records what it finds; it returns how many alerts were raised. A watch that fails is
// logged and the others are still checked.
func (s *Server) CheckWatches(ctx context.Context) (int, error) {
	list := s.watches.Load()
	if list == nil {
		return 0, errors.New("lookup: this server keeps no watches")
	}
	box := s.searcher()
	if box == nil {
		return 0, nil // not ready: the next check looks again
	}
	s.erasing.RLock()
	defer s.erasing.RUnlock()
	start := time.Now()
	now := s.now()
	raised := 0
	var errs []error
	if err := s.enforceOnWatches(ctx, list); err != nil {
		errs = append(errs, err)
	}
	for _, checked := range list.toCheck(now, box) {
		n, err := s.checkWatch(ctx, list, box, checked, now)
		raised += n
		if errors.Is(err, errNoWatchModel) {
			// reid serve opens the index before the model has loaded: the next check embeds it.
			s.logger.Debug("lookup: a watch waits for the model", "watch", checked.watch.ID)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return raised, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("watch %s: %w", checked.watch.ID, err))
		}
	}
	if s.config.Retention > 0 || len(s.config.RetentionPerCamera) > 0 {
		if _, err := list.prune(ctx, newRetentionCutoffs(now, s.config.Retention, s.config.RetentionPerCamera)); err != nil {
			errs = append(errs, err)
		}
		s.metrics.watches.Set(float64(list.count()))
	}
	s.metrics.alerts.Add(float64(raised))
	s.metrics.watchCheck.Observe(time.Since(start).Seconds())
	return raised, errors.Join(errs...)
}

func (s *Server) checkWatch(ctx context.Context, list *watchList, box *searcherBox, checked checkedWatch, now time.Time) (int, error) {
	watch := checked.watch
	vector := checked.vector
	if vector == nil {
		var err error
		if vector, err = s.watchVector(ctx, box, checked); err != nil {
			return 0, err
		}
		list.keepVector(watch.ID, box, vector)
	}
	from := watch.Created
	if windowStart := now.Add(-s.config.WatchWindow); windowStart.After(from) {
		from = windowStart
	}
	filter := index.Filter{Cameras: watch.Cameras, ExcludeCameras: watch.ExcludeCameras, From: from}
	query := queryTrack{cropID: watch.QueryCropID, track: watch.QueryTrack}
	result, err := search(ctx, box, vector, query, searchOptions{k: watchCandidates, filter: filter, trackConsensus: true})
	if err != nil {
		return 0, err
	}
	return list.record(ctx, watch.ID, watchSightings(watch, result, result.model(box.version)), now)
}

// watchVector embeds a watch's query image with the model of box's gallery, or, without a model,
// takes the query crop's own vector from that gallery.
func (s *Server) watchVector(ctx context.Context, box *searcherBox, checked checkedWatch) ([]float32, error) {
	if box.embedder == nil {
		if checked.watch.QueryCropID == "" {
			return nil, errNoWatchModel
		}
		items, err := box.Get(ctx, box.version, []string{checked.watch.QueryCropID})
		if err != nil {
			return nil, fmt.Errorf("index get: %w", err)
		}
		if len(items) == 0 || len(items[0].Vector) == 0 {
			return nil, errNoWatchModel // the query crop is not in the gallery: its image must be embedded
		}
		return items[0].Vector, nil
	}
	picture, err := decodeImage(checked.image)
	if err != nil {
		return nil, fmt.Errorf("query image: %w", err)
	}
	vectors, err := box.embedder.Embed(ctx, []image.Image{picture})
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	if len(vectors) != 1 || len(vectors[0]) == 0 {
		return nil, fmt.Errorf("embed: got %d vectors for 1 image", len(vectors))
	}
	return vectors[0], nil
}

// errNoWatchModel is a watch that cannot be embedded until the model of its gallery has loaded.
var errNoWatchModel = errors.New("no model loaded to embed the watch's image yet")

// watchSightings groups a check's matches that reach the watch's threshold into sightings, the
// query's own track left out.
func watchSightings(watch Watch, result searchResult, model string) []*Alert {
	bySighting := map[sightingKey]*Alert{}
	var order []sightingKey
	for i, match := range result.matches {
		score := match.Score
		if result.rankScores != nil {
			score = result.rankScores[i]
		}
		metadata := match.Metadata
		if score < watch.MinScore || match.ID == watch.QueryCropID ||
			watch.QueryTrack != nil && metadata.Track > 0 && *watch.QueryTrack == (index.TrackRef{Camera: metadata.Camera, Track: metadata.Track}) {
			continue
		}
		key := sightingKey{camera: metadata.Camera, track: metadata.Track}
		if metadata.Track <= 0 {
			key = sightingKey{camera: metadata.Camera, crop: match.ID}
		}
		t := metadata.Time.UTC()
		alert := bySighting[key]
		if alert == nil {
			alert = &Alert{Camera: metadata.Camera, Track: metadata.Track, First: t, Last: t, Score: score,
				BestCropID: match.ID, Model: model, ThumbnailURL: thumbnailURL(match.ID)}
			bySighting[key] = alert
			order = append(order, key)
		}
		alert.CropIDs = append(alert.CropIDs, match.ID)
		alert.First, alert.Last = minTime(alert.First, t), maxTime(alert.Last, t)
		if score > alert.Score {
			alert.Score, alert.BestCropID, alert.ThumbnailURL = score, match.ID, thumbnailURL(match.ID)
		}
	}
	sightings := make([]*Alert, 0, len(order))
	for _, key := range order {
		alert := bySighting[key]
		sort.Strings(alert.CropIDs) // crop ids begin with camera and time: time order
		alert.Crops = len(alert.CropIDs)
		if len(alert.CropIDs) > maxAlertCrops {
			alert.CropIDs = alert.CropIDs[:maxAlertCrops]
		}
		sightings = append(sightings, alert)
	}
	// The earliest sighting raises the first alert.
	sort.SliceStable(sightings, func(i, j int) bool { return sightings[i].First.Before(sightings[j].First) })
	return sightings
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
