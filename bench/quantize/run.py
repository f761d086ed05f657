#!/usr/bin/env python3
"""NF4 quantization throughput: qloracc against bitsandbytes and memcpy.

Run from the repository root after building qloracc-bench-quantize, with the
golden venv (torch, safetensors, bitsandbytes 0.50.x), on the CPU:

    test/golden/.venv/bin/python bench/quantize/run.py [--runs 5]
        [--bench build/bin/qloracc-bench-quantize] [--shapes 4096x4096,...]
        [--dtypes bf16,f32] [--no-check]

In one run it makes seeded N(0, 0.02) tensors (LLaMA-7B projection shapes by
default), saves them to a temporary safetensors file, times
bitsandbytes.functional.quantize_4bit(x, blocksize=64, quant_type="nf4",
compress_statistics=True) on the CPU (median of --runs after a warm-up), runs
qloracc-bench-quantize on the same file (which times our quantizer and memcpy
of the same input bytes), and prints one table: GB/s of input and the ratios
ours/bitsandbytes and ours/memcpy. It then checks that our pieces are bit-equal
to bitsandbytes' for one tensor, with torch on one thread (torch's mean of
more than 32768 absmax values depends on its thread count). Numbers only:
nothing here asserts a timing.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import bitsandbytes.functional as F  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DTYPES = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--bench", default=os.path.join(ROOT, "build", "bin",
                                                   "qloracc-bench-quantize"))
    p.add_argument("--shapes", default="4096x4096,11008x4096")
    p.add_argument("--dtypes", default="bf16,f32")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for both (0: all cores)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the bit-equality check against bitsandbytes")
    return p.parse_args()


def make_tensors(shapes, dtypes):
    tensors = {}
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        rows, cols = (int(d) for d in shape.split("x"))
        base = torch.randn(rows, cols, generator=gen) * 0.02
        for dtype in dtypes:
            tensors[f"w{shape}.{dtype}"] = base.to(DTYPES[dtype]).contiguous()
    return tensors


def quantize_bnb(x):
    return F.quantize_4bit(x, blocksize=64, quant_type="nf4",
                           compress_statistics=True)


def time_bnb(x, runs):
    quantize_bnb(x)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        quantize_bnb(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_ours(bench, path, runs, threads, dump=None):
    cmd = [bench, "--file", path, "--runs", str(runs), "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    if dump:
        cmd += ["--dump", dump]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}


def check_bit_equal(name, x, dumped):
    """Our pieces of `name` against bitsandbytes', torch on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        packed, state = quantize_bnb(x)
    finally:
        torch.set_num_threads(threads)
    theirs = {
        "packed": packed.reshape(-1),
        "absmax_q": state.absmax.reshape(-1),
        "nested_absmax": state.state2.absmax.reshape(-1),
        "offset": state.offset.reshape(-1).float(),
    }
    ok = True
    for key, want in theirs.items():
        got = dumped[f"{name}.{key}"].reshape(-1)
        same = got.dtype == want.dtype and torch.equal(
            got.view(torch.uint8), want.contiguous().view(torch.uint8))
        print(f"  {name} {key:14s} {'bit-equal' if same else 'DIFFERENT'}"
              f" ({want.numel()} values)")
        ok &= same
    return ok


def main():
    args = parse_args()
    if not os.path.exists(args.bench):
        sys.exit(f"run.py: {args.bench} not found; build qloracc-bench-quantize")
    if args.threads:
        torch.set_num_threads(args.threads)
    tensors = make_tensors(args.shapes.split(","), args.dtypes.split(","))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tensors.safetensors")
        dump = os.path.join(tmp, "pieces.safetensors")
        save_file(tensors, path)
        bnb = {name: time_bnb(x, args.runs) for name, x in tensors.items()}
        ours = run_ours(args.bench, path, args.runs, args.threads,
                        None if args.no_check else dump)

        # Other processes take cores from both sides unevenly (memcpy runs
        # on one thread, the quantizers on all): say how busy the machine was.
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"NF4 + double quantization (blocksize 64, nested 256), "
              f"median of {args.runs} runs, torch threads "
              f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, "
              f"load average {load}")
        header = (f"{'tensor':24s} {'MB':>7s} {'bnb ms':>9s} {'ours ms':>9s} "
                  f"{'memcpy ms':>9s} {'bnb GB/s':>9s} {'ours GB/s':>9s} "
                  f"{'mc GB/s':>9s} {'ours/bnb':>9s} {'ours/mc':>8s}")
        print(header)
        print("-" * len(header))
        for name, x in tensors.items():
            r = ours[name]
            mb = r["bytes"] / 1e6
            t_bnb, t_ours, t_mc = bnb[name], r["ours_s"], r["memcpy_s"]
            print(f"{name:24s} {mb:7.1f} {t_bnb * 1e3:9.2f} {t_ours * 1e3:9.2f} "
                  f"{t_mc * 1e3:9.2f} {mb / 1e3 / t_bnb:9.2f} "
                  f"{mb / 1e3 / t_ours:9.2f} {mb / 1e3 / t_mc:9.2f} "
                  f"{t_bnb / t_ours:8.2f}x {t_mc / t_ours:7.0%}")
        print("goals: ours/bnb >= 3x, ours/memcpy >= 50%")

        if not args.no_check:
            dumped = load_file(dump)
            # The largest tensor: offset is a mean over > 32768 absmax values.
            name = max(tensors, key=lambda n: tensors[n].numel())
            print("bit-equality with bitsandbytes (torch on 1 thread):")
            if not check_bit_equal(name, tensors[name], dumped):
                sys.exit(1)


if __name__ == "__main__":
    main()
