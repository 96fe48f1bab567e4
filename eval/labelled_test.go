package eval

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func TestLabelledSet(t *testing.T) {
	root := t.TempDir()
	set, err := OpenLabelledSet(root)
	if err != nil || len(set.People) != 0 {
		t.Fatalf("an empty set: %+v, %v", set, err)
	}
	jpeg := []byte{0xff, 0xd8, 0xff, 0xd9}
	first := []LabelledCrop{{CropID: "a1", Camera: "gate", JPEG: jpeg, Query: true}, {CropID: "a2", Camera: "gate", JPEG: jpeg}, {CropID: "a3", Camera: "hall", JPEG: jpeg, Query: true}}
	person, err := set.AddPerson(first, "")
	if err != nil || person.PID != 1 {
		t.Fatalf("first person: %+v, %v", person, err)
	}
	// Reopened, the set numbers the next person and a new camera after what it holds.
	set, err = OpenLabelledSet(root)
	if err != nil {
		t.Fatal(err)
	}
	second := []LabelledCrop{{CropID: "b1", Camera: "yard", JPEG: jpeg, Query: true}, {CropID: "b2", Camera: "hall", JPEG: jpeg}}
	if person, err := set.AddPerson(second, "note"); err != nil || person.PID != 2 {
		t.Fatalf("second person: %+v, %v", person, err)
	}
	for _, refused := range []struct {
		name  string
		crops []LabelledCrop
	}{
		{"one camera", []LabelledCrop{{CropID: "c1", Camera: "gate", JPEG: jpeg, Query: true}, {CropID: "c2", Camera: "gate", JPEG: jpeg}}},
		{"no query", []LabelledCrop{{CropID: "c1", Camera: "gate", JPEG: jpeg}, {CropID: "c2", Camera: "hall", JPEG: jpeg}}},
		{"labelled before", []LabelledCrop{{CropID: "a2", Camera: "gate", JPEG: jpeg, Query: true}, {CropID: "c2", Camera: "hall", JPEG: jpeg}}},
	} {
		if _, err := set.AddPerson(refused.crops, ""); err == nil || (refused.name == "labelled before") != errors.Is(err, ErrLabelled) {
			t.Errorf("%s: %v", refused.name, err)
		}
	}
	dataset, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Label{
		"query/0001_c1_000001.jpg": {PID: 1, Camera: 1}, "bounding_box_test/0001_c1_000002.jpg": {PID: 1, Camera: 1},
		"query/0001_c2_000003.jpg": {PID: 1, Camera: 2}, "query/0002_c3_000001.jpg": {PID: 2, Camera: 3},
		"bounding_box_test/0002_c2_000002.jpg": {PID: 2, Camera: 2},
	}
	got := map[string]Label{}
	for _, item := range append(dataset.Query, dataset.Gallery...) {
		relative, _ := filepath.Rel(root, item.Path)
		got[relative] = item.Label
	}
	if len(got) != len(want) {
		t.Errorf("images %v, want %v", got, want)
	}
	for name, label := range want {
		if got[name] != label {
			t.Errorf("%s: %+v, want %+v", name, got[name], label)
		}
	}
	if set.Summary() != "2 people, 5 crops, cameras gate, hall, yard" {
		t.Errorf("summary %q", set.Summary())
	}

	// Erasing one crop of person 1 removes the person: a dry run first, which changes nothing.
	if removed, err := set.RemoveCrops(map[string]bool{"a2": true, "zz": true}, true); err != nil || len(removed) != 1 || removed[0] != 1 {
		t.Fatalf("dry run: %v, %v", removed, err)
	}
	if dataset, _ := Load(root); len(dataset.Query)+len(dataset.Gallery) != 5 {
		t.Fatal("the dry run removed images")
	}
	if removed, err := set.RemoveCrops(map[string]bool{"a2": true}, false); err != nil || len(removed) != 1 || removed[0] != 1 {
		t.Fatalf("removal: %v, %v", removed, err)
	}
	if dataset, err := Load(root); err != nil || len(dataset.Query) != 1 || len(dataset.Gallery) != 1 || dataset.Query[0].PID != 2 {
		t.Fatalf("after removing person 1: %+v, %v", dataset, err)
	}
	set, err = OpenLabelledSet(root)
	if err != nil || len(set.People) != 1 || set.People[0].PID != 2 {
		t.Fatalf("reopened after the removal: %+v, %v", set, err)
	}
	// Numbers are not reused: the next person is 3.
	third := []LabelledCrop{{CropID: "d1", Camera: "gate", JPEG: jpeg, Query: true}, {CropID: "d2", Camera: "hall", JPEG: jpeg}}
	if person, err := set.AddPerson(third, ""); err != nil || person.PID != 3 {
		t.Fatalf("the person after a removal: %+v, %v", person, err)
	}
}

// TestLabelledSetTakesTurns: two writers (reid validation add beside a lookup server) each with
// the set open add people at once; the lock and the reload under it keep every person, each with
// its own number.
func TestLabelledSetTakesTurns(t *testing.T) {
	root := t.TempDir()
	jpeg := []byte{0xff, 0xd8, 0xff, 0xd9}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for writer := range 2 {
		set, err := OpenLabelledSet(root)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range 10 {
				id := fmt.Sprintf("w%d-%d", writer, i)
				_, err := set.AddPerson([]LabelledCrop{{CropID: id + "a", Camera: "gate", JPEG: jpeg, Query: true}, {CropID: id + "b", Camera: "hall", JPEG: jpeg}}, "")
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	set, err := OpenLabelledSet(root)
	if err != nil {
		t.Fatal(err)
	}
	numbers := map[int]bool{}
	for _, person := range set.People {
		numbers[person.PID] = true
	}
	if len(set.People) != 20 || len(numbers) != 20 {
		t.Errorf("%d people with %d numbers, want 20 and 20", len(set.People), len(numbers))
	}
}
