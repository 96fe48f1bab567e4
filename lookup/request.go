package lookup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// Request limits that are not configurable because no legitimate request comes near them.
const (
	maxJSONBytes      = 64 << 10
	maxFieldBytes     = 4 << 10
	maxMultipartParts = 32
	// multipartOverhead is what boundaries and headers may add to an upload in a form.
	multipartOverhead = 64 << 10
	maxK              = 500
	defaultK          = 20
	defaultSightingsK = 100
	maxListLimit      = 500
	minImageSide      = 8
)

// limits are the request limits a decoder enforces.
type limits struct {
	maxUploadBytes int64
	maxImagePixels int
}

func (s *Server) limits() limits {
	return limits{maxUploadBytes: s.config.MaxUploadBytes, maxImagePixels: s.config.MaxImagePixels}
}

// searchRequest is a decoded, validated POST /v1/search.
type searchRequest struct {
	CropID string
	// Image is the uploaded JPEG or PNG; Decoded is its pixels, decoded whole within the pixel
	// limit while the request was checked.
	Image       []byte
	Decoded     image.Image
	ImageFormat string
	ImageWidth  int
	ImageHeight int
	K           int
	Filter      index.Filter
	Rerank      bool
	// TrackConsensus (the default) orders results by their tracks as well (see consensus.go).
	TrackConsensus bool
}

func (r searchRequest) options() searchOptions {
	return searchOptions{k: r.K, filter: r.Filter, rerank: r.Rerank, trackConsensus: r.TrackConsensus}
}

// auditParams describes the request for the audit log without storing the image itself: its
// SHA-256 lets an auditor match it to a file.
func (r searchRequest) auditParams() map[string]any {
	params := map[string]any{"k": r.K, "rerank": r.Rerank, "track_consensus": r.TrackConsensus}
	if r.CropID != "" {
		params["crop_id"] = r.CropID
	}
	if len(r.Image) > 0 {
		params["image_sha256"] = imageDigest(r.Image)
		params["image_bytes"] = len(r.Image)
		params["image_size"] = fmt.Sprintf("%dx%d", r.ImageWidth, r.ImageHeight)
	}
	addFilterParams(params, r.Filter)
	return params
}

// imageDigest is an upload's SHA-256 in hex, what the audit log records of it.
func imageDigest(image []byte) string {
	sum := sha256.Sum256(image)
	return hex.EncodeToString(sum[:])
}

func addFilterParams(params map[string]any, filter index.Filter) {
	if len(filter.Cameras) > 0 {
		params["cameras"] = filter.Cameras
	}
	if len(filter.ExcludeCameras) > 0 {
		params["exclude_cameras"] = filter.ExcludeCameras
	}
	if !filter.From.IsZero() {
		params["from"] = filter.From
	}
	if !filter.To.IsZero() {
		params["to"] = filter.To
	}
	if filter.MinScore != 0 {
		params["min_score"] = filter.MinScore
	}
}

// searchJSON is the application/json form of a search: by crop id only (images are uploaded raw
// or as multipart).
type searchJSON struct {
	CropID         string   `json:"crop_id"`
	K              *int     `json:"k"`
	Cameras        []string `json:"cameras"`
	ExcludeCameras []string `json:"exclude_cameras"`
	From           string   `json:"from"`
	To             string   `json:"to"`
	MinScore       *float64 `json:"min_score"`
	Rerank         bool     `json:"rerank"`
	TrackConsensus *bool    `json:"track_consensus"`
}

// parseSearchRequest decodes a search from any of its three forms. Parameters may also come in
// the URL query; values in the body are added to them.
func parseSearchRequest(w http.ResponseWriter, r *http.Request, lim limits) (searchRequest, error) {
	form, err := readPersonQuery(w, r, lim, decodeSearchJSON)
	if err != nil {
		return searchRequest{}, err
	}
	request := searchRequest{
		CropID: form.cropID, Image: form.image, Decoded: form.decoded, ImageFormat: form.format,
		ImageWidth: form.width, ImageHeight: form.height,
	}
	values := form.values
	if request.K, err = parseK(values, defaultK); err != nil {
		return searchRequest{}, err
	}
	if request.Filter, err = parseFilter(values); err != nil {
		return searchRequest{}, err
	}
	if request.Rerank, err = parseBool(values, "rerank"); err != nil {
		return searchRequest{}, err
	}
	if request.TrackConsensus, err = parseBoolDefault(values, "track_consensus", true); err != nil {
		return searchRequest{}, err
	}
	return request, nil
}

// personQuery is a request that names a person by a crop id or an uploaded image, with its other
// parameters (from the URL query, the JSON body or the form's fields) in values.
type personQuery struct {
	values url.Values
	cropID string
	// image is the uploaded JPEG or PNG; decoded is its pixels, decoded whole within the pixel
	// limit while the request was checked.
	image         []byte
	decoded       image.Image
	format        string
	width, height int
}

// readPersonQuery reads a request in any of its three forms: application/json (decoded into
// values by decodeJSON, which names the fields it accepts), a raw image/jpeg or image/png body, or
// multipart/form-data with an 'image' file. Parameters may also come in the URL query; values in
// the body are added to them.
func readPersonQuery(w http.ResponseWriter, r *http.Request, lim limits, decodeJSON func(body []byte, values url.Values) error) (personQuery, error) {
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		return personQuery{}, errorf(http.StatusUnsupportedMediaType, "missing Content-Type: send application/json {\"crop_id\":...}, image/jpeg, image/png or multipart/form-data with an 'image' file")
	}
	mediaType, mediaParams, err := mime.ParseMediaType(contentType)
	if err != nil {
		return personQuery{}, errorf(http.StatusUnsupportedMediaType, "bad Content-Type %q: %v", truncateString(contentType, 100), err)
	}
	query := personQuery{values: url.Values{}}
	for name, list := range r.URL.Query() {
		query.values[name] = append([]string(nil), list...)
	}
	switch mediaType {
	case "application/json":
		if err := checkLength(r, maxJSONBytes); err != nil {
			return personQuery{}, err
		}
		body, err := readLimited(http.MaxBytesReader(w, r.Body, maxJSONBytes), maxJSONBytes)
		if err != nil {
			return personQuery{}, err
		}
		if err := decodeJSON(body, query.values); err != nil {
			return personQuery{}, err
		}
	case "image/jpeg", "image/png":
		if err := checkLength(r, lim.maxUploadBytes); err != nil {
			return personQuery{}, err
		}
		body, err := readLimited(http.MaxBytesReader(w, r.Body, lim.maxUploadBytes), lim.maxUploadBytes)
		if err != nil {
			return personQuery{}, err
		}
		query.image = body
		query.format = strings.TrimPrefix(mediaType, "image/")
	case "multipart/form-data":
		limit := lim.maxUploadBytes + multipartOverhead
		if err := checkLength(r, limit); err != nil {
			return personQuery{}, err
		}
		boundary := mediaParams["boundary"]
		if boundary == "" {
			return personQuery{}, errorf(http.StatusBadRequest, "multipart/form-data without a boundary")
		}
		image, err := readMultipart(multipart.NewReader(http.MaxBytesReader(w, r.Body, limit), boundary), query.values, lim)
		if err != nil {
			return personQuery{}, err
		}
		query.image = image
	default:
		return personQuery{}, errorf(http.StatusUnsupportedMediaType, "unsupported Content-Type %s: send application/json, image/jpeg, image/png or multipart/form-data", truncateString(mediaType, 100))
	}
	query.cropID = query.values.Get("crop_id")
	switch {
	case query.image == nil && query.cropID == "":
		return personQuery{}, errorf(http.StatusBadRequest, "nothing to search for: upload an image or give a crop_id")
	case query.image != nil && query.cropID != "":
		return personQuery{}, errorf(http.StatusBadRequest, "give an image or a crop_id, not both")
	}
	if query.cropID != "" {
		if _, err := parseCropID(query.cropID); err != nil {
			return personQuery{}, err
		}
	}
	if query.image != nil {
		format, decoded, err := checkImage(query.image, query.format, lim.maxImagePixels)
		if err != nil {
			return personQuery{}, err
		}
		query.format, query.decoded = format, decoded
		query.width, query.height = decoded.Bounds().Dx(), decoded.Bounds().Dy()
	}
	return query, nil
}

// decodeStrictJSON decodes one JSON value into value, refusing unknown fields: a misspelt
// parameter is an error, not a silently broader search.
func decodeStrictJSON(body []byte, value any) error {
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(value); err != nil {
		return errorf(http.StatusBadRequest, "bad JSON body: %v", err)
	}
	if decoder.More() {
		return errorf(http.StatusBadRequest, "bad JSON body: more than one value")
	}
	return nil
}

func decodeSearchJSON(body []byte, values url.Values) error {
	var decoded searchJSON
	if err := decodeStrictJSON(body, &decoded); err != nil {
		return err
	}
	setParam(values, "crop_id", decoded.CropID)
	if decoded.K != nil {
		values.Set("k", strconv.Itoa(*decoded.K))
	}
	if err := addCameraParams(values, decoded.Cameras, decoded.ExcludeCameras, decoded.MinScore); err != nil {
		return err
	}
	setParam(values, "from", decoded.From)
	setParam(values, "to", decoded.To)
	if decoded.Rerank {
		values.Set("rerank", "true")
	}
	if decoded.TrackConsensus != nil {
		values.Set("track_consensus", strconv.FormatBool(*decoded.TrackConsensus))
	}
	return nil
}

// setParam sets a parameter given in a JSON body; an empty one leaves the URL's.
func setParam(values url.Values, name, value string) {
	if value != "" {
		values.Set(name, value)
	}
}

// addCameraParams adds a JSON body's camera lists and minimum score to the parameters.
func addCameraParams(values url.Values, cameras, excludeCameras []string, minScore *float64) error {
	if cameras != nil {
		values["camera"] = append(values["camera"], cameras...)
		if len(cameras) == 0 {
			return errorf(http.StatusBadRequest, "cameras is empty: leave it out for every camera")
		}
	}
	values["exclude_camera"] = append(values["exclude_camera"], excludeCameras...)
	if minScore != nil {
		values.Set("min_score", strconv.FormatFloat(*minScore, 'g', -1, 64))
	}
	return nil
}

// readMultipart reads the form's fields into values and returns the bytes of its 'image' file.
func readMultipart(reader *multipart.Reader, values url.Values, lim limits) ([]byte, error) {
	var image []byte
	for parts := 0; ; parts++ {
		part, err := reader.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if tooLarge(err) {
				return nil, errorf(http.StatusRequestEntityTooLarge, "upload exceeds the %d-byte limit", lim.maxUploadBytes)
			}
			return nil, errorf(http.StatusBadRequest, "bad multipart body: %v", err)
		}
		if parts >= maxMultipartParts {
			return nil, errorf(http.StatusBadRequest, "bad multipart body: more than %d parts", maxMultipartParts)
		}
		name := part.FormName()
		switch {
		case name == "image":
			if image != nil {
				return nil, errorf(http.StatusBadRequest, "more than one 'image' part")
			}
			image, err = readLimited(part, lim.maxUploadBytes)
			if err != nil {
				return nil, err
			}
			if image == nil {
				image = []byte{}
			}
		case name == "":
			return nil, errorf(http.StatusBadRequest, "bad multipart body: a part has no form name")
		default:
			value, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
			if err != nil {
				if tooLarge(err) {
					return nil, errorf(http.StatusRequestEntityTooLarge, "upload exceeds the %d-byte limit", lim.maxUploadBytes)
				}
				return nil, errorf(http.StatusBadRequest, "bad multipart body: %v", err)
			}
			if len(value) > maxFieldBytes {
				return nil, errorf(http.StatusBadRequest, "form field %q is longer than %d bytes", truncateString(name, 40), maxFieldBytes)
			}
			values.Add(name, string(value))
		}
		part.Close()
	}
	return image, nil
}

// checkLength rejects a declared body larger than limit before reading any of it.
func checkLength(r *http.Request, limit int64) error {
	if r.ContentLength > limit {
		return errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes exceeds the %d-byte limit", r.ContentLength, limit)
	}
	return nil
}

// readLimited reads all of reader, failing with 413 past limit bytes.
func readLimited(reader io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(reader, limit+1))
	if err != nil {
		if tooLarge(err) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "request body exceeds the %d-byte limit", limit)
		}
		return nil, errorf(http.StatusBadRequest, "reading request body: %v", err)
	}
	if int64(len(data)) > limit {
		return nil, errorf(http.StatusRequestEntityTooLarge, "image exceeds the %d-byte limit", limit)
	}
	return data, nil
}

func tooLarge(err error) bool {
	var maxBytes *http.MaxBytesError
	return errors.As(err, &maxBytes)
}

var (
	jpegMagic = []byte{0xFF, 0xD8, 0xFF}
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
)

// checkImage makes sure data is a whole JPEG or PNG of sane size and decodes it: the header is
// read first, so a small file claiming enormous dimensions is refused before any pixel memory is
// allocated. declared is the format named by the Content-Type ("" when a form upload names none).
func checkImage(data []byte, declared string, maxPixels int) (format string, decoded image.Image, err error) {
	if len(data) == 0 {
		return "", nil, errorf(http.StatusBadRequest, "empty image: the upload has 0 bytes")
	}
	decodeConfig := jpeg.DecodeConfig
	switch {
	case bytes.HasPrefix(data, jpegMagic):
		format = "jpeg"
	case bytes.HasPrefix(data, pngMagic):
		format, decodeConfig = "png", png.DecodeConfig
	default:
		return "", nil, errorf(http.StatusUnsupportedMediaType, "not a JPEG or PNG image (it starts with % x)", data[:min(len(data), 8)])
	}
	if declared != "" && declared != format {
		return "", nil, errorf(http.StatusBadRequest, "Content-Type says image/%s but the body is a %s image", declared, strings.ToUpper(format))
	}
	header, err := decodeConfig(bytes.NewReader(data))
	if err != nil {
		return "", nil, errorf(http.StatusBadRequest, "cannot read the %s header: %v", strings.ToUpper(format), err)
	}
	width, height := header.Width, header.Height
	if width < minImageSide || height < minImageSide {
		return "", nil, errorf(http.StatusBadRequest, "image is %dx%d; a person crop must be at least %dx%d", width, height, minImageSide, minImageSide)
	}
	if int64(width)*int64(height) > int64(maxPixels) {
		return "", nil, errorf(http.StatusRequestEntityTooLarge, "image is %dx%d = %d pixels; the limit is %d", width, height, int64(width)*int64(height), maxPixels)
	}
	if decoded, err = decodeImage(data); err != nil {
		return "", nil, errorf(http.StatusBadRequest, "the %s image is corrupt or truncated: %v", strings.ToUpper(format), err)
	}
	return format, decoded, nil
}

// parseCropID validates an id from a client; cropstore.ParseID refuses anything that could name a
// path outside the store.
func parseCropID(id string) (cropstore.ParsedID, error) {
	if id == "" {
		return cropstore.ParsedID{}, errorf(http.StatusBadRequest, "crop id is required")
	}
	parsed, err := cropstore.ParseID(id)
	if err != nil {
		return cropstore.ParsedID{}, errorf(http.StatusBadRequest, "%v", err)
	}
	return parsed, nil
}

func parseK(values url.Values, fallback int) (int, error) {
	raw := values.Get("k")
	if raw == "" {
		return fallback, nil
	}
	k, err := strconv.Atoi(raw)
	if err != nil || k < 1 || k > maxK {
		return 0, errorf(http.StatusBadRequest, "k must be an integer from 1 to %d, not %q", maxK, truncateString(raw, 40))
	}
	return k, nil
}

func parseBool(values url.Values, name string) (bool, error) {
	return parseBoolDefault(values, name, false)
}

// parseBoolDefault reads a true/false parameter that is unset means fallback.
func parseBoolDefault(values url.Values, name string, fallback bool) (bool, error) {
	raw := values.Get(name)
	if raw == "" {
		return fallback, nil
	}
	value, err := strconv.ParseBool(raw)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "%s must be true or false, not %q", name, truncateString(raw, 40))
	}
	return value, nil
}

// parseFilter reads camera (repeated or comma-separated), exclude_camera, from, to (RFC 3339) and
// min_score (-1 to 1).
func parseFilter(values url.Values) (index.Filter, error) {
	var filter index.Filter
	var err error
	if filter.Cameras, err = parseCameras(values, "camera"); err != nil {
		return index.Filter{}, err
	}
	if filter.ExcludeCameras, err = parseCameras(values, "exclude_camera"); err != nil {
		return index.Filter{}, err
	}
	if filter.From, err = parseTime(values, "from"); err != nil {
		return index.Filter{}, err
	}
	if filter.To, err = parseTime(values, "to"); err != nil {
		return index.Filter{}, err
	}
	if !filter.From.IsZero() && !filter.To.IsZero() && filter.To.Before(filter.From) {
		return index.Filter{}, errorf(http.StatusBadRequest, "time range ends (to=%s) before it starts (from=%s)", filter.To.Format(time.RFC3339), filter.From.Format(time.RFC3339))
	}
	if raw := values.Get("min_score"); raw != "" {
		score, err := strconv.ParseFloat(raw, 32)
		if err != nil || score < -1 || score > 1 || score != score {
			return index.Filter{}, errorf(http.StatusBadRequest, "min_score must be a number from -1 to 1, not %q", truncateString(raw, 40))
		}
		filter.MinScore = float32(score)
	}
	return filter, nil
}

func parseCameras(values url.Values, name string) ([]string, error) {
	var cameras []string
	for _, list := range values[name] {
		for _, camera := range strings.Split(list, ",") {
			camera = strings.TrimSpace(camera)
			if camera == "" {
				continue
			}
			if !config.ValidID(camera) {
				return nil, errorf(http.StatusBadRequest, "%s %q is not a camera id (letters, digits, '-', '_', '.')", name, truncateString(camera, 70))
			}
			cameras = append(cameras, camera)
		}
	}
	if len(cameras) > 256 {
		return nil, errorf(http.StatusBadRequest, "too many cameras in %s (at most 256)", name)
	}
	return cameras, nil
}

func parseTime(values url.Values, name string) (time.Time, error) {
	raw := values.Get(name)
	if raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "%s must be an RFC 3339 time such as 2024-05-01T12:00:00Z, not %q", name, truncateString(raw, 60))
	}
	return t.UTC(), nil
}
