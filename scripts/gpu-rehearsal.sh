#!/usr/bin/env bash
# Rehearses the GPU check's run half on this machine: Debian unstable with its python3-torch 2.x
# (CPU only) in a debootstrap chroot, then `scripts/gpu-check.sh run` inside it on the CPU with a
# small batch. It checks what the GPU machine would otherwise be the first to see: the shim built
# with LIBTORCH=python against a PyTorch 2 install, every torch and trainer test against that
# PyTorch (its Adam, its torchvision as the reference), and the script's own plumbing. The figures
# it prints mean nothing. Needs root; about 2.5 GB under $REHEARSAL_ROOT.
#
#   scripts/gpu-rehearsal.sh            (after scripts/gpu-check.sh prepare)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${REHEARSAL_ROOT:-/tmp/reid-gpu-rehearsal}
suite=${REHEARSAL_SUITE:-sid}
[ -x .gpu/torch.test ] || { echo "run scripts/gpu-check.sh prepare first" >&2; exit 2; }
if [ ! -x "$root/usr/bin/python3" ]; then
  command -v debootstrap >/dev/null || apt-get install -y debootstrap
  debootstrap --variant=minbase --include=python3-torch,python3-torchvision,libtorch-dev,g++,make,libjemalloc2 \
    "$suite" "$root" http://deb.debian.org/debian
fi
for fs in proc sys dev; do
  mountpoint -q "$root/$fs" || mount --bind "/$fs" "$root/$fs"
done
trap 'for fs in proc sys dev; do umount "$root/$fs" 2>/dev/null || true; done' EXIT
rm -rf "$root/work/reid" "$root/tmp/out"
mkdir -p "$root/work/reid"
git ls-files -z | xargs -0 tar cf - | tar xf - -C "$root/work/reid"
cp -r .gpu "$root/work/reid/"
chroot "$root" bash -c 'cd /work/reid && GPU_CHECK_DEVICE=cpu GPU_CHECK_BATCH=8 GPU_CHECK_ITERS=2 OUT=/tmp/out scripts/gpu-check.sh run'
echo "logs: $root/tmp/out"
