package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/cluster"
	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/model"
	"github.com/reid-project/reid/trainer"
)

func newTrainCommand(g *globals) *cobra.Command {
	var (
		baseVersion, name, checkpointDir string
		cameras                          []string
		since, until                     string
		promote, asJSON                  bool
		flagged                          config.Trainer
	)
	command := &cobra.Command{
		Use:   "train [--model VERSION] [--camera ID]... [--since T] [--until T] [--promote]",
		Short: "Adapt the re-id model to this site's crops without labels (Cluster Contrast) and register the result",
		Long: `Trains a new model version from a registered one (the active one by default) on the crops in
the crop store, by Cluster Contrast: every epoch clusters all crops by k-reciprocal Jaccard
distance and DBSCAN, then trains against a memory of the cluster centres. No labels are needed.

The new version is registered with its parent and a training summary and its id is printed.
--promote makes it active: a running reid run then embeds every stored crop with it into a new
gallery and switches lookups over when that is done. With --validate DIR (a labelled data set of
the site, Market-1501 layout) the parent and the trained model are both scored there (mAP and
rank-1, cross-camera) and --promote promotes only a model that scores at least its parent's mAP
(with trainer.promote_if: surely_better, only one whose mAP is higher beyond the 95% interval):
unsupervised adaptation can also make a model worse. Settings: the trainer section of the
configuration (the reference's GPU defaults), overridden by the flags below; docs/TRAINING.md
has CPU-sized ones. With --checkpoint-dir, an interrupted run resumes where it stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			options.Trainer = trainerFlags(cmd, options.Trainer, flagged)
			if err := options.Validate(); err != nil {
				return err
			}
			settings := options.Trainer
			filters, err := cropFilters(cameras, since, until)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var check *validation
			if settings.ValidationDir != "" {
				if check, err = openValidation(settings.ValidationDir); err != nil {
					return err
				}
			}
			loaded, err := openModel(ctx, options, baseVersion)
			if err != nil {
				return err
			}
			defer loaded.Close()
			examples, err := loadExamples(ctx, options, filters, settings.MaxCrops)
			if err != nil {
				return err
			}
			// The parent is scored before training changes its network in place.
			if check != nil {
				if err := check.scoreParent(ctx, loaded); err != nil {
					return err
				}
			}
			trainerOptions := trainer.Options{
				Epochs: settings.Epochs, ItersPerEpoch: settings.ItersPerEpoch,
				BatchSize: settings.BatchSize, Instances: settings.Instances,
				LR: settings.LR, StepSize: settings.LRStep, Seed: settings.Seed,
				Cluster:       cluster.Options{Eps: settings.Eps, MinSamples: settings.MinSamples},
				CheckpointDir: checkpointDir, KeepCameraBias: settings.KeepCameraBias, CameraProxies: settings.CameraProxies,
				InterCamera: float32(settings.InterCamera), HardNegatives: settings.HardNegatives,
				Start: loaded.version.ID + "@" + loaded.version.WeightsSHA256,
			}
			progress := &trainingMetrics{epochs: settings.Epochs}
			stopOps, err := startOps(ctx, options.Ops, progress)
			if err != nil {
				return err
			}
			defer stopOps()
			slog.Info("training", "parent", loaded.version.ID, "crops", len(examples), "epochs", settings.Epochs,
				"iters_per_epoch", settings.ItersPerEpoch, "batch", settings.BatchSize, "device", loaded.device.Name())
			summary, err := trainer.Train(ctx, loaded.network, examples, trainerOptions, func(report trainer.EpochReport) {
				progress.epochDone(report)
				slog.Info("epoch done", "epoch", report.Epoch, "of", settings.Epochs, "clusters", report.Clusters,
					"cross_camera", report.CrossCamera, "outliers", report.Outliers, "loss", fmt.Sprintf("%.3f", report.Loss), "lr", report.LR,
					"seconds", fmt.Sprintf("%.0f", report.FeatureSeconds+report.ClusterSeconds+report.TrainSeconds))
			})
			if err != nil {
				return err
			}
			if check != nil {
				if err := check.scoreTrained(ctx, loaded, settings.Seed); err != nil {
					return err
				}
			}
			version, err := registerTrained(ctx, options, loaded, name, settings, summary, check)
			if err != nil {
				return err
			}
			notPromoted := ""
			if promote {
				if notPromoted = promotionRefusal(check, settings.PromoteIf); notPromoted != "" {
					promote = false
					slog.Warn("the trained version is not promoted", "version", version.ID, "why", notPromoted)
				}
			}
			if promote {
				registry, err := openRegistry(options)
				if err != nil {
					return err
				}
				if err := registry.Promote(version.ID); err != nil {
					return err
				}
			}
			if asJSON {
				result := map[string]any{"version": version.ID, "parent": loaded.version.ID, "promoted": promote, "summary": summary}
				if check != nil {
					result["validation"] = check
				}
				if notPromoted != "" {
					result["not_promoted"] = notPromoted
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(result)
			}
			last := summary.Epochs[len(summary.Epochs)-1]
			outcome := ""
			if check != nil {
				outcome += fmt.Sprintf(", validation mAP %.3f (parent %.3f; difference %s)", check.Trained.MAP, check.Parent.MAP, check.describeDifference())
			}
			switch {
			case promote:
				outcome += ", promoted"
			case notPromoted != "":
				outcome += ", not promoted: " + notPromoted
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\ttrained from %s on %d crops from %d cameras: %d epochs, last %d clusters (%d across cameras), loss %.3f, %s%s\n",
				version.ID, loaded.version.ID, summary.Crops, summary.Cameras, len(summary.Epochs), last.Clusters, last.CrossCamera, last.Loss,
				time.Duration(summary.Seconds*float64(time.Second)).Round(time.Second), outcome)
			return nil
		},
	}
	flags := command.Flags()
	flags.StringVar(&baseVersion, "model", "", "model version to start from (default: the active one)")
	flags.StringVar(&name, "name", "", "name of the new version (default: PARENT-adapted)")
	flags.StringSliceVar(&cameras, "camera", nil, "train on these cameras' crops only (repeatable; default all)")
	flags.StringVar(&since, "since", "", "train on crops from this time on (RFC 3339, or a duration ago: 720h)")
	flags.StringVar(&until, "until", "", "train on crops before this time (RFC 3339, or a duration ago)")
	flags.StringVar(&checkpointDir, "checkpoint-dir", "", "save a checkpoint after every epoch here and resume from it")
	flags.BoolVar(&promote, "promote", false, "make the new version active (with --validate: only if it scores at least its parent's mAP)")
	flags.StringVar(&flagged.ValidationDir, "validate", "", "score the parent and the trained model on this labelled data set (Market-1501 layout; overrides trainer.validation_dir)")
	flags.BoolVar(&asJSON, "json", false, "print the version and the training summary as JSON")
	flags.IntVar(&flagged.Epochs, "epochs", 0, "epochs (overrides trainer.epochs)")
	flags.IntVar(&flagged.ItersPerEpoch, "iters", 0, "steps per epoch (overrides trainer.iters_per_epoch)")
	flags.IntVar(&flagged.BatchSize, "batch", 0, "crops per step (overrides trainer.batch_size)")
	flags.IntVar(&flagged.Instances, "instances", 0, "crops per pseudo-identity in a step (overrides trainer.instances)")
	flags.Float64Var(&flagged.LR, "lr", 0, "Adam learning rate (overrides trainer.lr)")
	flags.Float64Var(&flagged.Eps, "eps", 0, "DBSCAN eps on the Jaccard distance (overrides trainer.eps)")
	flags.IntVar(&flagged.MaxCrops, "max-crops", 0, "train on at most this many crops (overrides trainer.max_crops)")
	flags.Uint64Var(&flagged.Seed, "seed", 0, "random seed of sampling, augmentation and libtorch (overrides trainer.seed)")
	return command
}

// trainerFlags overrides the configured trainer settings with the flags the user set.
func trainerFlags(cmd *cobra.Command, configured, flagged config.Trainer) config.Trainer {
	overrides := map[string]func(){
		"epochs":    func() { configured.Epochs = flagged.Epochs },
		"iters":     func() { configured.ItersPerEpoch = flagged.ItersPerEpoch },
		"batch":     func() { configured.BatchSize = flagged.BatchSize },
		"instances": func() { configured.Instances = flagged.Instances },
		"lr":        func() { configured.LR = flagged.LR },
		"eps":       func() { configured.Eps = flagged.Eps },
		"max-crops": func() { configured.MaxCrops = flagged.MaxCrops },
		"seed":      func() { configured.Seed = flagged.Seed },
		"validate":  func() { configured.ValidationDir = flagged.ValidationDir },
	}
	for flag, override := range overrides {
		if cmd.Flags().Changed(flag) {
			override()
		}
	}
	return configured
}

// cropFilters turns --camera, --since and --until into crop store filters (one per camera).
func cropFilters(cameras []string, since, until string) ([]cropstore.Filter, error) {
	var base cropstore.Filter
	var err error
	if base.From, base.To, err = parseTimeRange("train", since, until); err != nil {
		return nil, err
	}
	if len(cameras) == 0 {
		return []cropstore.Filter{base}, nil
	}
	filters := make([]cropstore.Filter, len(cameras))
	for i, camera := range cameras {
		filters[i] = base
		filters[i].Camera = camera
	}
	return filters, nil
}

// parseTimeRange reads the --since and --until flags of a command: an RFC 3339 time, or a duration
// meaning that long ago; an empty value is the zero time.
func parseTimeRange(command, since, until string) (from, to time.Time, err error) {
	for _, bound := range []struct {
		flag, value string
		into        *time.Time
	}{{"--since", since, &from}, {"--until", until, &to}} {
		if bound.value == "" {
			continue
		}
		// A duration is that long ago, for jobs that run on a schedule (--since 720h).
		if ago, durationErr := time.ParseDuration(bound.value); durationErr == nil && ago > 0 {
			*bound.into = time.Now().Add(-ago)
			continue
		}
		if *bound.into, err = time.Parse(time.RFC3339, bound.value); err != nil {
			return from, to, fmt.Errorf("%s: %s %q: want an RFC 3339 time such as 2026-11-27T08:00:00Z, or a duration ago such as 720h", command, bound.flag, bound.value)
		}
	}
	return from, to, nil
}

// loadExamples reads the selected crops from the crop store, at most maxCrops (0: all) of them,
// spread evenly over the selection so every camera and hour keeps its share.
func loadExamples(ctx context.Context, options config.Options, filters []cropstore.Filter, maxCrops int) ([]trainer.Example, error) {
	store, err := openCropStore(ctx, options)
	if err != nil {
		return nil, err
	}
	var records []cropstore.CropRecord
	for _, filter := range filters {
		if err := store.Walk(ctx, filter, func(record cropstore.CropRecord) error {
			records = append(records, record)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("train: reading the crop store: %w", err)
		}
	}
	if maxCrops > 0 && len(records) > maxCrops {
		spread := make([]cropstore.CropRecord, maxCrops)
		for i := range spread {
			spread[i] = records[i*len(records)/maxCrops]
		}
		records = spread
	}
	examples := make([]trainer.Example, 0, len(records))
	for _, record := range records {
		image, err := store.Image(ctx, record.ID)
		if err != nil {
			// Retention may delete a crop between the walk and here; training goes on without it.
			slog.Warn("crop skipped", "id", record.ID, "err", err)
			continue
		}
		examples = append(examples, trainer.Example{ID: record.ID, Camera: record.Camera, JPEG: image})
	}
	if len(examples) == 0 {
		return nil, fmt.Errorf("train: no crops in the crop store match; run the pipeline first (reid run) or widen --camera/--since/--until")
	}
	return examples, nil
}

// registerTrained saves the trained network and registers it as a new version with its parent and
// training summary.
func registerTrained(ctx context.Context, options config.Options, loaded *loadedModel, name string, settings config.Trainer, summary trainer.Summary, check *validation) (model.Version, error) {
	staging, err := os.MkdirTemp(options.DataDir, "train-")
	if err != nil {
		return model.Version{}, err
	}
	defer os.RemoveAll(staging)
	weights := filepath.Join(staging, "weights.pt")
	if err := loaded.network.Save(ctx, weights); err != nil {
		return model.Version{}, err
	}
	metadata := model.MetadataFor(loaded.network.Options())
	metadata.Name = name
	if metadata.Name == "" {
		metadata.Name = loaded.version.Name + "-adapted"
	}
	metadata.Source = "cluster-contrast"
	metadata.Parent = loaded.version.ID
	metadata.WeightsFormat = model.FormatReid
	var trainingMap map[string]any
	encoded, err := json.Marshal(struct {
		Settings config.Trainer `json:"settings"`
		trainer.Summary
		Validation *validation `json:"validation,omitempty"`
	}{settings, summary, check})
	if err != nil {
		return model.Version{}, err
	}
	if err := json.Unmarshal(encoded, &trainingMap); err != nil {
		return model.Version{}, err
	}
	metadata.Training = trainingMap
	registry, err := openRegistry(options)
	if err != nil {
		return model.Version{}, err
	}
	return registry.Register(ctx, metadata, weights)
}

// promotionRefusal says why --promote must not make the trained model active under rule
// (config.Trainer.PromoteIf), or "" when it may; without a validation set nothing refuses it.
func promotionRefusal(check *validation, rule string) string {
	if check == nil {
		return ""
	}
	switch rule {
	case config.PromoteIfSurelyBetter:
		if !(check.Difference.Low > 0) {
			return fmt.Sprintf("validation mAP difference %s is not surely above zero (trainer.promote_if: %s)", check.describeDifference(), rule)
		}
	default:
		if check.Trained.MAP < check.Parent.MAP {
			return fmt.Sprintf("validation mAP %.3f is below the parent's %.3f", check.Trained.MAP, check.Parent.MAP)
		}
	}
	return ""
}

// validation scores a training run's parent and result on a labelled data set of the site.
type validation struct {
	Dataset string          `json:"dataset"`
	Queries int             `json:"queries"`
	Parent  validationScore `json:"parent"`
	Trained validationScore `json:"trained"`
	// Difference is the trained model's mAP difference from the parent's, with its 95% interval
	// over the queries: one far across zero says the set is too small to tell them apart.
	Difference eval.Difference `json:"difference"`
	data       eval.Dataset
	// parentQueries are the parent's per-query results, for the difference.
	parentQueries []eval.QueryResult
}

type validationScore struct {
	MAP   float64 `json:"mAP"`
	Rank1 float64 `json:"rank1"`
}

// openValidation loads the data set, before anything slow starts.
func openValidation(dir string) (*validation, error) {
	data, err := eval.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("train: validation set: %w", err)
	}
	return &validation{Dataset: dir, data: data}, nil
}

// scoreParent scores the model that loaded holds before training.
func (check *validation) scoreParent(ctx context.Context, loaded *loadedModel) (err error) {
	if check.Parent, check.parentQueries, err = check.score(ctx, loaded); err != nil {
		return err
	}
	slog.Info("validation: the parent", "dataset", check.Dataset, "queries", check.Queries, "mAP", fmt.Sprintf("%.3f", check.Parent.MAP),
		"rank1", fmt.Sprintf("%.3f", check.Parent.Rank1))
	return nil
}

func (check *validation) scoreTrained(ctx context.Context, loaded *loadedModel, seed uint64) error {
	score, queries, err := check.score(ctx, loaded)
	if err != nil {
		return err
	}
	check.Trained = score
	if check.Difference, err = eval.CompareQueries(check.parentQueries, queries, seed); err != nil {
		return fmt.Errorf("train: validation: %w", err)
	}
	slog.Info("validation: the trained model", "mAP", fmt.Sprintf("%.3f", check.Trained.MAP), "rank1", fmt.Sprintf("%.3f", check.Trained.Rank1),
		"parent_mAP", fmt.Sprintf("%.3f", check.Parent.MAP), "difference", check.describeDifference())
	return nil
}

// describeDifference says the mAP difference and its interval in words.
func (check *validation) describeDifference() string {
	return fmt.Sprintf("%+.3f, 95%% interval %+.3f..%+.3f over %d queries", check.Difference.MAP, check.Difference.Low, check.Difference.High, check.Queries)
}

func (check *validation) score(ctx context.Context, loaded *loadedModel) (validationScore, []eval.QueryResult, error) {
	extractor := &modelExtractor{model: loaded.network, batchSize: 64}
	queryFeatures, err := extractor.Extract(ctx, eval.Paths(check.data.Query))
	if err != nil {
		return validationScore{}, nil, fmt.Errorf("train: validation: %w", err)
	}
	galleryFeatures, err := extractor.Extract(ctx, eval.Paths(check.data.Gallery))
	if err != nil {
		return validationScore{}, nil, fmt.Errorf("train: validation: %w", err)
	}
	distances, err := eval.Distances(ctx, queryFeatures, galleryFeatures)
	if err != nil {
		return validationScore{}, nil, fmt.Errorf("train: validation: %w", err)
	}
	// Per query, not just the means: the difference from the parent is paired by query.
	queries, err := eval.EvaluateQueries(ctx, distances, eval.Labels(check.data.Query), eval.Labels(check.data.Gallery), eval.CrossCamera)
	if err != nil {
		return validationScore{}, nil, fmt.Errorf("train: validation: %w", err)
	}
	metrics := eval.Aggregate(queries)
	if metrics.Queries == 0 {
		return validationScore{}, nil, fmt.Errorf("train: validation set %s has no query with a true match in another camera", check.Dataset)
	}
	check.Queries = metrics.Queries
	return validationScore{MAP: metrics.MAP, Rank1: metrics.Rank1}, queries, nil
}
