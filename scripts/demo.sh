#!/usr/bin/env bash
# `make demo` (after `make build`): the whole pipeline on one machine with the embedded defaults.
#  1. import the shared OSNet x0.25 (MSMT17) re-id model as the first model version;
#  2. `reid synth video`: three synthetic cameras that the same 12 people walk through in turn,
#     made from the real people of the shared videos, with ground truth (docs/SYNTH.md);
#  3. `reid run` the two shared videos and the three synthetic ones as five cameras through the
#     embedded Kafka-protocol broker, the embedder, the archiver and the embedded index, until every
#     crop is searchable;
#  4. cross-camera searches from the command line, and contact sheets of what was captured.
# With REID_DEMO_TRAIN=1 it also adapts the model to these cameras before searching (`reid train`,
# Cluster Contrast without labels, about 10 minutes on 2 cores), promotes it and re-embeds every
# stored crop with it. Not by default: on these cameras the adapted model finds a person's own
# track more often but, depending on the seed, finds them in the other cameras less often
# (docs/TRAINING.md), and a site should promote a model only after checking it.
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

# The shared videos each come from one camera with different people in them, so cross-camera
# search is shown on synthetic cameras that the same people walk through.
synth="$DATA/synth-video"
if [[ ! -f $synth/ground_truth.json ]]; then
	echo "== synthetic cameras (about a minute)"
	reid synth video --out "$synth" --cameras 3 --seconds 120 --identities 12 --seed 7 >/dev/null
fi

# The cameras share one clock so the timeline lines them up. The street camera looks down on a
# square from high up, its people 50-150 pixels tall (most about 80): it gets the slower, better detector
# (docs/OPERATIONS.md, "Choosing a detector per camera").
config="$DATA/demo-config.yaml"
cat >"$config" <<YAML
cameras:
  - id: street
    source: $SHARED/video/vtest.avi
    start_time: "2026-11-27T08:00:00Z"
    detector:
      model: yolox-nano
  - id: lobby
    source: $SHARED/video/one-by-one-person-detection.mp4
    start_time: "2026-11-27T08:01:00Z"
  - id: gate
    source: $synth/camera01.avi
    start_time: "2026-11-27T08:05:00Z"
  - id: hall
    source: $synth/camera02.avi
    start_time: "2026-11-27T08:05:00Z"
  - id: yard
    source: $synth/camera03.avi
    start_time: "2026-11-27T08:05:00Z"
# Cluster Contrast sized for a CPU, for REID_DEMO_TRAIN=1 (the defaults are the reference's, for a
# GPU): docs/TRAINING.md.
trainer:
  epochs: 16
  iters_per_epoch: 30
  batch_size: 64
  instances: 4
YAML

echo "== reid run: five cameras -> embedded broker -> embedder + archiver -> embedded index"
reid --config "$config" run --exit-when-done

# The active model is the imported one on the first run; a second run keeps the adapted one.
if [[ ${REID_DEMO_TRAIN:-0} == 1 ]] && ! reid model show | grep -q '"source": "cluster-contrast"'; then
	echo "== reid train: adapt the model to these cameras (Cluster Contrast, no labels; about 10 minutes)"
	reid --config "$config" --log-level info train --promote # one log line per epoch
	echo "== re-embed every stored crop with the adapted model, then search with it"
	reid --config "$config" index backfill --activate
fi
reid model list
reid index versions

echo "== contact sheets"
for camera in street lobby gate hall yard; do
	reid crops sheet --camera "$camera" --out "$DATA/sheet-$camera.png" --max 48
done

query=$(find "$DATA/crops/lobby" -name '*.jpg' | sort | sed -n '40p')
echo "== search by image: a crop from 'lobby', the same person within 'lobby' (other tracks and times)"
echo "query: $query"
reid search --image "$query" --k 5 --camera lobby
echo "== cross-camera search on the synthetic cameras: a crop from 'gate', searched in 'hall' and 'yard'"
query=$(find "$DATA/crops/gate" -name '*.jpg' | sort | sed -n '60p')
echo "query: $query"
reid search --image "$query" --k 5 --camera hall --camera yard
cat <<TXT

Crops:          $DATA/crops/<camera>/<day>/<id>.jpg (metadata: $REID --data-dir $DATA crops show ID|FILE)
Contact sheets: $DATA/sheet-<camera>.png (street, lobby, gate, hall, yard)
Ground truth:   $synth/ground_truth.json (who is where in every frame of gate, hall, yard)
Search again:   $REID --data-dir $DATA search --image FILE [--camera-not ID] [--json]
Web page:       $REID --data-dir $DATA serve, then open http://127.0.0.1:8080/
Watches:        on that page, "Watch for this person" under a query; alerts come as the person is
                seen again (a running reid run or serve; docs/OPERATIONS.md, "Watches")
Back up:        $REID --data-dir $DATA backup DIR (while reid runs; again: only what changed)
TXT
