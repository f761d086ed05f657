#!/usr/bin/env bash
# The tiny preset trained 200 steps on the GPU follows the CPU's loss curve
# within bf16 noise (ctest label `gpu`; scripts/gpu-check.sh runs it too).
#
#   tiny-loss-curve.sh QLORA_RUN CPU_TRAIN_BIN CUDA_TRAIN_BIN TOKENS OUT_DIR [STEPS]
#
# CPU_TRAIN_BIN is the preset compiled for the CPU (f32 activations),
# CUDA_TRAIN_BIN the same graph compiled with --cuda --activation-type bf16.
# Exits 77 (ctest: skipped) with the reason where there is no GPU or no
# CUDA train.bin (built without NVRTC).
set -euo pipefail
run=$1 cpu_bin=$2 cuda_bin=$3 tokens=$4 out=$5 steps=${6:-200}
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -f "$cuda_bin" ]; then
  echo "SKIP: no $cuda_bin: built without NVRTC, so the tiny preset has no CUDA images"
  exit 77
fi
mkdir -p "$out"
if ! "$run" "$cuda_bin" --memory-report --device cuda >"$out/probe.log" 2>&1; then
  if grep -qE "no CUDA driver|no GPU|no CUDA-capable" "$out/probe.log"; then
    echo "SKIP: $(tail -1 "$out/probe.log")"
    exit 77
  fi
  cat "$out/probe.log"
  exit 1
fi

common=(--data "$tokens" --steps "$steps" --lr 1e-3 --seed 1 --no-progress)
"$run" "$cpu_bin" "${common[@]}" --device cpu --metrics "$out/cpu.jsonl"
"$run" "$cuda_bin" "${common[@]}" --device cuda --metrics "$out/gpu.jsonl" \
  --memory-report
python3 "$here/compare-loss-curves.py" "$out/cpu.jsonl" "$out/gpu.jsonl"
