#!/usr/bin/env python3
"""Planned peak device memory of QLoRA training steps, per remat policy.

    bench/memory/run.py [--bin build/bin] [--seqs 2048,4096] [--markdown]

For each shape-only preset (llama2-7b, llama2-13b, llama3-8b, llama2-70b),
batch 1, LoRA r=64 alpha=16 on all linear layers, bf16 activations
(`qloracc --activation-type bf16`, what the GPU computes in), and each sequence
length, runs `qloracc --memory-report` under every policy (`--remat none`,
`selective`, `per-layer`) and prints the planned peak next to:

  - an analytic lower bound for steps that keep every layer's input: what
    is held the whole step (NF4 weights and scales, the other frozen
    weights, the fp32 LoRA parameters and AdamW's two fp32 moments, read
    from the report) plus the larger of the bf16 layer inputs at the start
    of the backward pass (layers x batch x seq x hidden x 2 bytes) and the
    fp32 LoRA gradients at its end (as many bytes as the parameters);
  - the QLoRA paper's figures (Dettmers et al. 2023: a 7B model's NF4
    weights take about 5 GB; 65B fine-tunes on one 48 GB GPU).

Then runs `--remat budget` on llama2-70b at seq 2048 with budgets of 24, 48
and 80 GiB and prints what the budget policy chose. Standard library only;
nothing is timed. The compiler plans in well under a second per model, so
the whole table takes a minute or two.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

PRESETS = [("llama2-7b", 32, 4096), ("llama2-13b", 40, 5120),
           ("llama3-8b", 32, 4096), ("llama2-70b", 80, 8192)]
POLICIES = ["none", "selective", "per-layer"]
PAPER = {"llama2-7b": "weights ~5 GB (7B)", "llama2-70b": "65B fits 48 GB"}
GIB = 1 << 30


def parse_size(text):
    number, unit = re.match(r"([0-9.]+)\s*([KMGT]?i?B)", text.strip()).groups()
    scale = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
             "TiB": 1 << 40}[unit]
    return float(number) * scale


def report(binary, model, *flags):
    out = subprocess.run(
        [os.path.join(binary, "qloracc"), model, "--memory-report",
         "--no-summary", "--activation-type", "bf16", *flags],
        capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1]
    rows = {}
    for line in out.stdout.splitlines():
        match = re.match(r"\s*(.+?)\s{2,}([0-9.]+ [KMGT]?i?B)", line)
        if match:
            rows[match.group(1).strip()] = parse_size(match.group(2))
    peak = parse_size(out.stdout.splitlines()[0].split(":", 1)[1])
    return peak, rows


def gib(value):
    return f"{value / GIB:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default="build/bin")
    parser.add_argument("--seqs", default="2048,4096")
    args = parser.parse_args()
    seqs = [int(s) for s in args.seqs.split(",")]
    work = tempfile.mkdtemp(prefix="qloracc-memory-")

    print("planned peak (GiB), batch 1, LoRA r=64 all-linear, bf16 activations")
    header = f"| model | seq | {' | '.join(POLICIES)} | lower bound | NF4 weights | paper |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for preset, layers, hidden in PRESETS:
        for seq in seqs:
            model = os.path.join(work, f"{preset}-{seq}.mlir")
            subprocess.run(
                [os.path.join(args.bin, "qloracc-import"), "--preset", preset,
                 "--no-weights", "--lora", "r=64,alpha=16,targets=all-linear",
                 "--seq", str(seq), "-o", model], check=True)
            peaks, rows = [], {}
            for policy in POLICIES:
                peak, rows = report(args.bin, model, "--remat", policy)
                peaks.append(gib(peak) if peak else "error")
            persistent = sum(rows.get(name, 0) for name in (
                "NF4 weights + scales", "other frozen weights", "LoRA params",
                "AdamW state"))
            bound = persistent + max(layers * seq * hidden * 2,
                                     rows.get("LoRA params", 0))
            print(f"| {preset} | {seq} | {' | '.join(peaks)} | {gib(bound)} "
                  f"| {gib(rows.get('NF4 weights + scales', 0))} "
                  f"| {PAPER.get(preset, '')} |")

    # r=64's fp32 LoRA state alone (parameters, gradients, AdamW moments)
    # is 12.4 GiB on 70B; with r=16 it is a quarter.
    small = os.path.join(work, "llama2-70b-2048-r16.mlir")
    subprocess.run(
        [os.path.join(args.bin, "qloracc-import"), "--preset", "llama2-70b",
         "--no-weights", "--lora", "r=16,alpha=16,targets=all-linear",
         "--seq", "2048", "-o", small], check=True)
    print("\nllama2-70b, seq 2048, LoRA r=16 all-linear:")
    for policy in POLICIES:
        peak, _ = report(args.bin, small, "--remat", policy)
        print(f"  {policy}: {gib(peak)} GiB ({peak / 1e9:.1f} GB)")

    model = os.path.join(work, "llama2-70b-2048.mlir")
    print("\nllama2-70b, seq 2048, LoRA r=64: --remat budget")
    for budget in (24, 48, 80):
        out = subprocess.run(
            [os.path.join(args.bin, "qloracc"), model, "--memory-report",
             "--no-summary", "--activation-type", "bf16", "--remat", "budget",
             "--remat-budget", f"{budget}GiB", "--remat-report"],
            capture_output=True, text=True)
        lines = (out.stdout + out.stderr).strip().splitlines()
        chosen = [l for l in lines if l.startswith(("remat:", "peak:")) or
                  "error" in l]
        print(f"  {budget} GiB: " + "\n           ".join(chosen))


if __name__ == "__main__":
    sys.exit(main())
