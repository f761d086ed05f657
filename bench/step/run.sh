#!/usr/bin/env bash
# Runs the training-step benchmark on the GPU machine, in the repository
# root, from what bench/step/prepare.sh staged here:
#
#   run(command="bash bench/step/run.sh all", carry=[".bench-step"])
#
# `all` runs qlora-run and the transformers + PEFT + bitsandbytes baseline
# (bench/step/hf_baseline.py) on each staged preset, one process at a time,
# and prints the table (bench/step/measure.py); `ours` or `hf` run one side
# only (prepare.sh says when the staged files need two calls). STEPS
# (default 7) and WARMUP (2) set the steps per run and how many of them the
# medians skip; BUDGET_S (default 560) bounds the measured runs, each of
# which gets a fair share of what is left (bench/step/measure.py). The table, the
# numbers as JSON, the raw logs and the memory samples go to $OUT when it is
# set, else to .bench-step/results; then a --profile of qlora-run per preset
# (profile-<preset>.txt) and, with the baseline, the cost of each preset's
# frozen-weight GEMMs in cuBLAS and bitsandbytes (gemm-<preset>/).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
MODE=${1:-all}
case "$MODE" in all | ours | hf) ;; *)
  echo "usage: $0 all|ours|hf" >&2
  exit 2
  ;;
esac
STAGE=.bench-step
HF_STAGE=$STAGE
[ -d "$STAGE/whl" ] || HF_STAGE=.bench-step-hf
if [ "$MODE" != hf ] && [ ! -x "$STAGE/qlora-run" ]; then
  echo "bench/step: no $STAGE/qlora-run; run 'bash bench/step/prepare.sh' here first and carry .bench-step" >&2
  exit 2
fi
if [ "$MODE" != ours ]; then
  ls "$HF_STAGE"/whl/bitsandbytes-*.whl >/dev/null 2>&1 || {
    echo "bench/step: no bitsandbytes wheel in $HF_STAGE/whl; run bench/step/prepare.sh and carry it" >&2
    exit 2
  }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site "$HF_STAGE"/whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader ||
  echo "bench/step: nvidia-smi failed; no memory samples"
manifest=$STAGE/manifest.txt
[ -f "$manifest" ] || manifest=$HF_STAGE/manifest.txt
cat "$manifest" 2>/dev/null || true
field() { sed -n "s/^$1: *//p" "$manifest" 2>/dev/null; }
presets=$(field presets)
variants=$(field variants)
seq=$(field seq | sed 's/[^0-9].*//')
RESULTS=${OUT:-$STAGE/results}
mkdir -p "$RESULTS"
status=0
python3 bench/step/measure.py --mode "$MODE" --stage "$STAGE" \
  --hf-stage "$HF_STAGE" --steps "${STEPS:-7}" --warmup "${WARMUP:-2}" \
  --budget-s "${BUDGET_S:-560}" --device "${DEVICE:-cuda}" --out "$RESULTS" ||
  status=$?
# Where qlora-run's step time goes (PROFILE=0 skips it): 3 steps, the last
# two profiled, per kernel template; PROFILE_BUDGET_S (default 240) bounds
# them all. The presets first, then their variants (preset.variant), in
# measure.py's order.
if [ "$MODE" != hf ] && [ "${PROFILE:-1}" = 1 ] && [ -n "$presets" ]; then
  read -ra programs <<<"$presets"
  for variant in $variants; do
    for preset in $presets; do programs+=("$preset.$variant"); done
  done
  limit=$((${PROFILE_BUDGET_S:-240} / ${#programs[@]}))
  [ $limit -gt 120 ] && limit=120
  for name in "${programs[@]}"; do
    LD_LIBRARY_PATH=$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
      timeout "$limit" "$STAGE/qlora-run" "$STAGE/$name.train.bin" --data "$STAGE/tokens.u16" \
      --steps 3 --device "${DEVICE:-cuda}" --no-progress --profile \
      2>&1 | sed -n '/^profile:/,$p' | tee "$RESULTS/profile-$name.txt" || true
  done
fi
# What each preset's frozen-weight GEMMs cost cuBLAS and bitsandbytes on
# this GPU (bench/step/gemm_reference.py; GEMM_REFERENCE=0 skips it), to
# set against the profiles' linear TFLOP/s; GEMM_BUDGET_S (default 60)
# bounds them all.
if [ "$MODE" != ours ] && [ "${GEMM_REFERENCE:-1}" = 1 ] && [ -n "$presets" ]; then
  count=$(wc -w <<<"$presets")
  for preset in $presets; do
    timeout $((${GEMM_BUDGET_S:-60} / count)) python3 bench/step/gemm_reference.py \
      --preset "$preset" --seq "${seq:-2048}" \
      --device "${DEVICE:-cuda}" --out "$RESULTS/gemm-$preset" ||
      echo "bench/step: gemm_reference $preset failed or ran out of time"
  done
fi
exit $status
