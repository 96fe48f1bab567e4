#!/usr/bin/env bash
# Ingest throughput per camera on vtest.avi with one core: decode + detect (Yolo-Fastest body) +
# track + crop + store, `reid ingest` side by side with the same pipeline in python3-opencv
# (scripts/bench_ingest.py). Runs alternate Go / Python BENCH_RUNS times (default 3); medians.
#
# Two rates are printed: wall-clock frames/s, and frames per CPU-second (user + sys), which stays
# meaningful when other work shares the machine. Targets: Go >= 25 frames/s, Go/Python >= 1.0.
# BENCH_FIT_INPUT=1 runs both with the network input shaped to the frame (detector.fit_input).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${REID_SHARED:-../shared}
RUNS=${BENCH_RUNS:-3}
VIDEO=$SHARED/video/vtest.avi
MODELS=$SHARED/models/detector
PYTHON=/usr/bin/python3
[[ -x bin/reid ]] || ${GO:-go} build -o bin/reid ./cmd/reid
for needed in "$VIDEO" "$MODELS/yolo-fastest-1.1_body.weights"; do
	[[ -f $needed ]] || { echo "bench-ingest: missing $needed (set REID_SHARED)" >&2; exit 1; }
done
# One core: pin to CPU 0 and give OpenCV one thread.
PIN=()
command -v taskset >/dev/null && PIN=(taskset -c 0)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# run NAME CMD...: runs CMD, appends "name wall user sys json" to $WORK/results.
run() {
	local name=$1; shift
	local timing="$WORK/time" out="$WORK/out.json"
	local TIMEFORMAT='%R %U %S'
	{ time "$@" >"$out" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; return 1; }; } 2>"$timing"
	echo "$name $(cat "$timing") $(tr -d '\n' <"$out")" >>"$WORK/results"
}

FIT=()
if [[ ${BENCH_FIT_INPUT:-0} == 1 ]]; then
	export REID_DETECTOR_FIT_INPUT=true
	FIT=(--fit-input)
fi
for i in $(seq 1 "$RUNS"); do
	rm -rf "$WORK/go" "$WORK/py"
	run go "${PIN[@]}" bin/reid ingest --threads 1 --shared-dir "$SHARED" --data-dir "$WORK/go" \
		--source "$VIDEO" --camera bench --json
	run python "${PIN[@]}" "$PYTHON" scripts/bench_ingest.py --threads 1 --source "$VIDEO" \
		--models "$MODELS" --out "$WORK/py" "${FIT[@]}"
done

"$PYTHON" - "$WORK/results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, wall, user, system, payload = line.split(" ", 4)
    result = json.loads(payload)
    result["cpu_fps"] = result["frames"] / max(float(user) + float(system), 1e-9)
    rows.setdefault(name, []).append(result)
med = {name: {key: statistics.median(r[key] for r in runs) for key in ("fps", "cpu_fps")} for name, runs in rows.items()}
print("ingest vtest.avi, one core (taskset -c 0, OpenCV threads 1), median of %d runs" % len(rows["go"]))
print("%-8s %8s %8s %12s %12s %8s %8s" % ("", "frames", "fps", "frames/cpu-s", "detections", "crops", "tracks"))
for name in ("go", "python"):
    last = rows[name][-1]
    print("%-8s %8d %8.1f %12.1f %12d %8d %8d" % (name, last["frames"], med[name]["fps"], med[name]["cpu_fps"],
                                                 last["detections"], last["crops"], last["tracks"]))
print("ratio go/python: %.2fx wall, %.2fx per CPU-second" % (med["go"]["fps"] / med["python"]["fps"],
                                                          med["go"]["cpu_fps"] / med["python"]["cpu_fps"]))
PY
