package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/jpeg"
	"math"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/internal/vecmath"
	"github.com/reid-project/reid/trainer"
)

// TestTrainCommand adapts the model to crops the pipeline stored, registers the result as a
// child of the active version, promotes it, and checks that the new version loads and embeds
// differently from its parent.
func TestTrainCommand(t *testing.T) {
	dataDir := pipelineFixture(t)
	if out, err := runReid(t, "--data-dir", dataDir, "run", "--source", testassets.Path(t, "video/vtest.avi"),
		"--camera", "street", "--max-frames", "150", "--exit-when-done", "--serve=false", "--json"); err != nil {
		t.Fatalf("reid run: %v\n%s", err, out)
	}
	// Its progress is served on ops.addr: a port already taken stops it before any training.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("REID_OPS_ADDR", busy.Addr().String())
	if out, err := runReid(t, "--data-dir", dataDir, "train", "--epochs", "1", "--iters", "1", "--batch", "16", "--instances", "4"); err == nil || !strings.Contains(err.Error(), "ops.addr") {
		t.Fatalf("train with its ops port taken: %v\n%s", err, out)
	}
	busy.Close()
	t.Setenv("REID_OPS_ADDR", "")
	checkpoints := filepath.Join(t.TempDir(), "checkpoints")
	out, err := runReid(t, "--data-dir", dataDir, "train", "--epochs", "2", "--iters", "2", "--batch", "16", "--instances", "4",
		"--checkpoint-dir", checkpoints, "--promote", "--json")
	if err != nil {
		t.Fatalf("reid train: %v\n%s", err, out)
	}
	var result struct {
		Version  string          `json:"version"`
		Parent   string          `json:"parent"`
		Promoted bool            `json:"promoted"`
		Summary  trainer.Summary `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "\n{")+1:]), &result); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if result.Version != "v2" || result.Parent != "v1" || !result.Promoted || len(result.Summary.Epochs) != 2 || result.Summary.Crops < 50 {
		t.Fatalf("train result %+v", result)
	}

	options := loadOptions(t, dataDir)
	registry, err := openRegistry(options)
	if err != nil {
		t.Fatal(err)
	}
	active, err := registry.Active()
	if err != nil {
		t.Fatal(err)
	}
	if active.ID != "v2" || active.Parent != "v1" || active.Source != "cluster-contrast" || active.Training["epochs"] == nil {
		t.Errorf("registered version %+v", active.Metadata)
	}

	// The adapted network is a different function of the same crop.
	store, err := openCropStore(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	var crops []string
	if err := store.Walk(context.Background(), cropstore.Filter{}, func(record cropstore.CropRecord) error {
		crops = append(crops, record.ID)
		return nil
	}); err != nil || len(crops) == 0 {
		t.Fatalf("%d crops: %v", len(crops), err)
	}
	encoded, err := store.Image(context.Background(), crops[0])
	if err != nil {
		t.Fatal(err)
	}
	picture, err := jpeg.Decode(bytes.NewReader(encoded))
	if err != nil {
		t.Fatal(err)
	}
	embed := func(version string) []float32 {
		loaded, err := openModel(context.Background(), options, version)
		if err != nil {
			t.Fatal(err)
		}
		defer loaded.Close()
		vectors, err := loaded.network.Embed(context.Background(), []image.Image{picture})
		if err != nil {
			t.Fatal(err)
		}
		return vectors[0]
	}
	if cosine := vecmath.Dot64(embed("v1"), embed("v2")); math.IsNaN(cosine) || cosine > 0.9999 {
		t.Errorf("v2 embeds like v1 (cosine %.5f): training changed nothing", cosine)
	}

	// A second run with the same checkpoint directory and settings has nothing left to train.
	out, err = runReid(t, "--data-dir", dataDir, "train", "--epochs", "2", "--iters", "2", "--batch", "16", "--instances", "4",
		"--model", "v1", "--checkpoint-dir", checkpoints, "--json")
	if err != nil || !strings.Contains(out, `"resumed":2`) {
		t.Errorf("resumed run: %v\n%s", err, out)
	}
}

func TestTrainCommandRejects(t *testing.T) {
	dataDir := pipelineFixture(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"empty crop store", nil, "no crops in the crop store"},
		{"bad time", []string{"--since", "yesterday"}, "RFC 3339"},
		{"batch not a multiple of instances", []string{"--batch", "30", "--instances", "4"}, "trainer.batch_size"},
		{"eps out of range", []string{"--eps", "1.5"}, "trainer.eps"},
		{"unknown base version", []string{"--model", "v9"}, "v9"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			out, err := runReid(t, append([]string{"--data-dir", dataDir, "train"}, test.args...)...)
			if err == nil || !strings.Contains(err.Error()+out, test.want) {
				t.Errorf("err %v, output %q; want a message with %q", err, out, test.want)
			}
		})
	}
}
