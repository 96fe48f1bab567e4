#!/usr/bin/env bash
# `make demo` (after `make build`): ingest both shared videos into $DATA, print what was found and
# draw a contact sheet per camera so a person can look at the crops.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${REID_SHARED:-../shared}
DATA=${DATA:-./data}
REID=${REID:-bin/reid}
[[ -x $REID ]] || { echo "demo: $REID not built (run make build)" >&2; exit 1; }

ingest() {
	local camera=$1 video=$2
	echo "== $camera: $video"
	"$REID" ingest --shared-dir "$SHARED" --data-dir "$DATA" --source "$video" --camera "$camera"
	"$REID" crops sheet --shared-dir "$SHARED" --data-dir "$DATA" --camera "$camera" --out "$DATA/sheet-$camera.png"
}

ingest cam1 "$SHARED/video/vtest.avi"
ingest cam2 "$SHARED/video/one-by-one-person-detection.mp4"
echo "crops: $DATA/crops/<camera>/<day>/<id>.{jpg,json}; contact sheets: $DATA/sheet-cam1.png, $DATA/sheet-cam2.png"
