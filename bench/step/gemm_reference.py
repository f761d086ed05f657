#!/usr/bin/env python3
"""What a frozen-weight GEMM of a preset costs the baseline's libraries, on
this GPU, in the same run as qlora-run's profile.

    python3 bench/step/gemm_reference.py [--preset llama2-7b] [--seq 2048]
        [--iters 20] [--device cuda] [--out DIR]

For each projection shape of the preset (q/k/v/o, gate/up, down, the LM
head) with M = seq tokens: y = x·Wᵀ in bf16 through torch.matmul (cuBLAS),
and for the NF4 ones bitsandbytes' two pieces of a Linear4bit forward in
training: dequantize_4bit (NF4, blocksize 64, double quantization, to
bf16) and the matmul on its result. Prints TFLOP/s (2·M·N·K over the median
time, CUDA events) and writes gemm.md and gemm.json to --out. qlora-run's
--profile gives its own linear_fwd and linear_grad_input TFLOP/s next to
these: the GEMM's share of the gap to the baseline.

Needs torch (and bitsandbytes for the NF4 rows: skipped without it). Nothing
asserts a timing.
"""
import argparse
import json
import os
import statistics
import sys

import torch

# name: hidden, intermediate, vocab, kv heads' share of hidden (k/v rows).
SHAPES = {
    "llama2-7b": (4096, 11008, 32000, 1.0),
    "llama3-8b": (4096, 14336, 128256, 0.25),
    "tiny": (64, 128, 256, 0.5),
}


def timed(device, fn, iters):
    """Median milliseconds of fn() over iters runs, after 3 warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            import time
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="llama2-7b", choices=SHAPES)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    hidden, inter, vocab, kv = SHAPES[args.preset]
    # (name, out = N, in = K, NF4 in QLoRA)
    projections = [("q_proj/o_proj", hidden, hidden, True),
                   ("k_proj/v_proj", int(hidden * kv), hidden, True),
                   ("gate_proj/up_proj", inter, hidden, True),
                   ("down_proj", hidden, inter, True),
                   ("lm_head", vocab, hidden, False)]
    try:
        import bitsandbytes.functional as bnbf
    except ImportError as error:
        bnbf = None
        print(f"gemm_reference: no bitsandbytes ({error}): NF4 rows skipped",
              file=sys.stderr)
    torch.manual_seed(0)
    device = args.device
    m = args.seq
    rows = []
    for name, n, k, nf4 in projections:
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16) * 0.02
        flops = 2.0 * m * n * k
        row = {"projection": name, "m": m, "n": n, "k": k,
               "matmul_ms": timed(device, lambda: torch.matmul(x, w.t()),
                                  args.iters)}
        row["matmul_tflops"] = flops / row["matmul_ms"] * 1e-9
        if nf4 and bnbf is not None:
            q, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4",
                                          compress_statistics=True)
            row["dequantize_ms"] = timed(
                device, lambda: bnbf.dequantize_4bit(q, state), args.iters)
            row["dequantize_matmul_ms"] = timed(
                device,
                lambda: torch.matmul(x, bnbf.dequantize_4bit(q, state).t()),
                args.iters)
            row["dequantize_matmul_tflops"] = (
                flops / row["dequantize_matmul_ms"] * 1e-9)
        rows.append(row)
        del x, w

    def cell(row, key, spec):
        return format(row[key], spec) if key in row else "n/a"

    gpu = (torch.cuda.get_device_name() if device == "cuda" else "the CPU")
    lines = [f"GEMM reference on {gpu}: {args.preset}, M = {m} tokens, bf16, "
             f"torch {torch.__version__}, median of {args.iters}", "",
             "| projection | N x K | cuBLAS ms | cuBLAS TFLOP/s "
             "| bnb dequantize ms | dequantize + matmul ms | TFLOP/s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['projection']} | {row['n']} x {row['k']} "
            f"| {cell(row, 'matmul_ms', '.3f')} "
            f"| {cell(row, 'matmul_tflops', '.1f')} "
            f"| {cell(row, 'dequantize_ms', '.3f')} "
            f"| {cell(row, 'dequantize_matmul_ms', '.3f')} "
            f"| {cell(row, 'dequantize_matmul_tflops', '.1f')} |")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gemm.md"), "w") as f:
            f.write(table)
        with open(os.path.join(args.out, "gemm.json"), "w") as f:
            json.dump({"gpu": gpu, "preset": args.preset, "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
