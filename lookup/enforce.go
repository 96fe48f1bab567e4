package lookup

// The crop store's record of erasures is the site's memory of what was erased; what it names must
// stay gone even when something older comes back: a data dir restored from a backup taken before
// an erasure, a Milvus collection restored from its own backup, a bucket rolled back. A lookup
// server therefore enforces the record once the index is ready: whatever the record names that
// the store, the galleries, the watches or the validation set still hold is erased again.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/retention"
)

// erasureRecord is the crop store's record of erasures; cropstore.Local and S3 have it.
type erasureRecord interface {
	retention.EraseStore
	Erasures(ctx context.Context) ([]cropstore.Erasure, error)
}

// EnforcedErasures says what EnforceErasures found still kept.
type EnforcedErasures struct {
	// Erasures is how many the record holds; CropIDs the crops that came back, erased again.
	Erasures int
	CropIDs  []string
	Crops    int
	Vectors  int
	Watches  []string
}

// EnforceErasures erases again whatever the record of erasures names that is still kept (see the
// file comment). It does nothing where the store keeps no record or the index cannot delete, and
// waits for the index to be ready.
func (s *Server) EnforceErasures(ctx context.Context) (EnforcedErasures, error) {
	var enforced EnforcedErasures
	store, ok := s.config.Store.(erasureRecord)
	if !ok {
		return enforced, nil
	}
	records, err := store.Erasures(ctx)
	if err != nil || len(records) == 0 {
		return enforced, err
	}
	enforced.Erasures = len(records)
	searcher, err := s.readySearcher(ctx)
	if err != nil {
		return enforced, err
	}
	vectors, ok := searcher.Searcher.(erasableIndex)
	if !ok {
		return enforced, nil
	}
	s.erasing.Lock()
	defer s.erasing.Unlock()
	response := ErasureResponse{Watches: []string{}, ValidationPeople: []int{}}
	audit := &call{key: "reid", params: map[string]any{"erasures": len(records)}}
	erase := erasure{server: s, store: store, vectors: vectors, response: &response, call: audit}
	for _, record := range records {
		// Through the galleries only: reading the store around every erased track at each start
		// would take minutes on a large site. A restored data dir brings its index back with its
		// crops, so the galleries find them.
		request := retention.ErasureRequest{CropIDs: record.CropIDs, GalleriesOnly: true}
		for _, track := range record.Tracks {
			request.Tracks = append(request.Tracks, index.TrackRef{Camera: track.Camera, Track: track.Track})
		}
		found, err := retention.Find(ctx, store, vectors, request)
		if err != nil {
			return enforced, err
		}
		if len(found.CropIDs) == 0 && len(record.CropIDs) == 0 {
			continue // the usual case: an erased track, long gone
		}
		// A watch made from a crop the record names goes even when the crop itself is gone.
		if err := erase.crops(ctx, found.CropIDs, record.CropIDs); err != nil {
			return enforced, err
		}
		enforced.CropIDs = append(enforced.CropIDs, found.CropIDs...)
	}
	enforced.Crops, enforced.Vectors, enforced.Watches = response.Crops, response.Vectors, response.Watches
	if len(enforced.CropIDs) == 0 && len(enforced.Watches) == 0 && len(response.ValidationPeople) == 0 {
		return enforced, nil
	}
	if _, err := compactIndex(ctx, vectors); err != nil {
		return enforced, err
	}
	audit.params["validation_people"] = response.ValidationPeople
	audit.params["watches"] = response.Watches
	if err := s.audit.write(AuditRecord{Time: s.now().UTC(), Key: audit.key, Route: "erasures enforced from the record",
		Status: 200, Params: audit.params, Results: len(enforced.CropIDs)}); err != nil {
		return enforced, fmt.Errorf("erasure record: audit log: %w", err)
	}
	return enforced, nil
}

// readySearcher waits for the index to be loaded.
func (s *Server) readySearcher(ctx context.Context) (*searcherBox, error) {
	for {
		if searcher := s.searcher(); searcher != nil {
			return searcher, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// enforceErasures runs EnforceErasures for Serve and says what it found.
func (s *Server) enforceErasures(ctx context.Context) {
	enforced, err := s.EnforceErasures(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.logger.Error("lookup: enforcing the record of erasures failed; restart to try again", "err", err)
	case len(enforced.CropIDs) > 0 || len(enforced.Watches) > 0:
		s.logger.Warn("lookup: crops the record of erasures names were kept again (an older backup restored?); erased them again",
			"erasures", enforced.Erasures, "crops", enforced.Crops, "vectors", enforced.Vectors, "watches", len(enforced.Watches))
	case enforced.Erasures > 0:
		s.logger.Info("lookup: record of erasures enforced; nothing it names is kept", "erasures", enforced.Erasures)
	}
}

// enforceOnWatches applies to the watches every erasure recorded since it last looked, by any
// server: one that forwards its watch routes to this one (lookup.watch_server) erases crops
// without seeing the watches made from them or the alerts that show them. CheckWatches calls it
// first, so that no check alerts on what another server has erased.
func (s *Server) enforceOnWatches(ctx context.Context, list *watchList) error {
	store, ok := s.config.Store.(erasureRecord)
	if !ok {
		return nil
	}
	records, err := store.Erasures(ctx)
	if err != nil {
		return fmt.Errorf("watches: reading the record of erasures: %w", err)
	}
	list.mu.Lock()
	applied := list.erasuresApplied
	list.mu.Unlock()
	// Records are never removed, so a longer record is a newer one.
	if len(records) == applied {
		return nil
	}
	erased := erasedCrops{ids: map[string]bool{}, tracks: map[index.TrackRef]bool{}}
	for _, record := range records {
		for _, id := range record.CropIDs {
			erased.ids[id] = true
		}
		for _, track := range record.Tracks {
			erased.tracks[index.TrackRef{Camera: track.Camera, Track: track.Track}] = true
		}
	}
	watches, alerts, err := list.eraseCrops(ctx, erased, false)
	s.metrics.watches.Set(float64(list.count()))
	if len(watches) > 0 || alerts > 0 {
		s.logger.Info("lookup: erasures recorded elsewhere applied to the watches", "watches", watches, "alerts", alerts)
		audited := s.audit.write(AuditRecord{Time: s.now().UTC(), Key: "reid", Route: "erasures applied to the watches from the record",
			Status: 200, Params: map[string]any{"erasures": len(records), "watches": watches, "alerts": alerts}})
		err = errors.Join(err, audited)
	}
	if err != nil {
		return fmt.Errorf("watches: applying the record of erasures: %w", err)
	}
	list.mu.Lock()
	list.erasuresApplied = len(records)
	list.mu.Unlock()
	return nil
}
