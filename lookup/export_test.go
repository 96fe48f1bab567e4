package lookup

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/reid-project/reid/lookup/lookuptest"
)

// readZip opens an export and returns its files by name.
func readZip(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	archive, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("not a ZIP: %v", err)
	}
	files := map[string][]byte{}
	for _, file := range archive.File {
		reader, err := file.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[file.Name], err = io.ReadAll(reader)
		reader.Close()
		if err != nil {
			t.Fatalf("%s: %v", file.Name, err)
		}
	}
	return files
}

// TestExport downloads a search as a ZIP: the query image, each match's crop, the results as CSV
// and JSON in the search's order, and a note of who exported what; the export is audited.
func TestExport(t *testing.T) {
	f := newFixture(t, nil)
	query := f.gallery.Crops[13]
	status, data, headers := f.do(t, "POST", "/v1/export", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_id":%q,"k":5}`, query)))
	if status != http.StatusOK || headers.Get("Content-Type") != "application/zip" || !strings.HasPrefix(headers.Get("Content-Disposition"), `attachment; filename="reid-export-`) {
		t.Fatalf("status %d, %s, %s: %.200s", status, headers.Get("Content-Type"), headers.Get("Content-Disposition"), data)
	}
	files := readZip(t, data)
	stored, _ := f.gallery.Store.Image(context.Background(), query)
	if !bytes.Equal(files["query.jpg"], stored) {
		t.Errorf("query.jpg is %d bytes, the query crop %d", len(files["query.jpg"]), len(stored))
	}
	var response SearchResponse
	if err := json.Unmarshal(files["results.json"], &response); err != nil || len(response.Matches) != 5 || response.Query.CropID != query {
		t.Fatalf("results.json: %v, %+v", err, response.Query)
	}
	rows, err := csv.NewReader(bytes.NewReader(files["results.csv"])).ReadAll()
	if err != nil || len(rows) != 6 || rows[0][1] != "crop_id" {
		t.Fatalf("results.csv: %v, %d rows", err, len(rows))
	}
	for i, match := range response.Matches {
		row := rows[i+1]
		if row[0] != fmt.Sprint(i+1) || row[1] != match.CropID || row[2] != match.Camera {
			t.Errorf("csv row %d %v, want rank %d of %s", i+1, row, i+1, match.CropID)
		}
		image, _ := f.gallery.Store.Image(context.Background(), match.CropID)
		if !bytes.Equal(files[row[9]], image) {
			t.Errorf("rank %d: %s holds %d bytes, the crop %d", i+1, row[9], len(files[row[9]]), len(image))
		}
	}
	if note := string(files["README.txt"]); !strings.Contains(note, "by: key-") || !strings.Contains(note, "model: color") || !strings.Contains(note, query) {
		t.Errorf("README.txt:\n%s", note)
	}
	var audited bool
	for _, record := range f.audit.lines(t) {
		if record.Route == "POST /v1/export" && record.Params["crop_id"] == query && record.Params["export"] == true && record.Results == 5 {
			audited = true
		}
	}
	if !audited {
		t.Error("the export is not in the audit log")
	}

	// An uploaded image is the export's query image; a bad request is a JSON error, not a ZIP.
	upload := lookuptest.Crop(f.gallery.Identities[1], 99, true)
	status, data, _ = f.do(t, "POST", "/v1/export?k=3", "image/png", bytes.NewReader(upload))
	if status != http.StatusOK || !bytes.Equal(readZip(t, data)["query.png"], upload) {
		t.Errorf("export of an upload: status %d", status)
	}
	status, data, headers = f.do(t, "POST", "/v1/export", "application/json", strings.NewReader(`{"k":3}`))
	if status != http.StatusBadRequest || !strings.HasPrefix(headers.Get("Content-Type"), "application/json") {
		t.Errorf("export without a query: %d %s %s", status, headers.Get("Content-Type"), data)
	}
}
