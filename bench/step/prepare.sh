#!/usr/bin/env bash
# Stages what bench/step/run.sh needs on the GPU machine into .bench-step/
# (git-ignored through .git/info/exclude). Runs here, where there is a
# compiler, pip and the internet but no GPU:
#
#   bash bench/step/prepare.sh
#
# then, with the device tool, in one command:
#   run(command="bash bench/step/run.sh all", carry=[".bench-step"])
#
# .bench-step/ holds qlora-run (stripped; libstdc++ linked statically) and
# lib/ with the shared libraries it needs beyond glibc (libfmt), one
# train.bin per preset compiled with --cuda --random-weights (the frozen
# weights and the LoRA init are drawn by qlora-run at load time, so the
# files hold kernels and shapes only), tokens.u16 (random uint16 tokens
# below 32000, enough windows of seq+1 for the steps) and whl/ with the
# bitsandbytes wheel for the baseline, cut down to its CPU and CUDA 13
# libraries (the GPU machine's torch is cu130; BNB_FULL_WHEEL=1 keeps all).
# Each preset is also compiled once per VARIANTS entry, `qloracc --nf4-gemm
# V`, as <preset>.nf4-V.train.bin: measure.py runs those after the
# comparison with the baseline, with the time it leaves.
#
# Environment: BUILD_DIR (default build), SKIP_BUILD=1 (use the tools in
# BUILD_DIR as they are), PRESETS (default "llama2-7b llama3-8b"), SEQ
# (2048), LORA (r=64,alpha=16,targets=all-linear), QLORACC_FLAGS (--cuda
# --random-weights --activation-type bf16 --cuda-archs sm_90 --no-cuda-ptx:
# the device tool's H100 and H200 only, so that the programs fit its 64 MiB;
# name other archs for other GPUs), VARIANTS (default "dequantize"; "" for
# none), BNB_VERSION (0.50.2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STAGE=$ROOT/.bench-step
SPLIT=$ROOT/.bench-step-hf
# Each program's CUDA sources (--dump-kernels), not carried: for the launch
# check below and for dry runs on the emulated driver (QLORA_CUDA_EMU_KERNELS).
KERNELS=$ROOT/.bench-step-kernels
BUILD=${BUILD_DIR:-$ROOT/build}
PRESETS=${PRESETS:-llama2-7b llama3-8b}
SEQ=${SEQ:-2048}
LORA=${LORA:-r=64,alpha=16,targets=all-linear}
QLORACC_FLAGS=${QLORACC_FLAGS:---cuda --random-weights --activation-type bf16 --cuda-archs sm_90 --no-cuda-ptx}
VARIANTS=${VARIANTS-dequantize}
BNB_VERSION=${BNB_VERSION:-0.50.2}
WINDOWS=${WINDOWS:-64} # token windows of SEQ+1: at least run.sh's STEPS
LIMIT_MIB=60

fail() {
  echo "bench/step/prepare.sh: $*" >&2
  exit 1
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$BUILD/build.ninja" ]; then
    cmake -G Ninja -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
  fi
  ninja -C "$BUILD" -j"${JOBS:-2}" qloracc qloracc-import qlora-run \
    qlora-cuda-emulator
fi
for tool in qloracc qloracc-import qlora-run; do
  [ -x "$BUILD/bin/$tool" ] || fail "no $BUILD/bin/$tool (build it, or unset SKIP_BUILD)"
done

exclude=$(git -C "$ROOT" rev-parse --git-path info/exclude)
case "$exclude" in /*) ;; *) exclude=$ROOT/$exclude ;; esac
mkdir -p "$(dirname "$exclude")"
for folder in /.bench-step/ /.bench-step-hf/ /.bench-step-kernels/; do
  grep -qx "$folder" "$exclude" 2>/dev/null || echo "$folder" >>"$exclude"
done
rm -rf "$STAGE" "$SPLIT" "$KERNELS" && mkdir -p "$STAGE/lib" "$STAGE/whl"
work=$(mktemp -d /tmp/bench-step.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The training programs: `program` is the preset, or preset.nf4-V for a
# variant. `--random-weights` and `--cuda` must be known to this qloracc; an
# older build fails here rather than staging a CPU program.
programs=()
compile() { # program, preset, extra qloracc flags...
  local program=$1 preset=$2
  shift 2
  # shellcheck disable=SC2086 # QLORACC_FLAGS is a list of flags
  if ! "$BUILD/bin/qloracc" "$work/$preset.mlir" $QLORACC_FLAGS "$@" \
    --no-summary --dump-kernels "$KERNELS/$program" \
    -o "$STAGE/$program.train.bin" 2>"$work/qloracc.err"; then
    cat "$work/qloracc.err" >&2
    fail "qloracc $QLORACC_FLAGS $* could not compile $preset (is this" \
      "qloracc new enough for these flags, and built with NVRTC for --cuda?)"
  fi
  cat "$work/qloracc.err" >&2
  programs+=("$program")
  echo "compiled $program: $(du -h "$STAGE/$program.train.bin" | cut -f1)"
}
for preset in $PRESETS; do
  "$BUILD/bin/qloracc-import" --preset "$preset" --seq "$SEQ" --batch 1 \
    --lora "$LORA" -o "$work/$preset.mlir" ||
    fail "qloracc-import --preset $preset failed"
  compile "$preset" "$preset"
  for variant in $VARIANTS; do
    compile "$preset.nf4-$variant" "$preset" --nf4-gemm "$variant"
  done
done

cp "$BUILD/bin/qlora-run" "$STAGE/"
strip "$STAGE/qlora-run"
# Shared libraries beyond glibc and the compiler's (none today) travel too,
# as scripts/gpu-check.sh does.
ldd "$STAGE/qlora-run" | awk '$2 == "=>" {print $3}' |
  { grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' || true; } |
  sort -u | xargs -r cp -L -t "$STAGE/lib/"

# Random tokens for both sides: little-endian uint16 below 32000 (both
# vocabularies hold them; tiny's only 256).
case " $PRESETS " in *" tiny "*) vocab=256 ;; *) vocab=32000 ;; esac
python3 - "$STAGE/tokens.u16" $((WINDOWS * (SEQ + 1))) "${TOKEN_VOCAB:-$vocab}" <<'EOF'
import random, struct, sys
rng = random.Random(0)
count, vocab = int(sys.argv[2]), int(sys.argv[3])
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack(f"<{count}H", *(rng.randrange(vocab) for _ in range(count))))
EOF

# Each program's launches checked on an emulated H100 before it travels
# (test/emu/driver with QLORA_CUDA_EMU_LAUNCH=check: no kernel runs, ~30 s
# and the frozen weights' size in host memory a preset): grid and block
# limits, __launch_bounds__, shared memory, every kernel pointer inside the
# arena, the arena inside 80 GiB. CHECK_LAUNCHES=0 skips it.
emulator=$BUILD/lib/cuda-emulator
if [ "${CHECK_LAUNCHES:-1}" = 1 ]; then
  [ -f "$emulator/libcuda.so.1" ] ||
    fail "no $emulator/libcuda.so.1 to check the launches with (build qlora-cuda-emulator, or CHECK_LAUNCHES=0)"
  for program in "${programs[@]}"; do
    if ! LD_LIBRARY_PATH=$emulator QLORA_CUDA_EMU_LAUNCH=check \
      QLORA_CUDA_EMU_KERNELS=$KERNELS/$program QLORA_CUDA_EMU_MEMORY=80G \
      "$BUILD/bin/qlora-run" "$STAGE/$program.train.bin" --data "$STAGE/tokens.u16" \
      --steps 2 --device cuda --no-progress >"$work/check.log" 2>&1; then
      cat "$work/check.log" >&2
      fail "$program: a launch fails on the emulated H100 (above)"
    fi
    echo "checked $program: every launch of 2 steps fits an H100," \
      "$(grep -o 'measured peak: .*' "$work/check.log" | tail -1)"
  done
fi

# The bitsandbytes wheel for the GPU machine's Python 3.12. Its newer wheels
# are tagged manylinux_2_24, which the device README's list lacks.
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$work/whl" "$1"
}
if ! download "bitsandbytes==$BNB_VERSION"; then
  echo "bench/step/prepare.sh: no bitsandbytes $BNB_VERSION wheel; taking the newest" >&2
  download bitsandbytes || fail "cannot download a bitsandbytes wheel"
fi
wheel=$(ls "$work"/whl/bitsandbytes-*.whl)
if [ "${BNB_FULL_WHEEL:-0}" = 1 ]; then
  cp "$wheel" "$STAGE/whl/"
else
  # Drop the libraries for other CUDA versions, ROCm and XPU (43 MB -> ~4 MB);
  # pip does not check RECORD's hashes, and RECORD loses their rows anyway.
  python3 - "$wheel" "$STAGE/whl/$(basename "$wheel")" <<'EOF'
import re, sys, zipfile
drop = re.compile(r"bitsandbytes/libbitsandbytes_(cuda(?!13)\d+|rocm\d+|xpu\d+)\.so$")
with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(
        sys.argv[2], "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        if drop.search(info.filename):
            continue
        data = src.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            data = b"".join(l for l in data.splitlines(keepends=True)
                            if not drop.search(l.split(b",")[0].decode()))
        dst.writestr(info, data)
EOF
fi

cat >"$STAGE/manifest.txt" <<EOF
presets: $PRESETS
seq: $SEQ, batch 1, lora: $LORA
import: qloracc-import --preset P --seq $SEQ --batch 1 --lora $LORA
compile: qloracc P.mlir $QLORACC_FLAGS
variants: $(for v in $VARIANTS; do printf 'nf4-%s ' "$v"; done)
commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- || echo ' (dirty)')
bitsandbytes: $(basename "$wheel")
EOF

ls -la "$STAGE" "$STAGE/lib" "$STAGE/whl"
stage_kib=$(du -sk "$STAGE" | cut -f1)
tree_kib=$(cd "$ROOT" && git ls-files -co --exclude-standard -z | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "staged: $((stage_kib / 1024)) MiB in .bench-step; the working tree: $((tree_kib / 1024)) MiB (the device tool takes 64 MiB in all)"
if [ $(((stage_kib + tree_kib) / 1024)) -ge $LIMIT_MIB ]; then
  # Too big for one call: the baseline goes in a second one with the wheel.
  mkdir -p "$SPLIT"
  mv "$STAGE/whl" "$SPLIT/whl"
  cp "$STAGE/tokens.u16" "$STAGE/manifest.txt" "$SPLIT/"
  echo "over $LIMIT_MIB MiB: split into two device calls:"
  echo '  run(command="bash bench/step/run.sh ours", carry=[".bench-step"])'
  echo '  run(command="bash bench/step/run.sh hf", carry=[".bench-step-hf"])'
  echo "(the ratios then come from two runs: paste both tables into the closing note)"
else
  echo 'bench/step: now run(command="bash bench/step/run.sh all", carry=[".bench-step"])'
fi
