#!/usr/bin/env python3
"""Does the GPU's loss curve follow the CPU's within bf16 noise?

    compare-loss-curves.py CPU.jsonl GPU.jsonl

Both are qlora-run --metrics files of the same program and data. The GPU
computes in bf16 (activations, tensor-core inputs) and the CPU in fp32, so
single steps differ by bf16 rounding and the trajectories drift apart
slowly; what must hold:
  - the same number of steps, every loss finite;
  - the first loss within 2% (same weights and batch, rounding only);
  - every 20-step window's mean loss within 5% + 0.05 of the CPU's;
  - both curves fall: the last window's mean below 70% of the first's.
Prints the windows side by side; exits 1 on a failure.
"""
import json
import math
import sys

WINDOW = 20


def losses(path):
    return [json.loads(line)["loss"] for line in open(path) if line.strip()]


def main():
    cpu, gpu = losses(sys.argv[1]), losses(sys.argv[2])
    problems = []
    if len(cpu) != len(gpu) or not cpu:
        problems.append(f"{len(cpu)} CPU steps but {len(gpu)} GPU steps")
    if not all(math.isfinite(v) for v in cpu + gpu):
        problems.append("a loss is not finite")
    if problems:
        print("FAIL:", "; ".join(problems))
        return 1
    if abs(gpu[0] - cpu[0]) > 0.02 * abs(cpu[0]):
        problems.append(f"step 1: gpu {gpu[0]:.5f} vs cpu {cpu[0]:.5f}")
    print(f"{'steps':>9} {'cpu':>9} {'gpu':>9} {'gpu/cpu':>8}")
    means = []
    for start in range(0, len(cpu), WINDOW):
        c = sum(cpu[start:start + WINDOW]) / len(cpu[start:start + WINDOW])
        g = sum(gpu[start:start + WINDOW]) / len(gpu[start:start + WINDOW])
        means.append((c, g))
        print(f"{start + 1:>4}-{min(start + WINDOW, len(cpu)):<4} {c:9.5f} "
              f"{g:9.5f} {g / c:8.4f}")
        if abs(g - c) > 0.05 * abs(c) + 0.05:
            problems.append(f"steps {start + 1}-{start + WINDOW}: gpu mean "
                            f"{g:.4f} vs cpu {c:.4f}")
    for name, index in (("cpu", 0), ("gpu", 1)):
        if len(means) > 1 and not means[-1][index] < 0.7 * means[0][index]:
            problems.append(f"the {name} loss did not fall "
                            f"({means[0][index]:.4f} -> {means[-1][index]:.4f})")
    if problems:
        print("FAIL:", "; ".join(problems))
        return 1
    print(f"PASS: {len(cpu)} steps, GPU within bf16 noise of the CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
