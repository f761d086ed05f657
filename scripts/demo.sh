#!/usr/bin/env bash
# The main job on the built-in default: import the tiny preset with LoRA on
# every linear layer, compile it to train.bin, train 200 steps on a learnable
# synthetic sequence (on the CPU, or a GPU when qlora-run has one) and export
# the PEFT adapter to build/demo/adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
mkdir -p build/demo
set -x
build/bin/qloracc-import --preset tiny --lora r=16,alpha=32,targets=all-linear \
  -o build/demo/model.mlir
# With a GPU driver here, the program also carries CUDA kernels (compiled
# with NVRTC, f32 activations so that the CPU can run the same file); qlora-run
# --device auto then trains on the GPU.
cuda_flags=()
if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  cuda_flags=(--cuda)
fi
build/bin/qloracc build/demo/model.mlir -o build/demo/train.bin --memory-report \
  "${cuda_flags[@]}"
python3 scripts/make-synthetic-tokens.py build/demo/tokens.bin --vocab 256
time build/bin/qlora-run build/demo/train.bin --data build/demo/tokens.bin \
  --steps 200 --lr 2e-3 --schedule cosine --warmup 10 \
  --metrics build/demo/metrics.jsonl --save-adapter build/demo/adapter
