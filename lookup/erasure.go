package lookup

// POST /v1/erasures deletes a person's crops on request (a data subject's right to erasure): the
// crops named, and every crop of the tracks named, from the crop store and from every model
// version's gallery, with the watches made from them, the alerts that show them and the people of
// the validation set they are copies of. retention
// does the deleting; this is the API around it, and the watches' share.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/retention"
)

// Erasure request bounds: an erasure names what an operator has looked at, a person's sightings.
const (
	maxErasureCrops  = 1000
	maxErasureTracks = 100
	maxErasureReason = 500
)

// ErasureRequest is the body of POST /v1/erasures.
type ErasureRequest struct {
	CropIDs []string         `json:"crop_ids"`
	Tracks  []index.TrackRef `json:"tracks"`
	// Reason is why (a request's reference, say): the audit log keeps it with the crop ids. A dry
	// run may leave it out.
	Reason string `json:"reason"`
	// DryRun finds what would be erased and deletes nothing.
	DryRun bool `json:"dry_run"`
}

// ErasureResponse says what an erasure found and deleted.
type ErasureResponse struct {
	DryRun bool `json:"dry_run"`
	// CropIDs are the crops erased (or, in a dry run, that would be), sorted.
	CropIDs []string `json:"crop_ids"`
	// MissingCropIDs and MissingTracks were named but exist nowhere.
	MissingCropIDs []string         `json:"missing_crop_ids"`
	MissingTracks  []index.TrackRef `json:"missing_tracks"`
	// Crops and Vectors count what was deleted from the crop store and from all galleries.
	Crops   int `json:"crops"`
	Vectors int `json:"vectors"`
	// Watches were made from an erased crop and are deleted with their images; Alerts counts
	// the alerts deleted because they showed an erased crop.
	Watches []string `json:"watches"`
	Alerts  int      `json:"alerts"`
	// ValidationPeople are the people of the site's validation set (reid validation add) that
	// an erased crop was one of, removed with all their images.
	ValidationPeople []int `json:"validation_people"`
	// IndexCompacted says the index was compacted, so that the erased vectors leave its storage:
	// the embedded index has rewritten its files; Milvus has accepted a compaction, which it runs
	// in the background.
	IndexCompacted bool `json:"index_compacted"`
}

// erasableIndex is what erasure needs of the searched index: every gallery, and deletion.
// index.Index has it.
type erasableIndex interface {
	Searcher
	retention.EraseIndex
}

// erasableStore is what erasure needs of the crop store: deletion, and the record of erasures
// (cropstore.Local and S3 have both).
type erasableStore interface {
	retention.EraseStore
	RecordErasure(ctx context.Context, erasure cropstore.Erasure) error
}

func (s *Server) handleErasure(w http.ResponseWriter, r *http.Request, call *call) error {
	if err := s.mayAdminister(r, call, "erase"); err != nil {
		return err
	}
	var request ErasureRequest
	if err := readStrictJSON(w, r, &request, `{"crop_ids": [...], "tracks": [{"camera": ..., "track": ...}], "reason": ...}`); err != nil {
		return err
	}
	if err := checkErasureRequest(&request); err != nil {
		return err
	}
	// The audit log records who asked to erase what, and why, even when the erasure then fails.
	call.params = map[string]any{"reason": request.Reason, "dry_run": request.DryRun,
		"crop_ids": request.CropIDs, "tracks": request.Tracks}

	searcher := s.searcher()
	if searcher == nil {
		return errNotReady
	}
	vectors, indexOK := searcher.Searcher.(erasableIndex)
	store, storeOK := s.config.Store.(erasableStore)
	if !indexOK || !storeOK {
		return errorf(http.StatusNotImplemented, "this server's index or crop store cannot delete")
	}
	// Watch checks wait: an alert raised from a search made before the erasure must not bring
	// an erased crop back.
	s.erasing.Lock()
	defer s.erasing.Unlock()
	ctx := r.Context()
	if !request.DryRun {
		// Recorded first: from here on no stage stores these crops, or a crop of these tracks,
		// again (a track still in view, a replayed dead letter, a rewound consumer group).
		if err := store.RecordErasure(ctx, erasureOf(request, s.now())); err != nil {
			return err
		}
		if s.config.ErasureRecorded != nil {
			s.config.ErasureRecorded(ctx)
		}
	}
	found, err := retention.Find(ctx, store, vectors, retention.ErasureRequest{CropIDs: request.CropIDs, Tracks: request.Tracks})
	if err != nil {
		return err
	}
	response := ErasureResponse{DryRun: request.DryRun, CropIDs: orEmpty(found.CropIDs), MissingCropIDs: orEmpty(found.MissingCrops),
		MissingTracks: orEmpty(found.MissingTracks), Watches: []string{}, ValidationPeople: []int{}}
	// The record is written and the crops found; the rest always goes in one order, which makes
	// a failed erasure one that repeating finishes.
	erase := erasure{server: s, store: store, vectors: vectors, dryRun: request.DryRun, response: &response, call: call}
	if err := erase.crops(ctx, found.CropIDs, request.CropIDs); err != nil {
		return err
	}
	if !request.DryRun {
		if err := erase.again(ctx, request, found); err != nil {
			return err
		}
		if response.IndexCompacted, err = compactIndex(ctx, vectors); err != nil {
			return err
		}
	}
	call.results = len(response.CropIDs)
	if !request.DryRun {
		s.logger.Info("lookup: erased", "key", call.key, "reason", request.Reason, "crops", response.Crops,
			"vectors", response.Vectors, "watches", len(response.Watches), "alerts", response.Alerts)
	}
	writeJSON(w, http.StatusOK, response)
	return nil
}

// erasure deletes crops everywhere they are kept, adding what it deleted to response and to the
// audit record. The watches go first, while the crops can still be found from the tracks named;
// then the site's validation set; the crops and their vectors last. What was made from a crop
// named but no longer kept (a watch, a validation person) goes too.
type erasure struct {
	server   *Server
	store    retention.EraseStore
	vectors  erasableIndex
	dryRun   bool
	response *ErasureResponse
	call     *call
}

func (e erasure) crops(ctx context.Context, found, named []string) error {
	s, response := e.server, e.response
	erasedIDs := make(map[string]bool, len(found)+len(named))
	for _, id := range slices.Concat(found, named) {
		erasedIDs[id] = true
	}
	if list := s.watches.Load(); list != nil {
		watches, alerts, err := list.eraseCrops(ctx, erasedCrops{ids: erasedIDs}, e.dryRun)
		if err != nil {
			return err
		}
		response.Watches, response.Alerts = append(response.Watches, watches...), response.Alerts+alerts
		s.metrics.watches.Set(float64(list.count()))
	}
	if s.config.ValidationDir != "" {
		set, err := eval.OpenLabelledSet(s.config.ValidationDir)
		if err != nil {
			return err
		}
		people, err := set.RemoveCrops(erasedIDs, e.dryRun)
		if err != nil {
			return err
		}
		response.ValidationPeople = append(response.ValidationPeople, people...)
	}
	if e.dryRun {
		return nil
	}
	erased, err := retention.Erase(ctx, e.store, e.vectors, found)
	response.Crops, response.Vectors = response.Crops+erased.Crops, response.Vectors+erased.Vectors
	previous, _ := e.call.params["erased_crop_ids"].([]string)
	e.call.params["erased_crop_ids"] = slices.Concat(previous, found)
	e.call.params["crops"], e.call.params["vectors"] = response.Crops, response.Vectors
	s.metrics.erasedCrops.Add(float64(erased.Crops))
	return err
}

// compactIndex makes the index drop deleted vectors from its storage, where they stay until it
// compacts (the embedded index's log and older snapshot, Milvus's segments), so that erased ones
// leave the disk too. It says whether the index could.
func compactIndex(ctx context.Context, vectors erasableIndex) (bool, error) {
	compacter, ok := vectors.(interface{ Compact(context.Context) error })
	if !ok {
		return false, nil
	}
	if err := compacter.Compact(ctx); err != nil {
		return false, fmt.Errorf("erasure: compacting the index: %w", err)
	}
	return true, nil
}

// again looks for the crops of request a second time, once every stage has read the record of
// the erasure, and erases what it finds that found (the first look) did not: stages that checked
// the record just before it was written, or that run elsewhere and read it every
// cropstore.ErasureRefresh, may have stored a crop of these tracks meanwhile.
func (e erasure) again(ctx context.Context, request ErasureRequest, found retention.Found) error {
	select {
	case <-time.After(e.server.config.ErasureSettle):
	case <-ctx.Done():
		return ctx.Err()
	}
	// A track in view goes on: its crops stored meanwhile were seen up to now.
	seen := map[index.TrackRef]retention.Span{}
	for track, span := range found.Seen {
		if now := time.Now(); now.After(span.Last) {
			span.Last = now
		}
		seen[track] = span
	}
	again, err := retention.Find(ctx, e.store, e.vectors, retention.ErasureRequest{CropIDs: request.CropIDs, Tracks: request.Tracks, Seen: seen})
	if err != nil {
		return err
	}
	late := slices.DeleteFunc(slices.Clone(again.CropIDs), func(id string) bool {
		_, erasedBefore := slices.BinarySearch(found.CropIDs, id)
		return erasedBefore
	})
	if len(late) == 0 {
		return nil
	}
	e.server.logger.Warn("lookup: erasure found crops stored while it ran, and erased them too", "crops", len(late))
	if err := e.crops(ctx, late, nil); err != nil {
		return err
	}
	response := e.response
	response.CropIDs = slices.Sorted(slices.Values(slices.Concat(found.CropIDs, late)))
	response.MissingCropIDs = slices.DeleteFunc(response.MissingCropIDs, func(id string) bool { return slices.Contains(late, id) })
	response.MissingTracks = slices.DeleteFunc(response.MissingTracks, func(track index.TrackRef) bool { return !slices.Contains(again.MissingTracks, track) })
	return nil
}

// erasureOf is what the crop store keeps of a request, so that it never stores those crops
// again.
func erasureOf(request ErasureRequest, now time.Time) cropstore.Erasure {
	record := cropstore.Erasure{Time: now, CropIDs: request.CropIDs}
	for _, track := range request.Tracks {
		record.Tracks = append(record.Tracks, cropstore.ErasedTrack{Camera: track.Camera, Track: track.Track})
	}
	return record
}

// mayAdminister allows what changes a site's records (erasing, labelling) to admin keys, or, on a
// server without keys, to clients on its own machine: it is not for everyone who may search them.
func (s *Server) mayAdminister(r *http.Request, call *call, action string) error {
	if s.keys.Load().enabled() {
		if !call.admin {
			return errorf(http.StatusForbidden, "this key may not %s; that needs a key from lookup.admin_api_keys", action)
		}
		return nil
	}
	if ip := net.ParseIP(remoteIP(r)); ip == nil || !ip.IsLoopback() {
		return errorf(http.StatusForbidden, "without API keys only clients on the server's own machine may %s; configure lookup.admin_api_keys", action)
	}
	return nil
}

// readStrictJSON reads an application/json body of at most maxJSONBytes into value, refusing
// unknown fields; shape shows the client what to send.
func readStrictJSON(w http.ResponseWriter, r *http.Request, value any, shape string) error {
	if mediaType, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(mediaType) != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "send application/json: %s", shape)
	}
	if err := checkLength(r, maxJSONBytes); err != nil {
		return err
	}
	body, err := readLimited(http.MaxBytesReader(w, r.Body, maxJSONBytes), maxJSONBytes)
	if err != nil {
		return err
	}
	return decodeStrictJSON(body, value)
}

func checkErasureRequest(request *ErasureRequest) error {
	request.Reason = strings.TrimSpace(request.Reason)
	switch {
	case len(request.CropIDs) == 0 && len(request.Tracks) == 0:
		return errorf(http.StatusBadRequest, "name the crops (crop_ids) or tracks (tracks) to erase")
	case len(request.CropIDs) > maxErasureCrops:
		return errorf(http.StatusBadRequest, "too many crop_ids (%d; at most %d per request)", len(request.CropIDs), maxErasureCrops)
	case len(request.Tracks) > maxErasureTracks:
		return errorf(http.StatusBadRequest, "too many tracks (%d; at most %d per request)", len(request.Tracks), maxErasureTracks)
	case request.Reason == "" && !request.DryRun:
		return errorf(http.StatusBadRequest, "reason is required: the audit log keeps it with the erasure (a request's reference, say)")
	case len(request.Reason) > maxErasureReason:
		return errorf(http.StatusBadRequest, "reason is longer than %d bytes", maxErasureReason)
	}
	for _, id := range request.CropIDs {
		if _, err := cropstore.ParseID(id); err != nil {
			return errorf(http.StatusBadRequest, "crop_ids: %v", err)
		}
	}
	for _, track := range request.Tracks {
		if !config.ValidID(track.Camera) {
			return errorf(http.StatusBadRequest, "tracks: %q is not a camera id (letters, digits, '-', '_', '.')", truncateString(track.Camera, 70))
		}
		if track.Track <= 0 {
			return errorf(http.StatusBadRequest, "tracks: camera %s: track must be positive, not %d (erase untracked crops by id)", track.Camera, track.Track)
		}
	}
	return nil
}

// orEmpty makes a nil list an empty one, which JSON writes as [] rather than null.
func orEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
