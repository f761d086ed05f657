#!/usr/bin/env bash
# Installs every package the build and the tests need (Debian 12). Idempotent:
# packages already present are skipped, so a second run costs a few seconds.
#
# NVRTC: where no CUDA toolkit with NVRTC is installed (CI has none), NVIDIA's
# PyPI wheels for NVRTC and the CUDA headers are unpacked into
# QLORA_NVRTC_ROOT (default /opt/qloracc/cuda-nvrtc: include/, lib/), where
# CMake looks for them, so the `cuda-compile` tests run without a toolkit.
# QLORA_NVRTC_WHEELS=1 fetches them even where a toolkit is installed.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ python3
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools
  libflatbuffers-dev flatbuffers-compiler
  libfmt-dev libgtest-dev nlohmann-json3-dev
)

NVRTC_ROOT="${QLORA_NVRTC_ROOT:-/opt/qloracc/cuda-nvrtc}"
# Pinned wheels (x86_64 manylinux files): NVRTC (nvrtc.h, libnvrtc.so.13 and
# libnvrtc-builtins.so.13.0), the runtime headers (cuda_bf16.h, cuda_fp16.h,
# vector_types.h, mma.h, ...) and crt/ (crt/mma.h and the other headers they
# include). All three unpack into nvidia/cu13/{include,lib}.
NVRTC_WHEELS=(
  "nvidia-cuda-nvrtc==13.0.88 --hash=sha256:ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575"
  "nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia-cuda-crt==13.0.88 --hash=sha256:2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
)
NVRTC_STAMP="$NVRTC_ROOT/.qloracc-wheels"

# A CUDA toolkit with NVRTC that CMake's FindCUDAToolkit would find.
have_toolkit_nvrtc() {
  local nvcc dirs=("${CUDAToolkit_ROOT:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr)
  if nvcc=$(command -v nvcc 2>/dev/null); then
    dirs+=("$(dirname "$(dirname "$(readlink -f "$nvcc")")")")
  fi
  for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ -f "$d/include/nvrtc.h" ] && return 0
  done
  return 1
}

want_wheels=0
nvrtc_note="NVRTC from the CUDA toolkit"
if [ "${QLORA_NVRTC_WHEELS:-0}" != 1 ] && have_toolkit_nvrtc; then
  :
elif [ "$(uname -m)" != x86_64 ]; then
  nvrtc_note="no NVRTC: no CUDA toolkit, and the pinned NVRTC wheels are x86_64 only"
elif [ -f "$NVRTC_STAMP" ] &&
  [ "$(cat "$NVRTC_STAMP")" = "$(printf '%s\n' "${NVRTC_WHEELS[@]}")" ]; then
  nvrtc_note="NVRTC wheels already in $NVRTC_ROOT"
else
  want_wheels=1
  # Only `pip download` is used (no pip install, so PEP 668 does not apply).
  python3 -m pip --version >/dev/null 2>&1 || PACKAGES+=(python3-pip)
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$want_wheels" -eq 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  printf '%s\n' "${NVRTC_WHEELS[@]}" >"$tmp/requirements.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheels"
  for w in "$tmp"/wheels/*.whl; do
    python3 -m zipfile -e "$w" "$tmp/unpacked"
  done
  $SUDO rm -rf "$NVRTC_ROOT"
  $SUDO mkdir -p "$NVRTC_ROOT"
  $SUDO cp -a "$tmp/unpacked/nvidia/cu13/include" "$tmp/unpacked/nvidia/cu13/lib" "$NVRTC_ROOT/"
  printf '%s\n' "${NVRTC_WHEELS[@]}" | $SUDO tee "$NVRTC_STAMP" >/dev/null
  nvrtc_note="unpacked the NVRTC 13.0.88 wheels (nvidia-cuda-nvrtc, -runtime, -crt) into $NVRTC_ROOT (no CUDA toolkit with NVRTC, or QLORA_NVRTC_WHEELS=1)"
fi
echo "install-deps: $nvrtc_note"
