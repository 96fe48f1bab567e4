package synth

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestDebugDataset(t *testing.T) {
	dir := os.Getenv("SYNTH_DEBUG_DIR")
	if dir == "" {
		t.Skip("debug only")
	}
	library := harvestShared(t)
	out := filepath.Join(dir, "dataset")
	os.RemoveAll(out)
	summary, err := WriteDataset(context.Background(), out, library, DatasetOptions{Identities: 40, Cameras: 6, PerCamera: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", summary.TrainImages)
	if err := WriteContactSheet(out, filepath.Join(dir, "sheet.png"), 16, 18); err != nil {
		t.Fatal(err)
	}
}
