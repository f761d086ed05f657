#!/usr/bin/env python3
"""Compile time of qloracc against the model's layer count.

Run from the repository root after building qloracc-import and qloracc
(standard library only):

    bench/compile/run.py [--runs 3] [--bin build/bin]
        [--presets llama2-7b,llama2-13b,llama3-8b,mistral-7b,llama2-70b]
        [--tiny-layers 8,32,80] [--profile] [--keep DIR]

For every shape-only preset (`--lora r=64,alpha=16,targets=all-linear --seq
2048`) and for the `tiny` preset, with its random weights and the default
LoRA, at each of --tiny-layers layers (`--num-layers`), it times
`qloracc-import` and then `qloracc --memory-report --no-summary` on the
imported graph (wall time, median of --runs), and prints one table: layers,
ops in the imported graph (lines holding ` = qlora.`), import and compile
seconds, the planned peak (the report's first line), and compile seconds per
layer, so that growth with the layer count shows. The baseline is the goal of
issue 7 on a 2-core machine (compile <= 10 s for 7B-sized models, <= 30 s for
70B): the last column is compile time over that goal. --profile adds one run
of the same pipeline per model by `qlora-opt --mlir-timing` (qloracc has no
--mlir-timing) and prints its slowest passes. Numbers only:
nothing here asserts a timing.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPE_ONLY_LORA = "r=64,alpha=16,targets=all-linear"
# Issue 7's compile-time goals, seconds, by preset.
GOALS = {"llama2-7b": 10.0, "llama2-13b": 10.0, "llama3-8b": 10.0,
         "mistral-7b": 10.0, "llama2-70b": 30.0}
# What compiler/Pipeline/Pipeline.cpp's buildQloraccPipeline runs without the
# graph summary, as a qlora-opt pipeline: qloracc has no --mlir-timing.
PIPELINE = ("builtin.module(canonicalize,cse,qlora-build-training-step,"
            "canonicalize,cse,qlora-verify-training-step,nf4-quantize-frozen,"
            "qlora-lower-to-qrt,qrt-verify-lowering,qrt-plan-memory,"
            "qrt-verify-memory-plan)")
TIMING_LINE = re.compile(r"^\s*([0-9.]+) \(\s*([0-9.]+)%\)\s+(.+?)\s*$")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"),
                   help="directory holding qloracc-import, qloracc and "
                        "qlora-opt")
    p.add_argument("--presets",
                   default="llama2-7b,llama2-13b,llama3-8b,mistral-7b,llama2-70b",
                   help="shape-only presets (empty: none)")
    p.add_argument("--tiny-layers", default="8,32,80",
                   help="layer counts of the tiny preset (empty: none)")
    p.add_argument("--profile", action="store_true",
                   help="one more compile per model, by qlora-opt with "
                        "--mlir-timing; prints its slowest passes")
    p.add_argument("--keep", help="write the imported graphs here")
    return p.parse_args()


def cases(args):
    """(label, preset, layers or None, import arguments)."""
    for preset in filter(None, args.presets.split(",")):
        yield (preset, preset, None,
               ["--preset", preset, "--no-weights", "--lora", SHAPE_ONLY_LORA,
                "--seq", "2048"])
    for layers in filter(None, args.tiny_layers.split(",")):
        yield ("tiny", "tiny", int(layers),
               ["--preset", "tiny", "--num-layers", layers])


def timed(cmd, runs):
    """Median wall seconds of `runs` runs, and the last run's stdout/stderr."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode:
            sys.exit(f"run.py: {' '.join(cmd)} failed:\n{done.stderr}")
    return statistics.median(times), done


def layers_of(mlir_path):
    with open(mlir_path) as f:
        for line in f:
            m = re.search(r"num_hidden_layers = (\d+)", line)
            if m:
                return int(m.group(1))
    return 0


def count_ops(mlir_path):
    with open(mlir_path) as f:
        return sum(" = qlora." in line for line in f)


def slowest_passes(timing_report, top=5):
    """The `top` slowest entries of an --mlir-timing-display=list report."""
    rows = []
    for line in timing_report.splitlines():
        m = TIMING_LINE.match(line)
        # "Output" is qlora-opt printing the result, which qloracc does not.
        if m and m.group(3) not in ("root", "Output", "Total", "Rest"):
            rows.append((float(m.group(1)), float(m.group(2)), m.group(3)))
    return sorted(rows, reverse=True)[:top]


def main():
    args = parse_args()
    importer = os.path.join(args.bin, "qloracc-import")
    compiler = os.path.join(args.bin, "qloracc")
    opt = os.path.join(args.bin, "qlora-opt")
    for tool in (importer, compiler) + ((opt,) if args.profile else ()):
        if not os.path.exists(tool):
            sys.exit(f"run.py: {tool} not found; build qloracc-import, "
                     f"qloracc and (for --profile) qlora-opt, or pass --bin")

    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or tmp
        os.makedirs(out_dir, exist_ok=True)
        for label, preset, layers, import_args in cases(args):
            name = f"{preset}-{layers}" if layers else preset
            mlir = os.path.join(out_dir, f"{name}.mlir")
            import_s, _ = timed([importer, *import_args, "-o", mlir], args.runs)
            compile_cmd = [compiler, mlir, "--memory-report", "--no-summary"]
            compile_s, done = timed(compile_cmd, args.runs)
            peak = (done.stdout.splitlines() or ["?"])[0].removeprefix("peak: ")
            layers = layers_of(mlir)
            rows.append((label, layers, count_ops(mlir), import_s, compile_s,
                         peak, GOALS.get(preset)))
            print(f"  {name}: import {import_s:.2f} s, compile {compile_s:.2f} s",
                  file=sys.stderr, flush=True)
            if args.profile:
                _, done = timed([opt, mlir, f"--pass-pipeline={PIPELINE}",
                                 "--mlir-timing", "--mlir-timing-display=list",
                                 "-o", os.devnull], 1)
                profiles.append((name, slowest_passes(done.stderr)))

    print(f"qloracc --memory-report --no-summary, wall time, median of "
          f"{args.runs} runs, {os.cpu_count()} CPUs; shape-only presets with "
          f"--lora {SHAPE_ONLY_LORA} --seq 2048, tiny with weights and the "
          f"default LoRA")
    header = (f"{'model':12s} {'layers':>6s} {'ops':>7s} {'import s':>9s} "
              f"{'compile s':>10s} {'peak':>12s} {'s/layer':>8s} "
              f"{'ops/s':>8s} {'of goal':>8s}")
    print(header)
    print("-" * len(header))
    for label, layers, ops, import_s, compile_s, peak, goal in rows:
        per_layer = compile_s / layers if layers else float("nan")
        of_goal = f"{compile_s / goal:7.0%}" if goal else "      -"
        print(f"{label:12s} {layers:6d} {ops:7d} {import_s:9.2f} "
              f"{compile_s:10.2f} {peak:>12s} {per_layer:8.3f} "
              f"{ops / compile_s:8.0f} {of_goal:>8s}")
    print("goals (issue 7, 2-core machine): compile <= 10 s for 7B-sized "
          "models, <= 30 s for 70B (`of goal` <= 100%)")

    for name, passes in profiles:
        print(f"--mlir-timing, {name}, slowest passes:")
        for seconds, percent, pass_name in passes:
            print(f"  {seconds:8.3f} s {percent:5.1f}%  {pass_name}")


if __name__ == "__main__":
    main()
