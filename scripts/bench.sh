#!/usr/bin/env bash
# `make bench`: each stage's benchmark, one line per stage. Figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# Stream: 8 KiB crop records through the embedded broker, Go vs librdkafka (msgs/s, MB/s).
./scripts/bench_stream.sh

# Ingest: vtest.avi decode + detect + track + crop + store on one core, Go vs python3-opencv.
./scripts/bench-ingest.sh
