#!/usr/bin/env bash
# `make bench`: each stage's benchmark, one line per stage. Figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# Stream: 8 KiB crop records through the embedded broker, Go vs librdkafka (msgs/s, MB/s).
./scripts/bench_stream.sh

# Ingest: vtest.avi decode + detect + track + crop + store on one core, Go vs python3-opencv.
./scripts/bench-ingest.sh

# Torch: CPU embedding throughput, OSNet x0.25 and ResNet-50, batch 32 at 256x128, package torch
# vs python3-torch on the same model, input and threads (images/s, ratio).
./scripts/bench_torch.sh

# Crop decoding (embedder, trainer, lookup): libjpeg-turbo against image/jpeg + RGB conversion.
$GO test -run '^$' -bench Decode -benchtime 20x ./internal/jpegturbo

# Archiver: batches of crops into the local crop store, one writer against the default writers.
$GO test -run '^$' -bench Archive -benchtime 10x ./archiver

$GO test -run '^$' -bench Walk -benchtime 5x -count 3 ./cropstore

# The record of erasures: the look-up every stored and embedded crop pays, and reading it at start.
$GO test -run '^$' -bench 'Erased|LoadErasures' -count 3 ./cropstore

# Backups: reid backup's crop-store mirror against rsync -a --delete (plain and --fsync), first
# copy and again after a day pruned and a day added.
$GO test -run '^$' -bench BackupCrops -benchtime 5x ./backup

# Trainer: the input side of one training step (256 crops at 256x128 decoded from the cache and
# augmented), which runs one batch ahead of the device; it must stay well under a GPU step (~50 ms).
$GO test -run '^$' -bench TrainingBatch -benchtime 20x ./trainer

# Index: embedded exact + HNSW vs python3-faiss IndexFlatIP / IndexHNSWFlat on clustered 512-d
# vectors (build, RSS, p50/p99 latency, recall@10, restart). 1M with HNSW builds for an hour or more
# on 2 cores: REID_BENCH=full runs it (REID_BENCH=1m-exact: 1M exact search only, about 10 minutes).
$GO run ./index/embedded/cmd/indexbench -n 100000 -work build/indexbench
case "${REID_BENCH:-}" in
full) $GO run ./index/embedded/cmd/indexbench -n 1000000 -queries 200 -work build/indexbench ;;
1m-exact) $GO run ./index/embedded/cmd/indexbench -n 1000000 -queries 200 -skip-hnsw -work build/indexbench ;;
esac

# Eval + cluster: Market-1501-size metrics, re-ranking and Cluster Contrast pseudo-labels, reid vs
# numpy/faiss/sklearn references on the same features (table), then the Go benchmarks.
/usr/bin/python3 scripts/bench_eval.py bin/reid build/evalbench
$GO test -run '^$' -bench . -benchtime 1x ./eval/ ./cluster/ ./internal/vecmath/

# Index: how long writes stall while a snapshot is written (200k exact, 100k HNSW).
$GO test -run '^$' -bench SnapshotWritePause -benchtime 1x -count 3 ./index/embedded/

# Lookup: 50 concurrent clients over loopback HTTP, POST /v1/search by crop id (k=20), against a
# 100k x 512 gallery in index/embedded (exact): p50/p90/p99 latency and requests/s, with track
# consensus (the default) and crop by crop.
$GO run ./lookup/loadtest -vectors 100000 -clients 50 -requests 3000 -duration 60s
$GO run ./lookup/loadtest -vectors 100000 -clients 50 -requests 3000 -duration 60s -track-consensus=false
# Watches: one check of 50 watches over the last 10 minutes of that gallery (2,400 crops), as the
# lookup server runs every lookup.watch_interval.
$GO run ./lookup/loadtest -vectors 100000 -clients 4 -requests 100 -watches 50

# Synth: the default-size synthetic data set as a benchmark for the shared OSNet x0.25 (cross- and
# same-camera mAP, chance), the figures in docs/SYNTH.md.
SYNTH_BENCH_IDENTITIES=200 $GO test -count=1 -run UsefulBenchmark -v ./synth/ | grep 'identities,'

# Pipeline (issue 5) and search quality (issue 7): vtest.avi through the embedded broker, embedder and
# embedded index: crops/s, frame-to-searchable p50/p99, embedder overhead against the raw model on
# the same crops; then precision@5 of same-track search over vtest's tracks, and on a synthetic
# three-camera video with ground truth: same track, same person, same person in other cameras;
# and the same on that video before and after `reid train` adapts the model to it (about 5 minutes);
# and on that video, how often a watch's alerts show the watched person at each lookup.watch_min_score.
$GO test -run '^$' -bench 'Pipeline|SearchQuality|SyntheticCrossCamera|SiteAdaptation|WatchThreshold' -benchtime 1x ./cmd/reid

# Issue 7's acceptance as it reads: precision@5 of same-track search after the demo data is indexed
# (five cameras; the demo's own configuration, street on YOLOX-nano). About 3 minutes.
rm -rf build/bench-demo
DATA=build/bench-demo ./scripts/demo.sh >build/bench-demo.log
REIDTEST_QUALITY_DATA=$PWD/build/bench-demo $GO test -run '^$' -bench SearchQuality -benchtime 1x ./cmd/reid
