#!/usr/bin/env bash
# The GPU check of packages torch and trainer, in two halves (see docs/GPU.md):
#
#   scripts/gpu-check.sh prepare   HERE (Go, Debian): build the torch test binary without OpenCV
#                                  (-tags nogocv) and stage it with the model file in .gpu/
#   scripts/gpu-check.sh run       ON THE GPU MACHINE (no Go, no network; python3 with CUDA
#                                  PyTorch): rebuild the shim against that PyTorch, run the GPU
#                                  benchmarks and the torch and trainer tests on CUDA, write logs
#                                  to $OUT and a short table last.
#
# The device tool carries .gpu/ (git-ignored) with: run(carry=[".gpu"], command="scripts/gpu-check.sh run").
# GPU_CHECK_DEVICE=cpu with a small GPU_CHECK_BATCH rehearses the run half on a machine without a GPU.
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
  # Libraries the test binaries need directly besides the shim and glibc (libjpeg.so.62, which
  # package trainer decodes crops with: Ubuntu's is libjpeg.so.8) travel with them.
  mkdir -p "$STAGE/lib"
  for binary in "$STAGE/torch.test" "$STAGE/trainer.test"; do
    for library in $(readelf -d "$binary" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'); do
      case $library in libreidtorch.so | libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | ld-linux*) continue ;; esac
      cp -L "$(ldd "$binary" | awk -v name="$library" '$1 == name {print $3}')" "$STAGE/lib/"
    done
  done
  du -sh "$STAGE"
  echo "staged in $STAGE; now on the GPU machine: scripts/gpu-check.sh run (carry .gpu)"
}

run() {
  local out=${OUT:-$ROOT/out}
  mkdir -p "$out"
  summary=$out/summary.txt
  stages=$out/stages.txt
  : >"$summary"
  : >"$stages"
  # The device tool gives one command at most 600 s and brings back what it left under $OUT even
  # when it is killed. So each stage gets a share of one budget, the acceptance figures come
  # first, and the summary grows as stages finish.
  deadline=$((SECONDS + ${GPU_CHECK_BUDGET:-570}))
  local device=${GPU_CHECK_DEVICE:-cuda} batch=${GPU_CHECK_BATCH:-256} iters=${GPU_CHECK_ITERS:-20}

  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
  python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no CUDA device)")' \
    >"$out/python-torch.txt" 2>&1

  # 1. The shim, against the PyTorch installed here.
  if stage shim 240 make shim LIBTORCH="${GPU_CHECK_LIBTORCH:-python}" >"$out/shim-build.log" 2>&1; then
    note "shim: built against $(cat "$out/python-torch.txt")"
  else
    note "shim: BUILD FAILED (see shim-build.log)"
    tail -30 "$out/shim-build.log"
    return 1
  fi
  # Staged libraries only where this machine lacks them: LD_LIBRARY_PATH comes before the system's
  # own directories, and a system library's other users (PIL's libtiff, say) may need its newer
  # version.
  local missing=$STAGE/lib-missing
  rm -rf "$missing" && mkdir -p "$missing"
  local known
  known=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null)
  for library in "$STAGE"/lib/*; do
    [ -e "$library" ] || continue
    grep -q "^[[:space:]]*$(basename "$library") " <<<"$known" || ln -s "$library" "$missing/"
  done
  export LD_LIBRARY_PATH=$ROOT/build/lib:$missing${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export REID_SHARED=$STAGE/shared REID_PYTHON=python3 REID_TORCH_DEVICE=$device
  local jemalloc
  jemalloc=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 2>/dev/null || true)

  # 2. The acceptance figures: our ResNet-50 training step, then PyTorch eager on the same card.
  (cd torch && REID_TORCH_TRAIN_BATCH=$batch REID_TORCH_WARMUP=5 stage "go train bench" 150 "$STAGE/torch.test" \
    -test.run '^$' -test.bench '^BenchmarkTrainStep$' -test.benchtime "${iters}x") >"$out/bench-go-train.log" 2>&1
  stage "python eager bench" 120 python3 torch/testdata/reference.py train-bench --device "$device" --batch "$batch" \
    --iters "$iters" --warmup 5 --variants eager >"$out/bench-python-eager.log" 2>"$out/bench-python-eager.err"
  local go_train py_eager py_compile
  go_train=$(images_per_s "$out/bench-go-train.log")
  py_eager=$(python_images_per_s "$out/bench-python-eager.log")
  note "ResNet-50 train step, batch $batch: reid ${go_train:-n/a} images/s, PyTorch eager $py_eager images/s"

  # 3. Every torch test on the device; the ResNet-50 and training comparisons use this machine's
  # PyTorch as the reference. The resize test is pure Go checked against PIL, which this machine's
  # Python need not have; the CPU suite runs it.
  (cd torch && LD_PRELOAD=$jemalloc stage "torch tests" 240 "$STAGE/torch.test" -test.v -test.count=1 \
    -test.skip '^TestResizeShrinksLikePIL$') \
    >"$out/torch-tests.log" 2>&1
  test_counts "torch tests on $device" "$out/torch-tests.log"

  # 4. The Cluster Contrast trainer's tests: real OSNet, clustering, steps, resuming.
  (cd trainer && LD_PRELOAD=$jemalloc stage "trainer tests" 120 "$STAGE/trainer.test" -test.v -test.count=1) \
    >"$out/trainer-tests.log" 2>&1
  test_counts "trainer tests on $device" "$out/trainer-tests.log"
  (cd trainer && stage "trainer input bench" 30 "$STAGE/trainer.test" -test.run '^$' -test.bench '^BenchmarkTrainingBatch$' \
    -test.benchtime 20x) >"$out/bench-trainer-input.log" 2>&1
  note "trainer input side, 256 crops decoded and augmented: $(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "median-ms") print $i " ms"}' "$out/bench-trainer-input.log" | head -1) on $(nproc) cores"

  # 5. Embedding throughput, then torch.compile with what is left (compiling takes minutes).
  (cd torch && REID_TORCH_BATCH=$batch stage "go embed bench" 60 "$STAGE/torch.test" -test.run '^$' \
    -test.bench '^BenchmarkEmbed' -test.benchtime "${iters}x") >"$out/bench-go-embed.log" 2>&1
  stage "python compile bench" 300 python3 torch/testdata/reference.py train-bench --device "$device" --batch "$batch" \
    --iters "$iters" --warmup 5 --variants torch.compile >"$out/bench-python-compile.log" 2>"$out/bench-python-compile.err"
  py_compile=$(python_images_per_s "$out/bench-python-compile.log")

  # 6. Extra, if time is left: clustering's k-NN step on the card at a site's scale, 100,000 crops
  # of ResNet-50's 2,048 values (the search in Go would take many minutes; not run here).
  (cd torch && REID_KNN_ROWS=100000 REID_KNN_DIM=2048 REID_KNN_GO=0 stage "k-NN bench" 40 "$STAGE/torch.test" \
    -test.run '^$' -test.bench '^BenchmarkNearestNeighbors$' -test.benchtime 1x) >"$out/bench-knn.log" 2>&1
  note "k-NN, 100,000 x 2,048, k 38: $(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "s/search") print $i " s"}' "$out/bench-knn.log" | head -1) on $device"

  {
    echo
    echo "card: $(cat "$out/gpu.txt")"
    echo "| ResNet-50 train step, batch $batch, 256x128, bf16 + channels_last | images/s |"
    echo "| --- | --- |"
    echo "| reid torch (libtorch C++ via Go) | ${go_train:-n/a} |"
    echo "| PyTorch eager | $py_eager |"
    echo "| PyTorch torch.compile | $py_compile |"
    awk -v g="${go_train:-0}" -v e="$py_eager" -v c="$py_compile" 'BEGIN{
      if (e + 0 > 0) printf "| ratio reid / eager | %.2f |\n", g / e;
      if (c + 0 > 0) printf "| ratio reid / torch.compile | %.2f |\n", g / c }'
    echo
    echo "embedding, batch $batch (images/s):"
    grep -E 'images/s' "$out/bench-go-embed.log" | awk '{for (i = 1; i < NF; i++) if ($(i+1) == "images/s") print "  " $1, $i}'
    echo
    echo "stages (exit code, seconds):"
    cat "$stages"
  } | tee -a "$summary"
}

note() { echo "$*" | tee -a "$summary"; }

# stage NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS of what is left of the budget.
stage() {
  local name=$1 want=$2 left limit start=$SECONDS rc=0
  shift 2
  left=$((deadline - SECONDS))
  limit=$((left < want ? left : want))
  if ((limit < 10)); then
    note "$name: SKIPPED, the time budget is spent"
    return 124
  fi
  timeout "$limit" "$@" || rc=$?
  ((rc == 124)) && note "$name: TIMED OUT after $limit s"
  echo "  $name: $rc, $((SECONDS - start)) s" >>"$stages"
  return $rc
}

# test_counts TITLE LOG: one summary line of a go test -v log, then its failures.
test_counts() {
  note "$1: $(grep -c -- '^--- PASS' "$2") passed, $(grep -c -- '--- FAIL' "$2") failed"
  grep -- '--- FAIL' "$2" | tee -a "$summary"
}

# images_per_s LOG: the first "N images/s" figure of a Go benchmark log.
images_per_s() {
  awk '{for (i = 1; i < NF; i++) if ($(i+1) == "images/s") print $i}' "$1" | head -1
}

# python_images_per_s LOG: the figure in reference.py train-bench's JSON line, or nan.
python_images_per_s() {
  python3 -c '
import json, sys
try:
    lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
    print(json.loads(lines[-1])["results"][0]["images_per_s"])
except Exception:
    print("nan")' "$1"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
