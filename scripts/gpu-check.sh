#!/usr/bin/env bash
# Runs the CUDA backend's GPU tests (ctest label `gpu`) on a machine with a
# GPU from binaries built here, where there is a compiler but no GPU.
#
#   scripts/gpu-check.sh build   # here: builds and fills .gpu-check/
#   scripts/gpu-check.sh run     # there, in the repository root
#
# What must travel: the folder .gpu-check/ (git-ignored through
# .git/info/exclude; about 5 MiB, under the device tool's 64 MiB carry
# limit). With the device tool:
#   run(command="scripts/gpu-check.sh run", carry=[".gpu-check"])
# It holds qlora-cuda-tests and qlora-run (libstdc++ linked statically),
# lib/ with the shared libraries they need beyond glibc (libfmt), and the
# tiny preset's train.bin. There they need glibc >= 2.36 and the driver's
# libcuda.so.1, nothing of the CUDA toolkit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STAGE=$ROOT/.gpu-check
BUILD=${BUILD_DIR:-$ROOT/build-gpu}

case "${1:-}" in
build)
  cmake -G Ninja -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$BUILD" qlora-cuda-tests qlora-run
  exclude=$(git -C "$ROOT" rev-parse --git-path info/exclude)
  case "$exclude" in /*) ;; *) exclude=$ROOT/$exclude ;; esac
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpu-check/' "$exclude" 2>/dev/null ||
    echo '/.gpu-check/' >>"$exclude"
  rm -rf "$STAGE" && mkdir -p "$STAGE"
  cp "$BUILD/bin/qlora-cuda-tests" "$BUILD/bin/qlora-run" \
    "$BUILD/test/runtime/tiny-train.bin" "$STAGE/"
  strip "$STAGE/qlora-cuda-tests" "$STAGE/qlora-run"
  # Shared libraries beyond glibc and the compiler's (libfmt today) travel too.
  mkdir -p "$STAGE/lib"
  ldd "$STAGE/qlora-cuda-tests" "$STAGE/qlora-run" | awk '$2 == "=>" {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' |
    sort -u | xargs -r cp -L -t "$STAGE/lib/"
  du -sh "$STAGE"
  echo 'gpu-check: now run(command="scripts/gpu-check.sh run", carry=[".gpu-check"])'
  ;;
run)
  [ -x "$STAGE/qlora-cuda-tests" ] ||
    { echo "gpu-check: no $STAGE; run 'scripts/gpu-check.sh build' first and carry .gpu-check" >&2; exit 2; }
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  export QLORA_TINY_TRAIN_BIN=$STAGE/tiny-train.bin
  export LD_LIBRARY_PATH=$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  status=0
  # Every suite: the GPU one must pass (not skip) here.
  "$STAGE/qlora-cuda-tests" --gtest_brief=0 2>&1 | tee /tmp/gpu-check.log || status=1
  if grep -q '\[  SKIPPED \] CudaGpuTest' /tmp/gpu-check.log; then
    echo "gpu-check: FAIL: GPU tests were skipped on a machine that should have a GPU"
    status=1
  fi
  # qlora-run on the GPU: until --qrt-codegen-cuda fills Kernel.images, a
  # CPU-only train.bin is refused by --device cuda and auto falls back.
  set +e
  "$STAGE/qlora-run" "$STAGE/tiny-train.bin" --memory-report --device cuda
  echo "gpu-check: qlora-run --device cuda exited $?"
  "$STAGE/qlora-run" "$STAGE/tiny-train.bin" --memory-report --device auto
  rc=$?
  set -e
  echo "gpu-check: qlora-run --device auto exited $rc"
  [ $rc -eq 0 ] || status=1
  [ $status -eq 0 ] && echo "gpu-check: PASS" || echo "gpu-check: FAIL"
  exit $status
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
