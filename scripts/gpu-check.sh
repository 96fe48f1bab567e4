#!/usr/bin/env bash
# The GPU check of packages torch and trainer, in two halves (see docs/GPU.md):
#
#   scripts/gpu-check.sh prepare   HERE (Go, Debian): build the torch test binary without OpenCV
#                                  (-tags nogocv) and stage it with the model file in .gpu/
#   scripts/gpu-check.sh run       ON THE GPU MACHINE (no Go, no network; python3 with CUDA
#                                  PyTorch): rebuild the shim against that PyTorch, run the torch
#                                  tests on CUDA, run the GPU benchmarks, write logs to $OUT and a
#                                  short table last.
#
# The device tool carries .gpu/ (git-ignored) with: run(carry=[".gpu"], command="scripts/gpu-check.sh run").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAGE=$ROOT/.gpu

prepare() {
  set -e
  local shared=${REID_SHARED:-$(cd .. && pwd)/shared}
  mkdir -p "$STAGE/shared/models/reid"
  make build/lib/libreidtorch.so
  go test -c -tags nogocv -o "$STAGE/torch.test" ./torch
  go test -c -o "$STAGE/trainer.test" ./trainer
  cp "$shared/models/reid/osnet_x0_25_msmt17.pth" "$STAGE/shared/models/reid/"
  du -sh "$STAGE"
  echo "staged in $STAGE; now on the GPU machine: scripts/gpu-check.sh run (carry .gpu)"
}

run() {
  local out=${OUT:-$ROOT/out}
  mkdir -p "$out"
  local summary=$out/summary.txt
  : >"$summary"
  note() { echo "$*" | tee -a "$summary"; }

  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
  python3 -c 'import torch,sys; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' \
    >"$out/python-torch.txt" 2>&1

  # 1. The shim, against the PyTorch installed here.
  local start=$SECONDS
  if make shim LIBTORCH=python >"$out/shim-build.log" 2>&1; then
    note "shim: built against $(cat "$out/python-torch.txt") in $((SECONDS - start)) s"
  else
    note "shim: BUILD FAILED (see shim-build.log)"
    tail -30 "$out/shim-build.log"
    return 1
  fi
  export LD_LIBRARY_PATH=$ROOT/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export REID_SHARED=$STAGE/shared REID_PYTHON=python3 REID_TORCH_DEVICE=cuda
  local jemalloc
  jemalloc=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 2>/dev/null || true)

  # 2. The torch tests, on CUDA.
  start=$SECONDS
  (cd torch && LD_PRELOAD=$jemalloc timeout 300 "$STAGE/torch.test" -test.v -test.count=1 -test.timeout 290s) \
    >"$out/torch-tests.log" 2>&1
  local rc=$?
  note "tests on cuda: rc=$rc, $(grep -c -- '^--- PASS' "$out/torch-tests.log") passed, $(grep -c -- '--- FAIL' "$out/torch-tests.log") failed, $((SECONDS - start)) s"
  grep -- '--- FAIL' "$out/torch-tests.log" | tee -a "$summary"

  # 2b. The Cluster Contrast trainer's tests (real OSNet, clustering, steps, resume), on CUDA.
  start=$SECONDS
  (cd trainer && LD_PRELOAD=$jemalloc timeout 120 "$STAGE/trainer.test" -test.v -test.count=1 -test.timeout 110s) \
    >"$out/trainer-tests.log" 2>&1
  rc=$?
  note "trainer tests on cuda: rc=$rc, $(grep -c -- '^--- PASS' "$out/trainer-tests.log") passed, $(grep -c -- '--- FAIL' "$out/trainer-tests.log") failed, $((SECONDS - start)) s"
  grep -- '--- FAIL' "$out/trainer-tests.log" | tee -a "$summary"

  # 3. Benchmarks: our ResNet-50 training step and embedding, then PyTorch eager and compiled.
  (cd torch && REID_TORCH_TRAIN_BATCH=256 REID_TORCH_WARMUP=5 timeout 180 "$STAGE/torch.test" -test.run '^$' \
    -test.bench '^BenchmarkTrainStep$' -test.benchtime 20x) >"$out/bench-go-train.log" 2>&1
  (cd torch && REID_TORCH_BATCH=256 timeout 120 "$STAGE/torch.test" -test.run '^$' \
    -test.bench '^BenchmarkEmbed' -test.benchtime 20x) >"$out/bench-go-embed.log" 2>&1
  timeout 420 python3 torch/testdata/reference.py train-bench --batch 256 --iters 20 --warmup 5 --compile \
    >"$out/bench-python-train.log" 2>"$out/bench-python-train.err"

  local go_train py_eager py_compile
  go_train=$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "images/s") print $i}' "$out/bench-go-train.log" | head -1)
  read -r py_eager py_compile < <(python3 - "$out/bench-python-train.log" <<'EOF'
import json, sys
try:
    lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
    results = {r["variant"].split()[0]: r["images_per_s"] for r in json.loads(lines[-1])["results"]}
    print(results.get("eager", "nan"), results.get("torch.compile", "nan"))
except Exception:
    print("nan nan")
EOF
)
  {
    echo
    echo "card: $(cat "$out/gpu.txt")"
    echo "| ResNet-50 train step, batch 256, 256x128, bf16 + channels_last | images/s |"
    echo "| --- | --- |"
    echo "| reid torch (libtorch C++ via Go) | ${go_train:-n/a} |"
    echo "| PyTorch eager | $py_eager |"
    echo "| PyTorch torch.compile | $py_compile |"
    awk -v g="${go_train:-0}" -v e="$py_eager" -v c="$py_compile" 'BEGIN{
      if (e + 0 > 0) printf "| ratio reid / eager | %.2f |\n", g / e;
      if (c + 0 > 0) printf "| ratio reid / torch.compile | %.2f |\n", g / c }'
    echo
    echo "embedding, batch 256 (images/s):"
    grep -E 'images/s' "$out/bench-go-embed.log" | awk '{for (i = 1; i < NF; i++) if ($(i+1) == "images/s") print "  " $1, $i}'
  } | tee -a "$summary"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
