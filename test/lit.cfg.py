# lit configuration for qloracc: .mlir tests of dialects and passes, and shell
# tests (.test) of the command-line tools.
import os
import sys

import lit.formats
from lit.llvm import llvm_config

config.name = "QLORACC"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "golden", "runtime", "CMakeLists.txt", "lit.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = config.qloracc_obj_root

llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.use_default_substitutions()
llvm_config.add_tool_substitutions(
    ["qlora-opt", "qloracc", "qloracc-import", "qlora-run", "qloracc-quantize"], [config.qloracc_tools_dir])

# `REQUIRES: nvrtc`: built with NVRTC, so --qrt-codegen-cuda compiles.
if config.qloracc_have_nvrtc:
    config.available_features.add("nvrtc")

# `cuda-driver`: libcuda.so.1 loads here (a GPU machine), so tests of what
# qlora-run does without a driver do not apply.
try:
    import ctypes
    ctypes.CDLL("libcuda.so.1")
    config.available_features.add("cuda-driver")
except OSError:
    pass

# `cuda-emulator`: test/emu/driver's libcuda.so.1 over the host emulator;
# `env LD_LIBRARY_PATH=%cuda_emulator_dir QLORA_CUDA_EMU_KERNELS=DIR` before a
# command makes its CUDA backend run there (DIR from qloracc --dump-kernels).
if os.path.exists(os.path.join(config.qloracc_cuda_emulator_dir, "libcuda.so.1")):
    config.available_features.add("cuda-emulator")
config.substitutions.append(("%cuda_emulator_dir", config.qloracc_cuda_emulator_dir))

# Fixtures committed under test/golden (made by the scripts beside them).
config.substitutions.append(
    ("%golden", os.path.join(config.qloracc_src_root, "test", "golden")))
# Stdlib-only helpers that write malformed inputs for error tests.
config.substitutions.append(
    ("%pyhelpers", os.path.join(config.qloracc_src_root, "test", "Inputs")))
config.substitutions.append(("%python", sys.executable))
