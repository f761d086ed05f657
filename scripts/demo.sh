#!/usr/bin/env bash
# The main job on the built-in default: import the tiny preset, run the
# compiler pipeline that exists today and print the graph and memory summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
mkdir -p build/demo
set -x
build/bin/qloracc-import --preset tiny --lora r=16,alpha=32,targets=all-linear \
  -o build/demo/model.mlir
build/bin/qloracc build/demo/model.mlir --emit-mlir build/demo/model.opt.mlir
