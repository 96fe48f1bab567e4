package lookup

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/lookup/lookuptest"
)

var fuzzLimits = limits{maxUploadBytes: 1 << 20, maxImagePixels: 1 << 20}

func seedImages() [][]byte {
	people := lookuptest.Identities(2, 1)
	jpeg := lookuptest.Crop(people[0], 1, false)
	png := lookuptest.Crop(people[1], 2, true)
	return [][]byte{jpeg, png, jpeg[:len(jpeg)/2], png[:100], {}, []byte("GIF89a"), {0xFF, 0xD8, 0xFF, 0xE0}}
}

// checkDecoderError fails unless err is nil or a client error with a message.
func checkDecoderError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var apiErr *apiError
	if !errors.As(err, &apiErr) {
		t.Fatalf("decoder returned a non-API error: %v", err)
	}
	if apiErr.status < 400 || apiErr.status > 499 || apiErr.message == "" {
		t.Fatalf("decoder error %d %q is not a 4xx with a message", apiErr.status, apiErr.message)
	}
}

func checkSearchRequest(t *testing.T, request searchRequest) {
	t.Helper()
	if (request.CropID == "") == (request.Image == nil) {
		t.Fatalf("want exactly one of crop id and image: %q, %d bytes", request.CropID, len(request.Image))
	}
	if request.K < 1 || request.K > maxK {
		t.Fatalf("k %d accepted", request.K)
	}
	if request.CropID != "" {
		if _, err := cropstore.ParseID(request.CropID); err != nil {
			t.Fatalf("invalid crop id accepted: %v", err)
		}
	}
	if (request.Image == nil) != (request.Decoded == nil) {
		t.Fatalf("%d bytes uploaded, decoded image %v", len(request.Image), request.Decoded)
	}
	if request.Image != nil && (request.ImageWidth < minImageSide || request.ImageHeight < minImageSide ||
		request.ImageWidth*request.ImageHeight > fuzzLimits.maxImagePixels) {
		t.Fatalf("image %dx%d accepted", request.ImageWidth, request.ImageHeight)
	}
	if f := request.Filter; !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		t.Fatal("reversed time range accepted")
	}
}

func FuzzParseSearchRequest(f *testing.F) {
	id := cropstore.NewID("cam-1", testStart, 10, 2)
	for _, image := range seedImages() {
		f.Add("image/jpeg", "k=5&camera=cam-1", image)
		f.Add("image/png", "", image)
	}
	f.Add("application/json", "", []byte(`{"crop_id":"`+id+`","k":3,"cameras":["a"],"from":"2024-05-01T00:00:00Z","min_score":0.5,"rerank":true}`))
	f.Add("application/json", "rerank=yes", []byte(`{"crop_id":"../x"}`))
	f.Add("application/json", "track_consensus=0", []byte(`{"crop_id":"x","track_consensus":false}`))
	f.Add("application/json; charset=utf-8", "", []byte(`{"crop_id":"`+id+`"} {}`))
	f.Add("application/json", "k=-1", []byte(`{"k":1e99}`))
	f.Add("text/plain", "", []byte("hello"))
	f.Add("", "", []byte{})
	f.Add("image/jpeg; x", "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", []byte{})
	f.Fuzz(func(t *testing.T, contentType, query string, body []byte) {
		request := httptest.NewRequest("POST", "/v1/search", bytes.NewReader(body))
		request.URL.RawQuery = query
		if contentType != "" {
			request.Header.Set("Content-Type", contentType)
		}
		parsed, err := parseSearchRequest(httptest.NewRecorder(), request, fuzzLimits)
		checkDecoderError(t, err)
		if err == nil {
			checkSearchRequest(t, parsed)
		}
	})
}

func FuzzMultipartSearch(f *testing.F) {
	for _, image := range seedImages() {
		var body bytes.Buffer
		writer := multipart.NewWriter(&body)
		writer.SetBoundary("fuzzboundary")
		writer.WriteField("k", "4")
		writer.WriteField("camera", "cam-a,cam-b")
		part, _ := writer.CreateFormFile("image", "crop.jpg")
		part.Write(image)
		writer.Close()
		f.Add(body.Bytes())
	}
	f.Add([]byte("--fuzzboundary\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\r\n--fuzzboundary--\r\n"))
	f.Add([]byte("--fuzzboundary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--fuzzboundary--\r\n"))
	f.Add([]byte("--fuzzboundary\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		request := httptest.NewRequest("POST", "/v1/search", bytes.NewReader(body))
		request.Header.Set("Content-Type", "multipart/form-data; boundary=fuzzboundary")
		parsed, err := parseSearchRequest(httptest.NewRecorder(), request, fuzzLimits)
		checkDecoderError(t, err)
		if err == nil {
			checkSearchRequest(t, parsed)
		}
	})
}

func FuzzCropID(f *testing.F) {
	for _, seed := range []string{
		cropstore.NewID("cam-1", testStart, 10, 2), "..", "../../etc/passwd", "cam/../x_20240501T120000000000_1_0",
		"..\\x_20240501T120000000000_1_0", "._20240501T120000000000_1_0", "a_b_c_20240501T120000000000_01_0", "",
		"cam_20240501T120000000000_1_0/../../x", "cam%2f_20240501T120000000000_1_0",
	} {
		f.Add(seed)
	}
	root := filepath.FromSlash("/store/root")
	f.Fuzz(func(t *testing.T, id string) {
		parsed, err := parseCropID(id)
		checkDecoderError(t, err)
		if err != nil {
			return
		}
		if strings.ContainsAny(id, "/\\\x00") || parsed.Camera == ".." || parsed.Camera == "." {
			t.Fatalf("id %q accepted", id)
		}
		// The store's path for the id must stay inside its root.
		path := filepath.Join(root, parsed.Camera, parsed.Time.Format("20060102"), id+".jpg")
		if !strings.HasPrefix(path, root+string(filepath.Separator)) {
			t.Fatalf("id %q escapes the store: %s", id, path)
		}
	})
}

func FuzzCheckImage(f *testing.F) {
	for _, image := range seedImages() {
		f.Add(image, "")
		f.Add(image, "jpeg")
	}
	f.Fuzz(func(t *testing.T, data []byte, declared string) {
		_, decoded, err := checkImage(data, declared, fuzzLimits.maxImagePixels)
		checkDecoderError(t, err)
		if err != nil {
			return
		}
		if width, height := decoded.Bounds().Dx(), decoded.Bounds().Dy(); width*height > fuzzLimits.maxImagePixels || width < minImageSide || height < minImageSide {
			t.Fatalf("image %dx%d accepted", width, height)
		}
	})
}

// FuzzSearchHandler sends fuzzed requests through the whole server: nothing a client sends may
// produce a 5xx.
func FuzzSearchHandler(f *testing.F) {
	gallery, err := lookuptest.NewGallery(lookuptest.GalleryOptions{Cameras: []string{"cam-a", "cam-b"}, Identities: 3, CropsPerTrack: 2, Start: testStart, Seed: 2})
	if err != nil {
		f.Fatal(err)
	}
	server, err := New(Config{
		Index: gallery.Index, Store: gallery.Store, Embedder: gallery.Embedder,
		MaxUploadBytes: 1 << 20, MaxImagePixels: 1 << 20, WatchDir: f.TempDir(), ValidationDir: f.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, image := range seedImages() {
		f.Add("POST", "/v1/search?k=3", "image/jpeg", image)
	}
	f.Add("POST", "/v1/search", "application/json", []byte(`{"crop_id":"`+gallery.Crops[0]+`","rerank":true}`))
	f.Add("GET", "/v1/sightings?crop="+gallery.Crops[1]+"&rerank=true&k=2", "", []byte{})
	f.Add("GET", "/v1/sightings?crop="+gallery.Crops[1]+"&track_consensus=false&k=2", "", []byte{})
	f.Add("GET", "/v1/crops/"+gallery.Crops[1]+"/image", "", []byte{})
	f.Add("GET", "/v1/crops/..%2f..%2fx/image", "", []byte{})
	f.Add("GET", "/v1/crops?camera=cam-a&limit=2&from=2024-05-01T00:00:00Z", "", []byte{})
	f.Add("OPTIONS", "/v1/search", "", []byte{})
	f.Add("POST", "/v1/watches", "application/json", []byte(`{"crop_id":"`+gallery.Crops[0]+`","min_score":0.8,"expires_in":"1h"}`))
	f.Add("POST", "/v1/watches?name=x", "image/jpeg", seedImages()[0])
	f.Add("GET", "/v1/alerts?after=0&limit=3", "", []byte{})
	f.Add("POST", "/v1/export?k=2", "application/json", []byte(`{"crop_id":"`+gallery.Crops[1]+`"}`))
	f.Add("DELETE", "/v1/watches/w0123456789ab", "", []byte{})
	f.Add("POST", "/v1/erasures", "application/json", []byte(`{"tracks":[{"camera":"cam-a","track":1}],"dry_run":true}`))
	f.Add("POST", "/v1/erasures", "application/json", []byte(`{"crop_ids":["`+gallery.Crops[2]+`"],"reason":"fuzz"}`))
	f.Add("POST", "/v1/validation/people", "application/json", []byte(`{"crop_ids":["`+gallery.Crops[0]+`","`+gallery.Crops[3]+`"],"note":"fuzz"}`))
	f.Add("GET", "/v1/validation", "", []byte{})
	f.Fuzz(func(t *testing.T, method, target, contentType string, body []byte) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t#") {
			return
		}
		request, err := http.NewRequest(method, "http://lookup"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		request.RemoteAddr = "127.0.0.1:1234"
		if contentType != "" {
			request.Header.Set("Content-Type", contentType)
		}
		recorder := httptest.NewRecorder()
		server.ServeHTTP(recorder, request)
		if recorder.Code >= 500 {
			t.Fatalf("%s %s (%s, %d bytes): %d %s", method, target, contentType, len(body), recorder.Code, recorder.Body.String())
		}
	})
}
