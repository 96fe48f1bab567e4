package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/lookup/lookuptest"
)

// TestValidationCommand builds a validation set from stored crops as a site would: three people,
// each named by one crop on each of two cameras, each crop bringing four crops of its track; then
// refuses a crop already labelled and a person seen by one camera, lists the set, and scores the
// imported model on it with reid eval, which reads it as any Market-1501 data set.
func TestValidationCommand(t *testing.T) {
	dataDir := pipelineFixture(t)
	ctx := context.Background()
	store, err := openCropStore(ctx, loadOptions(t, dataDir))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	people := lookuptest.Identities(3, 7)
	named := map[int][]string{} // per person, one crop id per camera
	for person := range people {
		for c, camera := range []string{"gate", "hall"} {
			track := cropstore.TrackID(start, int64(person*10+c+1))
			for i := range 6 {
				at := start.Add(time.Duration(person)*time.Minute + time.Duration(c)*30*time.Second + time.Duration(i)*time.Second)
				id := cropstore.NewID(camera, at, int64(i), person)
				record := cropstore.CropRecord{ID: id, Camera: camera, Time: at, Track: track,
					JPEG: lookuptest.Crop(people[person], uint64(person*100+c*10+i), false)}
				if err := store.Put(ctx, record); err != nil {
					t.Fatal(err)
				}
				if i == 2 {
					named[person] = append(named[person], id)
				}
			}
		}
	}
	lone := cropstore.NewID("yard", start, 0, 0) // untracked, and the only crop of its person
	if err := store.Put(ctx, cropstore.CropRecord{ID: lone, Camera: "yard", Time: start, JPEG: lookuptest.Crop(people[0], 5, false)}); err != nil {
		t.Fatal(err)
	}
	for person := range people {
		out, err := runReid(t, append([]string{"--data-dir", dataDir, "validation", "add", "--note", "test"}, named[person]...)...)
		if err != nil || !strings.Contains(out, "8 crops from [gate hall]") {
			t.Fatalf("validation add of person %d: %v\n%s", person, err, out)
		}
	}
	set, err := eval.Load(filepath.Join(dataDir, "validation"))
	if err != nil {
		t.Fatal(err)
	}
	// One query per person and camera, the rest of each track (4 crops) in the gallery.
	if len(set.Query) != 6 || len(set.Gallery) != 18 {
		t.Fatalf("%d queries and %d gallery images, want 6 and 18", len(set.Query), len(set.Gallery))
	}
	for _, item := range append(set.Query, set.Gallery...) {
		if item.PID < 1 || item.PID > 3 || item.Camera < 1 || item.Camera > 2 {
			t.Errorf("%s labelled %+v", item.Path, item.Label)
		}
	}

	for _, refused := range []struct {
		name string
		ids  []string
		want string
	}{
		{"a crop already labelled", named[0], "already labelled"},
		{"one camera", []string{lone}, "two cameras"},
		{"no such crop", []string{cropstore.NewID("gate", start, 999, 0)}, "not found"},
	} {
		if out, err := runReid(t, append([]string{"--data-dir", dataDir, "validation", "add"}, refused.ids...)...); err == nil || !strings.Contains(err.Error(), refused.want) {
			t.Errorf("%s: %v\n%s", refused.name, err, out)
		}
	}
	out, err := runReid(t, "--data-dir", dataDir, "validation", "list")
	if err != nil || strings.Count(out, "\tgate 4\thall 4\t\"test\"") != 3 || !strings.Contains(out, "3 people, 24 crops, cameras gate, hall") {
		t.Errorf("validation list: %v\n%s", err, out)
	}

	checkValidationErasure(t, dataDir, named[0][0])

	out, err = runReid(t, "--data-dir", dataDir, "eval", "--dataset", filepath.Join(dataDir, "validation"), "--model", "v1", "--json")
	if err != nil {
		t.Fatalf("reid eval on the validation set: %v\n%s", err, out)
	}
	var metrics struct {
		MAP   float64 `json:"mAP"`
		Rank1 float64 `json:"rank1"`
	}
	if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "{"):]), &metrics); err != nil || metrics.MAP <= 0 {
		t.Errorf("reid eval: %v, %+v", err, metrics)
	}
	t.Logf("the imported model on the validation set: mAP %.3f, rank-1 %.3f", metrics.MAP, metrics.Rank1)
}

// checkValidationErasure erases one crop through the lookup server as reid builds it: the person of
// the validation set it was one of goes, images and all, and the other two stay.
func checkValidationErasure(t *testing.T, dataDir, cropID string) {
	t.Helper()
	options := loadOptions(t, dataDir)
	store, vectors := openStoreAndIndex(t, options)
	defer vectors.Close()
	options.Lookup.AuditLog = filepath.Join(t.TempDir(), "audit.log")
	server, auditLog, err := newLookupServer(options, lookup.Config{Index: vectors, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer auditLog.Close()
	api := httptest.NewServer(server)
	defer api.Close()
	response, err := http.Post(api.URL+"/v1/erasures", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_ids":[%q],"reason":"test"}`, cropID)))
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	var result lookup.ErasureResponse
	if err := json.NewDecoder(response.Body).Decode(&result); err != nil || response.StatusCode != http.StatusOK ||
		!slices.Equal(result.ValidationPeople, []int{1}) || result.Crops != 1 {
		t.Fatalf("erasure: status %d, %+v, %v; want person 1 of the validation set removed", response.StatusCode, result, err)
	}
	set, err := eval.Load(filepath.Join(dataDir, "validation"))
	if err != nil {
		t.Fatal(err)
	}
	for _, item := range append(set.Query, set.Gallery...) {
		if item.PID == 1 {
			t.Errorf("%s of the erased person is still in the validation set", item.Path)
		}
	}
	if len(set.Query) != 4 || len(set.Gallery) != 12 {
		t.Errorf("%d queries and %d gallery images left, want 4 and 12", len(set.Query), len(set.Gallery))
	}
}
