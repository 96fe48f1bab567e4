#!/usr/bin/env bash
# `make demo` (after `make build`): the whole pipeline on one machine with the embedded defaults.
#  1. import the shared OSNet x0.25 (MSMT17) re-id model as the first model version;
#  2. `reid run` both shared videos as two cameras through the embedded Kafka-protocol broker,
#     the embedder, the archiver and the embedded index, until every crop is searchable;
#  3. a cross-camera search from the command line, and contact sheets of what was captured.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=$(realpath "${REID_SHARED:-../shared}")
DATA=${DATA:-./data}
REID=${REID:-bin/reid}
[[ -x $REID ]] || { echo "demo: $REID not built (run make build)" >&2; exit 1; }
mkdir -p "$DATA"
reid() { "$REID" --data-dir "$DATA" --shared-dir "$SHARED" --log-level warn "$@"; }

echo "== model"
if ! reid model show >/dev/null 2>&1; then
	reid model import --arch osnet_x0_25 --weights "$SHARED/models/reid/osnet_x0_25_msmt17.pth" --name osnet_x0_25_msmt17
fi
reid model list

# Both cameras share one clock so the timeline lines them up.
config="$DATA/demo-config.yaml"
cat >"$config" <<YAML
cameras:
  - id: street
    source: $SHARED/video/vtest.avi
    start_time: "2026-11-27T08:00:00Z"
  - id: lobby
    source: $SHARED/video/one-by-one-person-detection.mp4
    start_time: "2026-11-27T08:01:00Z"
YAML

echo "== reid run: two cameras -> embedded broker -> embedder + archiver -> embedded index"
reid --config "$config" run --exit-when-done

echo "== contact sheets"
for camera in street lobby; do
	reid crops sheet --camera "$camera" --out "$DATA/sheet-$camera.png" --max 48
done

echo "== cross-camera search: a crop from 'lobby', searched in every other camera"
query=$(find "$DATA/crops/lobby" -name '*.jpg' | sort | sed -n '40p')
echo "query: $query"
reid search --image "$query" --k 5 --camera-not lobby
echo "== the same person within 'lobby' (other tracks and times)"
reid search --image "$query" --k 5 --camera lobby
cat <<TXT

Crops:          $DATA/crops/<camera>/<day>/<id>.{jpg,json}
Contact sheets: $DATA/sheet-street.png, $DATA/sheet-lobby.png
Search again:   $REID --data-dir $DATA search --image FILE [--camera-not ID] [--json]
TXT
