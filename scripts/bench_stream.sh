#!/usr/bin/env bash
# Stream benchmark: 8 KiB crop records through the embedded broker.
#  1. in-process: the Go benchmark starts kfake inside the test binary;
#  2. over loopback: `reid broker` in its own process (a fresh one for each measurement), the Go
#     benchmarks and the librdkafka reference (python3-confluent-kafka) alternating, with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BENCH_REID_BIN:-bin/reid}  # not REID_*: reid reads those as config
RUNS=${RUNS:-5}
N=${N:-20000}
[ -x "$BIN" ] || $GO build -o "$BIN" ./cmd/reid

work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

echo "== stream, broker in the benchmark's process"
$GO test ./stream/ -run '^$' -bench 'Produce|Consume8KiB' -benchtime "${N}x" -count "$RUNS" | tee "$work/inprocess.txt" | grep '^Benchmark'

echo "== stream, reid broker in its own process (Go and librdkafka rounds alternate)"
$GO test -c -o "$work/stream.test" ./stream/
/usr/bin/python3 scripts/bench_stream.py --reid "$BIN" --go-test "$work/stream.test" --n "$N" --runs "$RUNS"
