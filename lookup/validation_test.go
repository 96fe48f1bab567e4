package lookup

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/reid-project/reid/eval"
)

// TestLabelPerson adds a person to the validation set from a search's sightings, as the page
// does: one crop of the query's sighting on cam-a and one of the same person's on cam-b. The set
// reads as a Market-1501 data set; the same crops again, a person seen by one camera, bad bodies
// and ordinary keys are refused; and an erasure of one of the crops removes the person again.
func TestLabelPerson(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "validation")
	f := newFixture(t, func(c *Config) { c.ValidationDir, c.AdminAPIKeys = dir, []string{adminKey} })
	query := f.gallery.Crops[1]
	person := f.gallery.Identity[query]
	var other string
	for _, id := range f.gallery.Crops {
		if f.gallery.Identity[id] == person && strings.HasPrefix(id, "cam-b") {
			other = id
			break
		}
	}
	body := func(ids ...string) string {
		quoted := make([]string, len(ids))
		for i, id := range ids {
			quoted[i] = fmt.Sprintf("%q", id)
		}
		return fmt.Sprintf(`{"crop_ids":[%s],"note":"red shirt"}`, strings.Join(quoted, ","))
	}
	admin := []string{"Authorization", "Bearer " + adminKey}

	status, data, _ := f.do(t, "POST", "/v1/validation/people", "application/json", strings.NewReader(body(query, other)))
	if status != http.StatusForbidden {
		t.Errorf("an ordinary key: %d %s", status, data)
	}
	status, data, _ = f.do(t, "POST", "/v1/validation/people", "application/json", strings.NewReader(body(query, other)), admin...)
	added := decode[LabelResponse](t, data)
	if status != http.StatusCreated || added.PID != 1 || added.Crops != 8 || !slices.Equal(added.Cameras, []string{"cam-a", "cam-b"}) {
		t.Fatalf("label: %d %s; want person 1, 8 crops (4 per track) on cam-a and cam-b", status, data)
	}
	set, err := eval.Load(dir)
	if err != nil || len(set.Query) != 2 || len(set.Gallery) != 6 {
		t.Fatalf("the set: %d queries, %d gallery images, %v", len(set.Query), len(set.Gallery), err)
	}
	status, data, _ = f.do(t, "GET", "/v1/validation", "", nil, admin...)
	if summary := decode[ValidationResponse](t, data); status != http.StatusOK || summary.People != 1 || summary.Summary != "1 people, 8 crops, cameras cam-a, cam-b" {
		t.Errorf("GET /v1/validation: %d %s", status, data)
	}

	var sameCamera string // another person's crop on cam-a
	for _, id := range f.gallery.Crops {
		if f.gallery.Identity[id] != person && strings.HasPrefix(id, "cam-a") {
			sameCamera = id
			break
		}
	}
	for _, refused := range []struct {
		name, contentType, body string
		status                  int
		message                 string
	}{
		{"labelled before", "application/json", body(query, other), http.StatusConflict, "already labelled"},
		{"one camera", "application/json", body(sameCamera, sameCamera), http.StatusBadRequest, "two cameras"},
		{"one sighting", "application/json", body(query), http.StatusBadRequest, "name 2 to 20 crops"},
		{"bad crop id", "application/json", body("../x", other), http.StatusBadRequest, "crop_ids"},
		{"unknown crop", "application/json", body("cam-a_20240501T110000000000_1_0", other), http.StatusNotFound, "not found"},
		{"not JSON", "text/plain", body(query, other), http.StatusUnsupportedMediaType, "application/json"},
		{"unknown field", "application/json", `{"crop_ids":[],"person":3}`, http.StatusBadRequest, "unknown field"},
	} {
		status, data, _ := f.do(t, "POST", "/v1/validation/people", refused.contentType, strings.NewReader(refused.body), admin...)
		if status != refused.status || !strings.Contains(string(data), refused.message) {
			t.Errorf("%s: %d %s; want %d with %q", refused.name, status, data, refused.status, refused.message)
		}
	}

	erased := f.erase(t, ErasureRequest{CropIDs: []string{other}, Reason: "DSR-3"})
	if !slices.Equal(erased.ValidationPeople, []int{1}) {
		t.Errorf("erasing a labelled crop: %+v; want person 1 removed", erased)
	}
	if set, err := eval.OpenLabelledSet(dir); err != nil || len(set.People) != 0 {
		t.Errorf("after the erasure the set holds %+v (%v)", set, err)
	}
}

func TestValidationNeedsASet(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AdminAPIKeys = []string{adminKey} })
	status, data, _ := f.do(t, "GET", "/v1/validation", "", nil, "Authorization", "Bearer "+adminKey)
	if status != http.StatusNotFound || !strings.Contains(string(data), "trainer.validation_dir") {
		t.Errorf("no set: %d %s", status, data)
	}
}
