#!/usr/bin/env bash
# `make bench`: each stage's benchmark, one line per stage. Figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# Stream: 8 KiB crop records through the embedded broker, Go vs librdkafka (msgs/s, MB/s).
./scripts/bench_stream.sh

# Ingest: vtest.avi decode + detect + track + crop + store on one core, Go vs python3-opencv.
./scripts/bench-ingest.sh

# Index: embedded exact + HNSW vs python3-faiss IndexFlatIP / IndexHNSWFlat on clustered 512-d
# vectors (build, RSS, p50/p99 latency, recall@10, restart). 1M takes about an hour on 2 cores: REID_BENCH=full.
$GO run ./index/embedded/cmd/indexbench -n 100000 -work build/indexbench
if [ "${REID_BENCH:-}" = full ]; then $GO run ./index/embedded/cmd/indexbench -n 1000000 -queries 200 -work build/indexbench; fi

# Eval + cluster: Market-1501-size metrics, re-ranking and Cluster Contrast pseudo-labels, reid vs
# numpy/faiss/sklearn references on the same features (table), then the Go benchmarks.
/usr/bin/python3 scripts/bench_eval.py bin/reid build/evalbench
$GO test -run '^$' -bench . -benchtime 1x ./eval/ ./cluster/ ./internal/vecmath/
