#!/usr/bin/env bash
# Runs the CUDA backend's GPU checks on a machine with a GPU from binaries
# built here, where there is a compiler and NVRTC but no GPU.
#
#   scripts/gpu-check.sh build   # here: builds and fills .gpu-check/
#   scripts/gpu-check.sh run     # there, in the repository root
#
# What must travel: the folder .gpu-check/ (git-ignored through
# .git/info/exclude; about 20 MiB, under the device tool's 64 MiB carry
# limit). With the device tool:
#   run(command="scripts/gpu-check.sh run", carry=[".gpu-check"])
# It holds qlora-cuda-tests and qlora-run (libstdc++ and fmt linked in; they
# need glibc alone, lib/ holds anything else ldd finds), the GPU
# parity kernels (cuda-parity-pack/, compiled here with NVRTC) and the tiny
# preset compiled for the CPU and with --cuda. There they need glibc >= 2.36
# and the driver's libcuda.so.1, nothing of the CUDA toolkit;
# compute-sanitizer is used where the machine has it.
#
# `run` checks, in order: every GPU test of qlora-cuda-tests (each kernel
# against the CPU, ctest label `gpu`; none may skip), the tiny preset's 200
# steps on the GPU against the CPU's loss curve, and compute-sanitizer
# memcheck and racecheck on the parity tests and on a few training steps.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STAGE=$ROOT/.gpu-check
BUILD=${BUILD_DIR:-$ROOT/build}

case "${1:-}" in
build)
  [ -f "$BUILD/build.ninja" ] ||
    cmake -G Ninja -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$BUILD" qlora-cuda-tests qlora-run qlora-gpu-test-inputs
  [ -f "$BUILD/test/gpu/tiny-cuda.train.bin" ] ||
    { echo "gpu-check: no tiny-cuda.train.bin: this build has no NVRTC" >&2; exit 1; }
  exclude=$(git -C "$ROOT" rev-parse --git-path info/exclude)
  case "$exclude" in /*) ;; *) exclude=$ROOT/$exclude ;; esac
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpu-check/' "$exclude" 2>/dev/null ||
    echo '/.gpu-check/' >>"$exclude"
  rm -rf "$STAGE" && mkdir -p "$STAGE"
  cp "$BUILD/bin/qlora-cuda-tests" "$BUILD/bin/qlora-run" \
    "$BUILD/test/runtime/tiny-train.bin" "$BUILD/test/gpu/tiny-cpu.train.bin" \
    "$BUILD/test/gpu/tiny-cuda.train.bin" "$BUILD/test/gpu/tokens.bin" \
    "$ROOT/test/gpu/tiny-loss-curve.sh" "$ROOT/test/gpu/compare-loss-curves.py" \
    "$STAGE/"
  cp -r "$BUILD/test/runtime/cuda-parity-pack" "$STAGE/"
  strip "$STAGE/qlora-cuda-tests" "$STAGE/qlora-run"
  # Shared libraries beyond glibc and the compiler's (none today) travel too.
  mkdir -p "$STAGE/lib"
  ldd "$STAGE/qlora-cuda-tests" "$STAGE/qlora-run" | awk '$2 == "=>" {print $3}' |
    { grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' || true; } |
    sort -u | xargs -r cp -L -t "$STAGE/lib/"
  du -sh "$STAGE"
  echo 'gpu-check: now run(command="scripts/gpu-check.sh run", carry=[".gpu-check"])'
  ;;
run)
  [ -x "$STAGE/qlora-cuda-tests" ] ||
    { echo "gpu-check: no $STAGE; run 'scripts/gpu-check.sh build' first and carry .gpu-check" >&2; exit 2; }
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  export QLORA_TINY_TRAIN_BIN=$STAGE/tiny-train.bin
  export QLORA_CUDA_PARITY_PACK=$STAGE/cuda-parity-pack
  export LD_LIBRARY_PATH=$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  LOG=${OUT:-/tmp}/gpu-check
  mkdir -p "$LOG"
  status=0
  step() { echo; echo "=== gpu-check: $*"; }

  step "GPU tests of qlora-cuda-tests (kernels vs the CPU)"
  # Each step is bounded (STEP_TIMEOUT, default 120 s) so that a hang cannot
  # eat the device call.
  limit=${STEP_TIMEOUT:-120}
  timeout "$limit" "$STAGE/qlora-cuda-tests" --gtest_filter='CudaGpuTest.*:*CudaGpuParity*' \
    2>&1 | tee "$LOG/gpu-tests.log" | grep -E '^\[parity\]|FAILED|Failure|SKIPPED|PASSED|error' || status=1
  grep -q '^\[  PASSED  \]' "$LOG/gpu-tests.log" && ! grep -q '^\[  FAILED  \]' "$LOG/gpu-tests.log" || status=1
  if grep -q '\[  SKIPPED \]' "$LOG/gpu-tests.log"; then
    echo "gpu-check: FAIL: GPU tests were skipped on a machine that should have a GPU"
    status=1
  fi

  step "tiny preset, 200 steps, GPU vs CPU loss curve"
  timeout "$limit" bash "$STAGE/tiny-loss-curve.sh" "$STAGE/qlora-run" "$STAGE/tiny-cpu.train.bin" \
    "$STAGE/tiny-cuda.train.bin" "$STAGE/tokens.bin" "$LOG/tiny" 200 || status=1

  step "qlora-run --device auto picks the GPU; where a step's time goes"
  timeout "$limit" "$STAGE/qlora-run" "$STAGE/tiny-cuda.train.bin" --data "$STAGE/tokens.bin" \
    --steps 20 --device auto --memory-report --no-progress --profile 2>&1 |
    grep -vE '^  [a-z ]+ +[0-9.]+ [KMG]?i?B' || status=1

  SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [ -z "$SANITIZER" ]; then
    step "compute-sanitizer: not on this machine; memcheck and racecheck NOT run"
    status=1
  else
    # Bounded, so that a slow tool cannot eat the device call: a run cut
    # short says how far it got (the gtest lines it printed) and does not
    # count as clean.
    sanitize() { # tool what log command...
      local tool=$1 what=$2 log=$3 rc=0
      shift 3
      timeout "${SANITIZER_TIMEOUT:-100}" "$SANITIZER" --tool "$tool" \
        --error-exitcode 3 "$@" >"$log" 2>&1 || rc=$?
      case $rc in
      0) echo "$tool: $what clean" ;;
      124)
        echo "$tool: $what NOT FINISHED in ${SANITIZER_TIMEOUT:-100} s" \
          "($(grep -c '^\[       OK \]' "$log") tests done, $(grep -c '========= ' "$log") report lines)"
        status=1
        ;;
      *)
        echo "$tool: $what FAILED (exit $rc)"
        tail -40 "$log"
        status=1
        ;;
      esac
    }
    for tool in memcheck racecheck; do
      step "compute-sanitizer --tool $tool"
      sanitize "$tool" "parity kernels" "$LOG/$tool-parity.log" \
        "$STAGE/qlora-cuda-tests" --gtest_filter="${SANITIZER_FILTER:-*CudaGpuParity*}"
      sanitize "$tool" "3 training steps" "$LOG/$tool-train.log" \
        "$STAGE/qlora-run" "$STAGE/tiny-cuda.train.bin" --data "$STAGE/tokens.bin" \
        --steps 3 --device cuda --no-progress
    done
  fi

  echo
  [ $status -eq 0 ] && echo "gpu-check: PASS" || echo "gpu-check: FAIL"
  exit $status
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
