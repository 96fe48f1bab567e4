package synth

import (
	"context"
	"encoding/json"
	"image"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"
)

// TestSyntheticPeopleAreDetectable is the "detectable people" acceptance: the shared Yolo-Fastest
// finds at least 80% of the ground-truth people (IoU >= 0.5) in synthetic camera videos, read
// back through gocv like any camera.
func TestSyntheticPeopleAreDetectable(t *testing.T) {
	library := harvestShared(t)
	dir := t.TempDir()
	if debug := os.Getenv("SYNTH_DEBUG_DIR"); debug != "" {
		dir = filepath.Join(debug, "video") // kept for looking at
	}
	truth, err := WriteVideos(context.Background(), dir, library, VideoOptions{Cameras: 2, Seconds: 16, Identities: 6, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var saved GroundTruth
	encoded, err := os.ReadFile(filepath.Join(dir, "ground_truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(encoded, &saved); err != nil {
		t.Fatalf("ground_truth.json: %v", err)
	}
	if len(saved.Frames) != len(truth.Frames) || len(saved.Cameras) != 2 {
		t.Fatalf("ground truth file has %d frames and %d cameras, want %d and 2", len(saved.Frames), len(saved.Cameras), len(truth.Frames))
	}
	byCameraFrame := map[[2]int][]GroundTruthPerson{}
	for _, frame := range saved.Frames {
		byCameraFrame[[2]int{frame.Camera, frame.Frame}] = frame.People
	}
	// The pipeline's own detector settings, not the harvest's lower threshold.
	people := newPipelineDetector(t)
	var wanted, found, allPeople, allFound int
	perCamera := map[int][2]int{}       // camera -> whole, visible people; found
	crossings := map[int]map[int]bool{} // identity -> cameras it appears in
	for _, frame := range saved.Frames {
		for _, person := range frame.People {
			if crossings[person.Identity] == nil {
				crossings[person.Identity] = map[int]bool{}
			}
			crossings[person.Identity][frame.Camera] = true
		}
	}
	for _, video := range saved.Cameras {
		capture, err := gocv.VideoCaptureFile(filepath.Join(dir, video.File))
		if err != nil {
			t.Fatal(err)
		}
		frame := gocv.NewMat()
		read := 0
		for ; capture.Read(&frame) && !frame.Empty(); read++ {
			if frame.Cols() != saved.Width || frame.Rows() != saved.Height {
				t.Fatalf("%s frame %d is %dx%d, want %dx%d", video.File, read, frame.Cols(), frame.Rows(), saved.Width, saved.Height)
			}
			truthPeople := byCameraFrame[[2]int{video.Camera, read}]
			if len(truthPeople) == 0 {
				continue
			}
			boxes, err := FromDetector(people).DetectPeople(context.Background(), frame)
			if err != nil {
				t.Fatal(err)
			}
			for _, person := range truthPeople {
				box := image.Rect(person.Box[0], person.Box[1], person.Box[2], person.Box[3])
				hit := false
				for _, detected := range boxes {
					if rectIoU(box, detected) >= 0.5 {
						hit = true
						break
					}
				}
				allPeople++
				if hit {
					allFound++
				}
				// A person half out of the frame or behind someone is not one a detector
				// should be held to; they are counted separately.
				if person.Truncated || person.Visibility < 0.7 {
					continue
				}
				wanted++
				counts := perCamera[video.Camera]
				counts[0]++
				if hit {
					found++
					counts[1]++
				}
				perCamera[video.Camera] = counts
			}
		}
		frame.Close()
		capture.Close()
		if read != video.Frames {
			t.Errorf("%s: read %d frames, ground truth says %d", video.File, read, video.Frames)
		}
	}
	recall := float64(found) / float64(max(wanted, 1))
	t.Logf("recall %.3f (%d of %d whole, visible people); %d of %d including truncated and occluded; per camera [whole visible, found] %v",
		recall, found, wanted, allFound, allPeople, perCamera)
	if wanted < 100 {
		t.Fatalf("only %d whole, visible ground-truth people: the videos are too empty to judge", wanted)
	}
	if recall < 0.8 {
		t.Errorf("Yolo-Fastest found %.1f%% of the synthetic people, want at least 80%%", 100*recall)
	}
	travellers := 0
	for _, cameras := range crossings {
		if len(cameras) >= 2 {
			travellers++
		}
	}
	if travellers == 0 {
		t.Errorf("no identity appears in both cameras: nobody walks from camera to camera")
	}
}
