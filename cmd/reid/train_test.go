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

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
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
	checkTrainValidation(t, dataDir)
}

// checkTrainValidation trains with a validation set: the parent's and the trained model's scores
// there are those reid eval gives each, and --promote promotes only a model that scores at least
// the parent's mAP. A learning rate a thousand times too high wrecks the model, which is then
// registered but not promoted.
func checkTrainValidation(t *testing.T, dataDir string) {
	t.Helper()
	validationDir := filepath.Join(t.TempDir(), "validation")
	if out, err := runReid(t, "--data-dir", dataDir, "synth", "dataset", "--out", validationDir, "--identities", "16",
		"--cameras", "3", "--per-camera", "2", "--distractors", "-1"); err != nil {
		t.Fatalf("reid synth dataset: %v\n%s", err, out)
	}
	type trainResult struct {
		Version     string `json:"version"`
		Promoted    bool   `json:"promoted"`
		NotPromoted string `json:"not_promoted"`
		Validation  struct {
			Queries         int
			Parent, Trained struct {
				MAP float64 `json:"mAP"`
			}
			Difference eval.Difference
		} `json:"validation"`
	}
	evalMAP := func(version string) float64 {
		out, err := runReid(t, "--data-dir", dataDir, "eval", "--dataset", validationDir, "--model", version, "--json")
		if err != nil {
			t.Fatalf("reid eval %s: %v\n%s", version, err, out)
		}
		var metrics struct {
			MAP float64 `json:"mAP"`
		}
		if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "{"):]), &metrics); err != nil {
			t.Fatalf("reid eval output %q: %v", out, err)
		}
		return metrics.MAP
	}
	// The wrecked run asks for a surely better model (trainer.promote_if), which it is not either.
	for _, test := range []struct {
		name, lr, promoteIf string
	}{{"as configured", "0.00035", config.PromoteIfNotWorse}, {"wrecked", "0.35", config.PromoteIfSurelyBetter}} {
		t.Setenv("REID_TRAINER_PROMOTE_IF", test.promoteIf)
		out, err := runReid(t, "--data-dir", dataDir, "train", "--model", "v1", "--epochs", "1", "--iters", "3", "--batch", "16",
			"--instances", "4", "--lr", test.lr, "--validate", validationDir, "--promote", "--json")
		if err != nil {
			t.Fatalf("%s: reid train --validate: %v\n%s", test.name, err, out)
		}
		var result trainResult
		if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "\n{")+1:]), &result); err != nil {
			t.Fatalf("%s: output %q: %v", test.name, out, err)
		}
		parent, trained, difference := result.Validation.Parent.MAP, result.Validation.Trained.MAP, result.Validation.Difference
		t.Logf("%s: %s validation mAP %.3f, parent %.3f, difference %+.3f (%+.3f..%+.3f), %d queries, promoted %v %s", test.name, result.Version,
			trained, parent, difference.MAP, difference.Low, difference.High, result.Validation.Queries, result.Promoted, result.NotPromoted)
		if math.Abs(difference.MAP-(trained-parent)) > 1e-9 || difference.Low > difference.MAP || difference.High < difference.MAP {
			t.Errorf("%s: difference %+v for mAP %.4f against %.4f", test.name, difference, trained, parent)
		}
		if result.Validation.Queries == 0 || math.Abs(parent-evalMAP("v1")) > 1e-4 || math.Abs(trained-evalMAP(result.Version)) > 1e-4 {
			t.Errorf("%s: validation %+v disagrees with reid eval", test.name, result.Validation)
		}
		better := trained >= parent
		if test.promoteIf == config.PromoteIfSurelyBetter {
			better = difference.Low > 0
		}
		if result.Promoted != better || result.Promoted == (result.NotPromoted != "") {
			t.Errorf("%s: promoted %v (%q) with mAP %.3f against the parent's %.3f", test.name, result.Promoted, result.NotPromoted, trained, parent)
		}
		registry, err := openRegistry(loadOptions(t, dataDir))
		if err != nil {
			t.Fatal(err)
		}
		active, err := registry.Active()
		if err != nil {
			t.Fatal(err)
		}
		if (active.ID == result.Version) != result.Promoted {
			t.Errorf("%s: active version %s after training %s (promoted %v)", test.name, active.ID, result.Version, result.Promoted)
		}
		if test.name == "wrecked" && (result.Promoted || trained >= parent || !strings.Contains(result.NotPromoted, "not surely above zero")) {
			t.Errorf("wrecked: mAP %.3f against the parent's %.3f, promoted %v (%q); want a worse model kept out, as not surely better", trained, parent, result.Promoted, result.NotPromoted)
		}
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
		{"missing validation set", []string{"--validate", "/nonexistent/validation"}, "validation"},
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

// TestPromotionRefusal: each promotion rule against a trained model that is worse, equal, better
// within the set's noise, and better beyond it.
func TestPromotionRefusal(t *testing.T) {
	score := func(parent, trained, low, high float64) *validation {
		return &validation{Queries: 40, Parent: validationScore{MAP: parent}, Trained: validationScore{MAP: trained},
			Difference: eval.Difference{MAP: trained - parent, Low: low, High: high}}
	}
	tests := []struct {
		name     string
		check    *validation
		rule     string
		promoted bool
		reason   string
	}{
		{"no validation set", nil, config.PromoteIfSurelyBetter, true, ""},
		{"worse", score(0.60, 0.55, -0.09, -0.01), config.PromoteIfNotWorse, false, "below the parent's"},
		{"equal", score(0.60, 0.60, -0.02, 0.02), config.PromoteIfNotWorse, true, ""},
		{"better within the noise", score(0.60, 0.63, -0.04, 0.10), config.PromoteIfNotWorse, true, ""},
		{"better within the noise, surely better asked", score(0.60, 0.63, -0.04, 0.10), config.PromoteIfSurelyBetter, false, "not surely above zero"},
		{"equal, surely better asked", score(0.60, 0.60, 0, 0.02), config.PromoteIfSurelyBetter, false, "not surely above zero"},
		{"better beyond the noise", score(0.60, 0.68, 0.03, 0.13), config.PromoteIfSurelyBetter, true, ""},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			reason := promotionRefusal(test.check, test.rule)
			if (reason == "") != test.promoted || !strings.Contains(reason, test.reason) {
				t.Errorf("refusal %q; want promoted %v (reason with %q)", reason, test.promoted, test.reason)
			}
		})
	}
}
