#!/usr/bin/env bash
# Configures (once) and builds every target into build/; tools land in
# build/bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=Release
fi
start=$(date +%s)
ninja -C build
echo "build: $(( $(date +%s) - start )) s"
