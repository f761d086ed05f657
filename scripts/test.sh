#!/usr/bin/env bash
# Installs what the build needs, builds everything into build/ and runs every
# test (lit + gtest) under ctest. Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
