#!/usr/bin/env bash
# Torch: CPU embedding throughput of package torch against Debian's python3-torch on the same
# model, batch (32 x 3 x 256 x 128), thread count and machine, run side by side; medians; ratio.
# `make bench` preloads jemalloc for both (glibc malloc is 4-9x slower here; see README).
# REID_TORCH_THREADS sets the intra-op threads of both sides (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
THREADS=${REID_TORCH_THREADS:-$(nproc)}
ITERS=${REID_TORCH_ITERS:-5}
mkdir -p build
$GO test -c -o build/torch.test ./torch

python_bench() { # ARCH [--channels-last]
  /usr/bin/python3 torch/testdata/reference.py bench --arch "$1" --threads "$THREADS" --iters "$ITERS" "${@:2}" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])'
}

# PyTorch runs twice: as the plain reference (NCHW, as Python code usually runs) and in the
# channels_last layout package torch uses, which is the fair like-for-like figure.
printf '%-12s %8s %10s %12s %12s %10s %10s\n' model threads "go img/s" "py img/s" "py CL img/s" "ratio" "ratio CL"
for arch in osnet_x0_25 resnet50; do
  # Alternate the sides twice and keep each side's better median, so a burst of load from
  # elsewhere does not decide the ratio.
  best_go=0 best_py=0 best_cl=0
  for _ in 1 2; do
    go_ips=$(cd torch && REID_TORCH_THREADS=$THREADS ../build/torch.test -test.run '^$' \
      -test.bench "^BenchmarkEmbed/${arch}\$" -test.benchtime "${ITERS}x" |
      awk '{for (i = 1; i < NF; i++) if ($(i+1) == "images/s") print $i}')
    py_ips=$(python_bench "$arch")
    cl_ips=$(python_bench "$arch" --channels-last)
    best_go=$(awk -v a="$best_go" -v b="$go_ips" 'BEGIN{print (b > a) ? b : a}')
    best_py=$(awk -v a="$best_py" -v b="$py_ips" 'BEGIN{print (b > a) ? b : a}')
    best_cl=$(awk -v a="$best_cl" -v b="$cl_ips" 'BEGIN{print (b > a) ? b : a}')
  done
  awk -v m="$arch" -v t="$THREADS" -v g="$best_go" -v p="$best_py" -v c="$best_cl" \
    'BEGIN{printf "%-12s %8d %10.1f %12.1f %12.1f %10.2f %10.2f\n", m, t, g, p, c, g / p, g / c}'
done
