package lookup

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// MatchJSON is one search result.
type MatchJSON struct {
	CropID string    `json:"crop_id"`
	Camera string    `json:"camera"`
	Time   time.Time `json:"time"`
	Track  int64     `json:"track"`
	Frame  int64     `json:"frame"`
	// Score is the cosine similarity to the query.
	Score float32 `json:"score"`
	// RerankDistance is the k-reciprocal distance that ordered the results when re-ranking was
	// asked for (smaller is closer).
	RerankDistance *float32 `json:"rerank_distance,omitempty"`
	// TrackScore is the cosine similarity of the query to the mean of the match's track (the
	// query crop left out), when track consensus ordered the results.
	TrackScore *float32 `json:"track_score,omitempty"`
	// RankScore is the score track consensus ordered the results by: 0.7 * track_score +
	// 0.3 * score, or score for a crop without a track.
	RankScore    *float32 `json:"rank_score,omitempty"`
	ThumbnailURL string   `json:"thumbnail_url"`
}

// Sighting is one continuous appearance: the matches of one track on one camera.
type Sighting struct {
	Camera     string    `json:"camera"`
	Track      int64     `json:"track"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
	BestScore  float32   `json:"best_score"`
	Count      int       `json:"count"`
	BestCropID string    `json:"best_crop_id"`
	// CropIDs are the sighting's matched crops in time order.
	CropIDs      []string `json:"crop_ids"`
	ThumbnailURL string   `json:"thumbnail_url"`
}

// SearchResponse is the body of a successful POST /v1/search.
type SearchResponse struct {
	Query     QueryJSON   `json:"query"`
	Matches   []MatchJSON `json:"matches"`
	Sightings []Sighting  `json:"sightings"`
	TookMS    float64     `json:"took_ms"`
}

// QueryJSON echoes what was searched for.
type QueryJSON struct {
	CropID      string `json:"crop_id,omitempty"`
	ImageWidth  int    `json:"image_width,omitempty"`
	ImageHeight int    `json:"image_height,omitempty"`
	K           int    `json:"k"`
	Rerank      bool   `json:"rerank"`
	// TrackConsensus says the results were ordered by their tracks as well (the default).
	TrackConsensus bool `json:"track_consensus"`
	// VectorFrom says where the query vector came from: "index", "embedder" (crop image) or
	// "upload".
	VectorFrom string `json:"vector_from"`
	// Model is the model version whose gallery was searched (and whose model embedded an image
	// query): after a model switch, a client sees which one answered.
	Model string `json:"model,omitempty"`
}

// SightingsResponse is the body of GET /v1/sightings.
type SightingsResponse struct {
	CropID string `json:"crop_id"`
	// Model is the model version whose gallery was searched.
	Model     string     `json:"model,omitempty"`
	Matches   int        `json:"matches"`
	Sightings []Sighting `json:"sightings"`
	TookMS    float64    `json:"took_ms"`
}

var errNotReady = &apiError{status: http.StatusServiceUnavailable, message: "the index is still loading; retry shortly", retryAfter: 5 * time.Second}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request, call *call) error {
	response, _, err := s.searchRequest(w, r, call)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, response)
	return nil
}

// searchRequest reads and answers a POST /v1/search (or export) request.
func (s *Server) searchRequest(w http.ResponseWriter, r *http.Request, call *call) (SearchResponse, searchRequest, error) {
	start := time.Now()
	request, err := parseSearchRequest(w, r, s.limits())
	if err != nil {
		return SearchResponse{}, request, err
	}
	call.params = request.auditParams()
	if err := scopeSearch(call.scope, request.CropID, &request.Filter); err != nil {
		return SearchResponse{}, request, err
	}
	searcher := s.searcher()
	if searcher == nil {
		return SearchResponse{}, request, errNotReady
	}
	vector, from, query, err := s.queryVector(r.Context(), searcher, request.CropID, request.Decoded)
	if err != nil {
		return SearchResponse{}, request, err
	}
	matches, err := search(r.Context(), searcher, vector, query, request.options())
	if err != nil {
		return SearchResponse{}, request, err
	}
	call.results = len(matches.matches)
	s.metrics.matches.Observe(float64(len(matches.matches)))
	return SearchResponse{
		Query: QueryJSON{
			CropID: request.CropID, ImageWidth: request.ImageWidth, ImageHeight: request.ImageHeight,
			K: request.K, Rerank: request.Rerank, TrackConsensus: request.TrackConsensus && !request.Rerank, VectorFrom: from,
			Model: matches.model(searcher.version),
		},
		Matches:   matches.json(),
		Sightings: groupSightings(matches.matches),
		TookMS:    float64(time.Since(start).Microseconds()) / 1000,
	}, request, nil
}

func (s *Server) handleSightings(w http.ResponseWriter, r *http.Request, call *call) error {
	start := time.Now()
	values := r.URL.Query()
	id := values.Get("crop")
	if _, err := parseCropID(id); err != nil {
		return err
	}
	k, err := parseK(values, defaultSightingsK)
	if err != nil {
		return err
	}
	filter, err := parseFilter(values)
	if err != nil {
		return err
	}
	rerank, err := parseBool(values, "rerank")
	if err != nil {
		return err
	}
	trackConsensus, err := parseBoolDefault(values, "track_consensus", true)
	if err != nil {
		return err
	}
	call.params = map[string]any{"crop_id": id, "k": k, "rerank": rerank, "track_consensus": trackConsensus}
	addFilterParams(call.params, filter)
	if err := scopeSearch(call.scope, id, &filter); err != nil {
		return err
	}
	searcher := s.searcher()
	if searcher == nil {
		return errNotReady
	}
	vector, _, query, err := s.queryVector(r.Context(), searcher, id, nil)
	if err != nil {
		return err
	}
	matches, err := search(r.Context(), searcher, vector, query, searchOptions{k: k, filter: filter, rerank: rerank, trackConsensus: trackConsensus})
	if err != nil {
		return err
	}
	sightings := groupSightings(matches.matches)
	call.results = len(sightings)
	writeJSON(w, http.StatusOK, SightingsResponse{
		CropID: id, Model: matches.model(searcher.version), Matches: len(matches.matches), Sightings: sightings,
		TookMS: float64(time.Since(start).Microseconds()) / 1000,
	})
	return nil
}

// queryVector finds the vector to search with: the indexed vector of a crop id (or the embedding
// of its stored image when the index lacks it), or the embedding of an upload. For an indexed
// crop it also says which crop and track the query is.
func (s *Server) queryVector(ctx context.Context, searcher *searcherBox, cropID string, upload image.Image) ([]float32, string, queryTrack, error) {
	picture := upload
	from := "upload"
	if cropID != "" {
		items, err := searcher.Get(ctx, searcher.version, []string{cropID})
		if err != nil {
			return nil, "", queryTrack{}, fmt.Errorf("index get: %w", err)
		}
		if len(items) > 0 && len(items[0].Vector) > 0 {
			query := queryTrack{cropID: cropID}
			if metadata := items[0].Metadata; metadata.Track >= 0 {
				query.track = &index.TrackRef{Camera: metadata.Camera, Track: metadata.Track}
			}
			return items[0].Vector, "index", query, nil
		}
		data, err := s.config.Store.Image(ctx, cropID)
		if err != nil {
			return nil, "", queryTrack{}, cropError(cropID, err)
		}
		if picture, err = decodeImage(data); err != nil {
			return nil, "", queryTrack{}, fmt.Errorf("stored crop %s: %w", cropID, err)
		}
		from = "embedder"
	}
	embedder := searcher.embedder
	if embedder == nil {
		return nil, "", queryTrack{}, &apiError{status: http.StatusServiceUnavailable, message: "the embedder is still loading: image search is not available yet", retryAfter: 5 * time.Second}
	}
	vectors, err := embedder.Embed(ctx, []image.Image{picture})
	if err != nil {
		return nil, "", queryTrack{}, fmt.Errorf("embed: %w", err)
	}
	if len(vectors) != 1 || len(vectors[0]) == 0 {
		return nil, "", queryTrack{}, fmt.Errorf("embed: got %d vectors for 1 image", len(vectors))
	}
	return vectors[0], from, queryTrack{}, nil
}

// searchResult is the ordered matches of one search, with re-ranking distances or track scores
// when those ordered them.
type searchResult struct {
	matches     []index.Match
	distances   []float32
	trackScores []float32 // NaN for a match without one
	rankScores  []float32
}

// searchOptions is how to search: the top k passing filter, ordered by k-reciprocal re-ranking
// when rerank is set, else by track consensus when trackConsensus is set, else by cosine.
type searchOptions struct {
	k              int
	filter         index.Filter
	rerank         bool
	trackConsensus bool
}

// model is the searched gallery's model version: pinned, or, where the index's active one was
// searched, the one its vectors carry.
func (r searchResult) model(pinned string) string {
	if pinned != "" || len(r.matches) == 0 {
		return pinned
	}
	return r.matches[0].Metadata.Model
}

func (r searchResult) json() []MatchJSON {
	out := make([]MatchJSON, len(r.matches))
	for i, match := range r.matches {
		out[i] = MatchJSON{
			CropID: match.ID, Camera: match.Metadata.Camera, Time: match.Metadata.Time.UTC(),
			Track: match.Metadata.Track, Frame: match.Metadata.Frame, Score: match.Score,
			ThumbnailURL: thumbnailURL(match.ID),
		}
		if r.distances != nil {
			distance := r.distances[i]
			out[i].RerankDistance = &distance
		}
		if r.trackScores != nil && !math.IsNaN(float64(r.trackScores[i])) {
			trackScore := r.trackScores[i]
			out[i].TrackScore = &trackScore
		}
		if r.rankScores != nil {
			rankScore := r.rankScores[i]
			out[i].RankScore = &rankScore
		}
	}
	return out
}

// SearchOptions is a search made outside the HTTP API.
type SearchOptions struct {
	K      int
	Filter index.Filter
	// Rerank orders the results by k-reciprocal re-ranking, ByCrop crop by crop; with neither,
	// track consensus orders them, as POST /v1/search does by default.
	Rerank, ByCrop bool
}

// Search finds and orders the matches of an image's embedding as POST /v1/search does, for
// callers outside the HTTP API (the reid search command).
func Search(ctx context.Context, searcher Searcher, version string, vector []float32, options SearchOptions) ([]MatchJSON, error) {
	result, err := search(ctx, &searcherBox{Searcher: searcher, version: version}, vector, queryTrack{},
		searchOptions{k: options.K, filter: options.Filter, rerank: options.Rerank, trackConsensus: !options.ByCrop})
	if err != nil {
		return nil, err
	}
	return result.json(), nil
}

func search(ctx context.Context, searcher *searcherBox, vector []float32, query queryTrack, options searchOptions) (searchResult, error) {
	k, filter, rerank := options.k, options.filter, options.rerank
	candidates := k
	switch {
	case rerank:
		candidates = rerankCandidates(k)
	case options.trackConsensus:
		candidates = consensusCandidates(k)
	}
	results, err := searcher.Search(ctx, searcher.version, index.Query{Vectors: [][]float32{vector}, K: candidates, Filter: filter})
	if err != nil {
		if errors.Is(err, index.ErrDimension) {
			return searchResult{}, fmt.Errorf("the embedder's vectors do not fit the gallery: %w", err)
		}
		return searchResult{}, fmt.Errorf("index search: %w", err)
	}
	if len(results) != 1 {
		return searchResult{}, fmt.Errorf("index search: %d result lists for 1 query", len(results))
	}
	matches := results[0]
	if options.trackConsensus && !rerank {
		return rankByTrack(ctx, searcher, vector, query, matches, filter, k)
	}
	if !rerank || len(matches) < 2 {
		if len(matches) > k {
			matches = matches[:k]
		}
		return searchResult{matches: matches}, nil
	}
	ids := make([]string, len(matches))
	for i, match := range matches {
		ids[i] = match.ID
	}
	items, err := searcher.Get(ctx, searcher.version, ids)
	if err != nil {
		return searchResult{}, fmt.Errorf("index get for re-ranking: %w", err)
	}
	vectors := make(map[string][]float32, len(items))
	for _, item := range items {
		vectors[item.ID] = item.Vector
	}
	gallery := make([][]float32, 0, len(matches))
	kept := matches[:0:0]
	for _, match := range matches {
		if v := vectors[match.ID]; len(v) == len(vector) {
			gallery = append(gallery, v)
			kept = append(kept, match)
		}
	}
	order, distances, err := kReciprocalRerank(ctx, vector, gallery)
	if err != nil {
		return searchResult{}, err
	}
	out := searchResult{}
	for _, position := range order {
		if len(out.matches) == k {
			break
		}
		out.matches = append(out.matches, kept[position])
		out.distances = append(out.distances, distances[position])
	}
	return out, nil
}

// groupSightings groups matches by (camera, track) into sightings ordered by first time. A match
// with a negative track (not tracked) is a sighting of its own.
func groupSightings(matches []index.Match) []Sighting {
	type key struct {
		camera string
		track  int64
		crop   string
	}
	groups := map[key]*Sighting{}
	var order []key
	members := map[key][]index.Match{}
	for _, match := range matches {
		k := key{camera: match.Metadata.Camera, track: match.Metadata.Track}
		if match.Metadata.Track < 0 {
			k.crop = match.ID
		}
		t := match.Metadata.Time.UTC()
		sighting, ok := groups[k]
		if !ok {
			sighting = &Sighting{Camera: k.camera, Track: k.track, First: t, Last: t, BestScore: match.Score, BestCropID: match.ID}
			groups[k] = sighting
			order = append(order, k)
		}
		sighting.Count++
		if t.Before(sighting.First) {
			sighting.First = t
		}
		if t.After(sighting.Last) {
			sighting.Last = t
		}
		if match.Score > sighting.BestScore {
			sighting.BestScore, sighting.BestCropID = match.Score, match.ID
		}
		members[k] = append(members[k], match)
	}
	sightings := make([]Sighting, 0, len(order))
	for _, k := range order {
		sighting := groups[k]
		list := members[k]
		sort.SliceStable(list, func(i, j int) bool { return list[i].Metadata.Time.Before(list[j].Metadata.Time) })
		for _, match := range list {
			sighting.CropIDs = append(sighting.CropIDs, match.ID)
		}
		sighting.ThumbnailURL = thumbnailURL(sighting.BestCropID)
		sightings = append(sightings, *sighting)
	}
	sort.SliceStable(sightings, func(i, j int) bool {
		if !sightings[i].First.Equal(sightings[j].First) {
			return sightings[i].First.Before(sightings[j].First)
		}
		if sightings[i].Camera != sightings[j].Camera {
			return sightings[i].Camera < sightings[j].Camera
		}
		return sightings[i].Track < sightings[j].Track
	})
	return sightings
}

// CropJSON is a crop's metadata as served by GET /v1/crops/{id}.
type CropJSON struct {
	ID           string        `json:"id"`
	Camera       string        `json:"camera"`
	Time         time.Time     `json:"time"`
	Frame        int64         `json:"frame"`
	Track        int64         `json:"track"`
	Box          cropstore.Box `json:"box"`
	Score        float32       `json:"detection_score"`
	Detector     string        `json:"detector"`
	ThumbnailURL string        `json:"thumbnail_url"`
}

func cropJSON(record cropstore.CropRecord) CropJSON {
	return CropJSON{
		ID: record.ID, Camera: record.Camera, Time: record.Time.UTC(), Frame: record.Frame,
		Track: record.Track, Box: record.Box, Score: record.Score, Detector: record.Detector,
		ThumbnailURL: thumbnailURL(record.ID),
	}
}

func (s *Server) handleCrop(w http.ResponseWriter, r *http.Request, call *call) error {
	id := r.PathValue("id")
	call.params = map[string]any{"crop_id": truncateString(id, 200)}
	if err := call.scope.checkCrop(id); err != nil {
		return err
	}
	record, err := s.config.Store.Metadata(r.Context(), id)
	if err != nil {
		return cropError(id, err)
	}
	call.results = 1
	writeJSON(w, http.StatusOK, cropJSON(record))
	return nil
}

func (s *Server) handleCropImage(w http.ResponseWriter, r *http.Request, call *call) error {
	id := r.PathValue("id")
	call.params = map[string]any{"crop_id": truncateString(id, 200)}
	if err := call.scope.checkCrop(id); err != nil {
		return err
	}
	image, err := s.config.Store.Image(r.Context(), id)
	if err != nil {
		return cropError(id, err)
	}
	call.results = 1
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Content-Length", strconv.Itoa(len(image)))
	// A crop id always names the same image, so browsers may keep it; private because it is
	// behind authentication and shows a person.
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.WriteHeader(http.StatusOK)
	w.Write(image)
	return nil
}

// CamerasResponse is the body of GET /v1/cameras.
type CamerasResponse struct {
	Cameras []CameraJSON `json:"cameras"`
}

// CameraJSON is one camera that has crops.
type CameraJSON struct {
	ID string `json:"id"`
}

func (s *Server) handleCameras(w http.ResponseWriter, r *http.Request, call *call) error {
	cameras, err := s.config.Store.Cameras(r.Context())
	if err != nil {
		return fmt.Errorf("cameras: %w", err)
	}
	response := CamerasResponse{Cameras: make([]CameraJSON, 0, len(cameras))}
	for _, camera := range cameras {
		if call.scope.sees(camera) {
			response.Cameras = append(response.Cameras, CameraJSON{ID: camera})
		}
	}
	call.results = len(response.Cameras)
	writeJSON(w, http.StatusOK, response)
	return nil
}

// CropsResponse is the body of GET /v1/crops.
type CropsResponse struct {
	Crops []CropJSON `json:"crops"`
	// More is true when the listing stopped at limit.
	More bool `json:"more"`
}

var errStopWalk = errors.New("stop walk")

// handleListCrops lists crops of one camera (or all of them) in time order from 'from' (newest
// first down from 'to' with order=newest), so a person can browse and click a crop to search with
// it.
func (s *Server) handleListCrops(w http.ResponseWriter, r *http.Request, call *call) error {
	values := r.URL.Query()
	limit := 60
	if raw := values.Get("limit"); raw != "" {
		parsed, err := strconv.Atoi(raw)
		if err != nil || parsed < 1 || parsed > maxListLimit {
			return errorf(http.StatusBadRequest, "limit must be an integer from 1 to %d, not %q", maxListLimit, truncateString(raw, 40))
		}
		limit = parsed
	}
	cameras, err := parseCameras(values, "camera")
	if err != nil {
		return err
	}
	if len(cameras) > 1 {
		return errorf(http.StatusBadRequest, "list one camera at a time (or none for all)")
	}
	from, err := parseTime(values, "from")
	if err != nil {
		return err
	}
	to, err := parseTime(values, "to")
	if err != nil {
		return err
	}
	filter := cropstore.Filter{From: from, To: to}
	switch order := values.Get("order"); order {
	case "", "oldest":
	case "newest":
		filter.Newest = true
	default:
		return errorf(http.StatusBadRequest, "order must be oldest or newest, not %q", truncateString(order, 40))
	}
	if len(cameras) == 1 {
		filter.Camera = cameras[0]
	}
	call.params = map[string]any{"camera": filter.Camera, "limit": limit, "newest": filter.Newest}
	if filter.Camera != "" && !call.scope.sees(filter.Camera) {
		return call.scope.refuse(filter.Camera)
	}
	if len(cameras) == 0 {
		// Across cameras the order is still time: each camera's first limit crops, merged.
		all, err := s.config.Store.Cameras(r.Context())
		if err != nil {
			return fmt.Errorf("list crops: %w", err)
		}
		cameras = slices.DeleteFunc(all, func(camera string) bool { return !call.scope.sees(camera) })
	}
	response := CropsResponse{Crops: []CropJSON{}}
	for _, camera := range cameras {
		filter.Camera = camera
		listed := 0
		err = s.config.Store.Walk(r.Context(), filter, func(record cropstore.CropRecord) error {
			if listed == limit {
				response.More = true
				return errStopWalk
			}
			response.Crops = append(response.Crops, cropJSON(record))
			listed++
			return nil
		})
		if err != nil && !errors.Is(err, errStopWalk) {
			return fmt.Errorf("list crops: %w", err)
		}
	}
	sort.SliceStable(response.Crops, func(i, j int) bool {
		if filter.Newest {
			return response.Crops[i].Time.After(response.Crops[j].Time)
		}
		return response.Crops[i].Time.Before(response.Crops[j].Time)
	})
	if len(response.Crops) > limit {
		response.Crops, response.More = response.Crops[:limit], true
	}
	call.results = len(response.Crops)
	writeJSON(w, http.StatusOK, response)
	return nil
}
