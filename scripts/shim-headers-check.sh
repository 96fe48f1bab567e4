#!/usr/bin/env bash
# Compiles the libtorch shim (syntax and types only) against newer libtorch headers than Debian
# 12's 1.13, so an API change shows up here instead of in the GPU machine's few minutes (its
# PyTorch is 2.x; docs/GPU.md). The headers come from the libtorch-dev package of each named Debian
# suite, downloaded with apt into a scratch folder and unpacked there: nothing is installed.
#
#   scripts/shim-headers-check.sh [SUITE...]     (default: trixie sid, libtorch 2.6 and the newest)
set -euo pipefail
cd "$(dirname "$0")/.."
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(trixie sid)
status=0
for suite in "${suites[@]}"; do
  scratch=${SHIM_CHECK_DIR:-/tmp/reid-shim-headers}/$suite
  mkdir -p "$scratch/lists/partial" "$scratch/cache/archives/partial" "$scratch/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
    >"$scratch/sources.list"
  apt_options=(-o "Dir::Etc::SourceList=$scratch/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$scratch/lists" -o "Dir::Cache=$scratch/cache")
  if ! ls "$scratch"/libtorch-dev_*.deb >/dev/null 2>&1; then
    apt-get "${apt_options[@]}" update >/dev/null
    (cd "$scratch" && apt-get "${apt_options[@]}" download libtorch-dev 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
    dpkg-deb -x "$scratch"/libtorch-dev_*.deb "$scratch/root"
  fi
  include=$scratch/root/usr/include
  flags=(-I"$include" -I"$include/torch/csrc/api/include")
  version=$(printf '#include <torch/version.h>\nTORCH_VERSION_MAJOR.TORCH_VERSION_MINOR.TORCH_VERSION_PATCH\n' |
    g++ -E -P "${flags[@]}" -x c++ - | tail -1 | tr -d ' ')
  if g++ -std=c++20 -fsyntax-only -Wall -Werror -D_GLIBCXX_USE_CXX11_ABI=1 "${flags[@]}" torch/csrc/reidtorch.cpp; then
    echo "ok: the shim compiles cleanly against libtorch $version ($suite)"
  else
    echo "FAILED: the shim against libtorch $version ($suite)"
    status=1
  fi
done
exit $status
