#!/usr/bin/env bash
# Stream benchmark: 8 KiB crop records through the embedded broker.
#  1. in-process: the Go benchmark starts kfake inside the test binary;
#  2. over loopback: `reid broker` in its own process, the Go benchmark and the librdkafka reference
#     (python3-confluent-kafka) against it, side by side, with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BENCH_REID_BIN:-bin/reid}  # not REID_*: reid reads those as config
RUNS=${RUNS:-5}
N=${N:-20000}
[ -x "$BIN" ] || $GO build -o "$BIN" ./cmd/reid

work=$(mktemp -d)
broker_pid=
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== stream, broker in the benchmark's process"
$GO test ./stream/ -run '^$' -bench 'Produce8KiB|Consume8KiB' -benchtime "${N}x" -count "$RUNS" | tee "$work/inprocess.txt" | grep '^Benchmark'

"$BIN" broker --addr 127.0.0.1:0 --data-dir "$work/data" --log-level warn >"$work/addr" &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
addr=$(head -1 "$work/addr")
[ -n "$addr" ] || { echo "reid broker did not start"; exit 1; }

echo "== stream, reid broker in its own process at $addr"
REID_KAFKA_BROKERS=$addr $GO test ./stream/ -run '^$' -bench 'Produce8KiB|Consume8KiB' -benchtime "${N}x" -count "$RUNS" | tee "$work/loopback.txt" | grep '^Benchmark'
/usr/bin/python3 scripts/bench_stream.py --brokers "$addr" --go-results "$work/loopback.txt" --n "$N" --runs "$RUNS"
