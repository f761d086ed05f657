#!/usr/bin/env python3
"""Writes the NF4 + double-quantization golden data that
test/runtime/Nf4Test.cpp checks runtime/format/Nf4.{h,cpp} against.

Run by a developer, never by the build or the tests (CI has no torch), from
the repository root, on a CPU-only machine (CUDA_VISIBLE_DEVICES=""):

    test/golden/.venv/bin/python test/golden/make_nf4_golden.py

(the venv: torch, safetensors and bitsandbytes 0.50.x). The run is
deterministic: inputs come from torch.Generator seed 0 per case.

Reference: bitsandbytes.functional.quantize_4bit(x, blocksize=64,
quant_type="nf4", compress_statistics=True) on the CPU (the 4-bit step is
backends/default/ops.py; the nested 8-bit step runs bnb's native CPU kernel,
checked here against the default backend's torch code), then the absmax
recovered by dequantize_blockwise(...) + offset and the 4-bit values
dequantized to fp32 by the default backend's _dequantize_4bit_compute. fp16/bf16 inputs are passed to bnb as
they are (bnb widens them with .float() before quantizing); the file stores
the input in its own dtype.

Outputs, in test/golden/nf4/:
  dynamic_map.safetensors   "code": create_dynamic_map(signed=True), F32[256]
                            "nf4": the NF4 code table, F32[16]
  <case>.safetensors        "input"            the input, its dtype and shape
                            "packed"           U8[ceil(n/2), 1]
                            "absmax_q"         U8[blocks] (8-bit absmax codes)
                            "nested_absmax"    F32[ceil(blocks/256)]
                            "offset"           F32[] (mean of the absmax)
                            "absmax"           F32[blocks] (first-level absmax,
                                               before double quantization)
                            "absmax_recovered" F32[blocks] (what bnb's
                                               dequantize_4bit uses)
                            "dequantized"      F32, the input's shape (left
                                               out of the big case for size)
"""

import copy
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import bitsandbytes.functional as F  # noqa: E402
from bitsandbytes.backends.default.ops import (  # noqa: E402
    _dequantize_4bit_compute,
)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nf4")


def default_backend_quantize_blockwise(a, code, blocksize):
    """bitsandbytes/backends/default/ops.py quantize_blockwise, restated, to
    check that the CPU kernel bnb actually ran agrees with it."""
    a = a.reshape(-1).float()
    n = a.numel()
    rem = n % blocksize
    full = n - rem
    blocks = full // blocksize
    com = a[:full].reshape(blocks, blocksize)
    absmax = com.abs().max(dim=-1)[0]
    scaled = torch.clamp(
        com * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1
    ).reshape(-1)
    if rem:
        am = a[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.unsqueeze(0)])
        scaled = torch.cat([scaled, torch.clamp(a[full:] / am, -1, 1)])
    bounds = (code[:-1] + code[1:]) / 2
    q = torch.bucketize(scaled, bounds, out_int32=True).to(torch.uint8)
    return q, absmax


def make_cases():
    cases = {}

    def randn(shape, seed, dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(shape, generator=g, dtype=torch.float32).to(dtype)

    cases["randn_1000"] = randn((1000,), 1)
    cases["randn_64x64"] = randn((64, 64), 2)
    cases["randn_257x65"] = randn((257, 65), 3) * 0.02
    cases["odd_77"] = randn((7, 11), 4)
    cases["single_block_50"] = randn((50,), 5)
    cases["fp16_64x96"] = randn((64, 96), 6, torch.float16)
    cases["bf16_33x130"] = (randn((33, 130), 7) * 0.05).to(torch.bfloat16)
    # Block 1 of 5 all zero, and a last partial block of zeros.
    z = randn((4 * 64 + 10,), 8)
    z[64:128] = 0
    z[256:] = 0
    cases["zero_blocks"] = z
    # Extreme values: +-1e30, a block of denormals only, a denormal partial
    # tail, a single huge outlier in a block of ordinary values, negative zero.
    e = randn((6 * 64 + 21,), 9)
    e[0:64:2] = 1e30
    e[1:64:2] = -1e30
    e[64:128] = randn((64,), 10) * 1e-40
    e[128:192] = randn((64,), 11) * 1e-20
    e[200] = 3e38
    e[256] = -0.0
    e[300] = 1e-45
    e[384:] = randn((21,), 12) * 1e-41
    cases["extreme"] = e
    # Enough blocks (1025) for torch's cascaded fp32 sum to use several levels,
    # and two nested blocks with a partial one; bf16 to keep the file small.
    cases["bf16_big_65600"] = (randn((65600,), 13) * 0.03).to(torch.bfloat16)
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    dyn = F.create_dynamic_map(signed=True)
    nf4 = F.get_4bit_type("nf4", device="cpu")
    save_file(
        {"code": dyn.clone(), "nf4": nf4.clone()},
        os.path.join(OUT, "dynamic_map.safetensors"),
    )
    mismatches = []
    for name, x in make_cases().items():
        packed, st = F.quantize_4bit(
            x, blocksize=64, quant_type="nf4", compress_statistics=True
        )
        # The first-level absmax, from the same op quantize_4bit calls.
        _, absmax = torch.ops.bitsandbytes.quantize_4bit.default(
            x, 64, "nf4", torch.uint8
        )
        offset = st.offset
        assert torch.equal(offset, absmax.mean()), name
        q_def, am2_def = default_backend_quantize_blockwise(
            absmax - offset, F.create_dynamic_map(signed=True), 256
        )
        if not torch.equal(q_def, st.absmax) or not torch.equal(
            am2_def.view(torch.int32), st.state2.absmax.view(torch.int32)
        ):
            # Expected only where a nested block is all zero (one block of
            # absmax: absmax - mean == 0): the CPU kernel divides 0/0 and
            # writes code 0 and absmax 0, the default backend code 127 (and a
            # clamped 1e-38 absmax for a partial block). Nf4.cpp follows the
            # CPU kernel; the recovered absmax is the same either way.
            centered = absmax - offset
            if centered.abs().max() == 0:
                print("  expected CPU-kernel/default difference on", name)
            else:
                mismatches.append(name)
        recovered = F.dequantize_blockwise(st.absmax, st.state2) + offset
        # dequantize_4bit's torch op (backends/default/ops.py), to fp32. On
        # the CPU, bnb 0.50's native kernel (cdequantize_blockwise_cpu_nf4_fp32)
        # picks the wrong absmax when the last dimension is not a multiple of
        # the block size (fp16_64x96 here): that case is reported, not kept.
        deq = _dequantize_4bit_compute(
            packed.reshape(-1), recovered, nf4, 64, tuple(x.shape),
            torch.float32)
        st32 = copy.copy(st)
        st32.dtype = torch.float32
        deq_kernel = F.dequantize_4bit(packed, st32).reshape(deq.shape)
        if not torch.equal(deq.view(torch.int32), deq_kernel.view(torch.int32)):
            print("  bnb's CPU dequantize_4bit kernel differs on", name)
        assert deq.dtype == torch.float32
        tensors = {
            "input": x.contiguous(),
            "packed": packed.contiguous(),
            "absmax_q": st.absmax.contiguous(),
            "nested_absmax": st.state2.absmax.contiguous(),
            "offset": offset.reshape([]).contiguous(),
            "absmax": absmax.contiguous(),
            "absmax_recovered": recovered.contiguous(),
        }
        if x.numel() < 65536:
            tensors["dequantized"] = deq.contiguous()
        save_file(tensors, os.path.join(OUT, name + ".safetensors"))
        print(name, tuple(x.shape), x.dtype, "blocks", absmax.numel())
    if mismatches:
        print("default backend disagrees with the CPU kernel on:", mismatches)
        sys.exit(1)


if __name__ == "__main__":
    main()
