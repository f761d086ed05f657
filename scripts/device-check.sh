#!/usr/bin/env bash
# Both GPU jobs of the CUDA backend in one device call that fits a 15-minute
# device lease: the correctness checks (scripts/gpu-check.sh) and the
# training-step benchmark (bench/step), each bounded in time.
#
#   scripts/device-check.sh build   # here: stages .gpu-check/ and .bench-step/
#   scripts/device-check.sh run     # there, in the repository root
#
# With the device tool (the machine's start takes a minute or two of the
# lease; the command stays under DEVICE_BUDGET_S, default 540 s):
#   run(command="scripts/device-check.sh run", carry=[".gpu-check", ".bench-step"],
#       timeout_s=600)
#
# `run` spends at most CHECK_BUDGET_S (default 200) on gpu-check (GPU parity,
# the 200-step loss curve, a profile, compute-sanitizer memcheck and
# racecheck, each bounded) and the rest of DEVICE_BUDGET_S on bench/step
# (ours and transformers + PEFT + bitsandbytes per preset, STEPS steps each,
# then a profile per preset). Everything it prints also goes to
# $OUT/device-check.log; the bench table to $OUT/step.md and $OUT/step.json;
# every other log, packed, to $OUT/logs.tar.gz (the device tool brings back
# 8 files, 2 folders deep). Exits non-zero if either job failed.
# BENCH_MODE=ours skips the baseline (a dry run here, under the emulated
# driver).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

case "${1:-}" in
build)
  set -e
  bash scripts/gpu-check.sh build
  SKIP_BUILD=${SKIP_BUILD:-1} bash bench/step/prepare.sh
  # The device tool carries 64 MiB: the two stages and the working tree.
  [ -d .bench-step-hf ] && {
    echo "device-check: bench/step was split in two calls (too big); carry them apart" >&2
    exit 1
  }
  staged=$(du -sk .gpu-check .bench-step | awk '{s += $1} END {print s}')
  tree=$(git ls-files -co --exclude-standard -z |
    du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  echo "device-check: $((staged / 1024)) MiB staged + $((tree / 1024)) MiB of working tree"
  if [ $(((staged + tree) / 1024)) -ge 63 ]; then
    echo "device-check: over the device tool's 64 MiB; carry the stages in two calls" >&2
    exit 1
  fi
  echo 'device-check: now run(command="scripts/device-check.sh run", carry=[".gpu-check", ".bench-step"], timeout_s=600)'
  ;;
run)
  budget=${DEVICE_BUDGET_S:-540}
  checkBudget=${CHECK_BUDGET_S:-200}
  start=$SECONDS
  out=${OUT:-/tmp/device-check}
  logs=$(mktemp -d /tmp/device-check-logs.XXXXXX)
  mkdir -p "$out"
  exec > >(tee "$out/device-check.log") 2>&1
  echo "device-check: budget ${budget} s (gpu-check ${checkBudget} s)"

  # gpu-check's own steps are bounded; this bounds their sum.
  OUT=$logs SANITIZER_TIMEOUT=${SANITIZER_TIMEOUT:-40} \
    timeout --kill-after=5 "$checkBudget" bash scripts/gpu-check.sh run
  checkStatus=$?
  [ $checkStatus -eq 124 ] && echo "device-check: gpu-check ran out of its ${checkBudget} s"

  left=$((budget - (SECONDS - start) - 10))
  echo
  echo "=== device-check: bench/step with ${left} s left"
  benchStatus=1
  if [ $left -ge 90 ]; then
    # Measured steps first (two thirds of what is left), then profiles and
    # the GEMM reference.
    OUT=$logs/bench STEPS=${STEPS:-5} WARMUP=${WARMUP:-1} \
      BUDGET_S=$((left * 2 / 3)) PROFILE_BUDGET_S=$((left / 4 - 5)) \
      GEMM_BUDGET_S=$((left / 12)) \
      timeout --kill-after=5 "$left" bash bench/step/run.sh "${BENCH_MODE:-all}"
    benchStatus=$?
    cp "$logs"/bench/step.md "$logs"/bench/step.json "$out/" 2>/dev/null
    # measure.py finishes its table whatever each run did: count the runs.
    runs=$(python3 -c 'import json, sys
runs = json.load(open(sys.argv[1]))["runs"].values()
print(sum(r.get("status") == "ok" for r in runs), "of", len(runs))' \
      "$out/step.json" 2>/dev/null || echo "0 of ?")
    echo "device-check: bench/step: $runs runs ok"
    [ "${runs% of *}" = "${runs#* of }" ] || benchStatus=1
  else
    echo "device-check: too little time left for bench/step"
  fi

  tar -C "$logs" -czf "$out/logs.tar.gz" . &&
    echo "device-check: logs in $out/logs.tar.gz"

  # A recap at the end, so that the last lines of the output (all a
  # caller may see) hold the results: each program's time per kernel
  # template, the GEMM references, then the checks and the table.
  echo
  echo "=== device-check: recap"
  for profile in "$logs"/bench/profile-*.txt; do
    [ -f "$profile" ] || continue
    echo "--- $(basename "$profile" .txt)"
    sed '/slowest of/q' "$profile"
  done
  cat "$logs"/bench/gemm-*/gemm.md 2>/dev/null
  # From a copy: the log grows with what this prints.
  cp "$out/device-check.log" "$logs/console-so-far.log"
  grep -E '^(\[  (PASSED|FAILED)  \] [0-9]+ tests?[,.]|PASS: |FAIL: |(memcheck|racecheck|gpu-check): |device-check: (gpu-check|bench/step))' \
    "$logs/console-so-far.log" || true
  cat "$out/step.md" 2>/dev/null
  echo "device-check: gpu-check $([ $checkStatus -eq 0 ] && echo PASS || echo FAIL)," \
    "bench/step $([ $benchStatus -eq 0 ] && echo "done (${runs:-0 of ?} runs ok)" || echo "FAILED (${runs:-0 of ?} runs ok)")," \
    "$((SECONDS - start)) s"
  [ $checkStatus -eq 0 ] && [ $benchStatus -eq 0 ]
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
