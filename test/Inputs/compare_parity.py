#!/usr/bin/env python3
"""Compares a qlora-run training run with the golden data of a reference run.

    compare_parity.py loss --metrics METRICS.jsonl --golden golden.json
                           [--step N | --all-steps] [--rtol 1e-5] [--grad-norms]
    compare_parity.py tensors --actual A.safetensors --expected E.safetensors
                              [--rtol 1e-4]

Standard library only (the tests never need PyPI packages). The golden files
are written by test/golden/make_training_golden.py (transformers + PEFT +
torch.optim.AdamW); test/e2e/parity.test runs this script.

loss: METRICS.jsonl has one JSON object per optimizer step with at least
  "step" and "loss" (null, for a non-finite value, fails; the loss of the forward pass before that step's update;
  "grad_norm", the global L2 norm before clipping, is compared too with
  --grad-norms). qlora-run numbers its first step 1 while golden.json indexes
  from 0, so the comparison goes by line order: the N-th line (0-based) is
  golden step N, whatever base "step" uses. The "step" values must still be
  consecutive. --step N compares one step (default 0); --all-steps compares
  every golden step and needs at least that many lines. Passing means
  |actual - golden| <= rtol * |golden|.

tensors: both files must hold the same keys with the same shapes, F32 only.
  Per tensor: rel_err = ||a - e||_2 / ||e||_2, or the absolute ||a - e||_2
  when ||e||_2 = 0; a tensor passes when rel_err <= rtol.

Prints "FAIL ..." lines and exits 1 on any mismatch, else one "OK ..." line.
Malformed input exits 2 with "error: FILE: ...".
"""
import argparse
import array
import json
import math
import struct
import sys


class InputError(Exception):
    pass


def read_safetensors(path):
    """Returns {name: (shape, array('f'))}, F32 tensors only."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}")
    if len(blob) < 8:
        raise InputError(f"{path}: {len(blob)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise InputError(f"{path}: header length {n} runs past the end of the file "
                         f"({len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        raise InputError(f"{path}: header is not JSON: {e}")
    header.pop("__metadata__", None)
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, entry in header.items():
        dtype, shape = entry.get("dtype"), entry.get("shape")
        if dtype != "F32":
            raise InputError(f"{path}: tensor '{name}' has dtype {dtype}, expected F32")
        begin, end = entry["data_offsets"]
        count = math.prod(shape)
        if end - begin != 4 * count or end > len(data):
            raise InputError(f"{path}: tensor '{name}' of shape {shape} has data offsets "
                             f"[{begin}, {end}) (data section is {len(data)} bytes)")
        values = array.array("f")
        values.frombytes(bytes(data[begin:end]))
        if sys.byteorder != "little":
            values.byteswap()
        tensors[name] = (list(shape), values)
    return tensors


def read_metrics(path):
    records = []
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise InputError(f"{path}:{lineno}: not JSON: {e}")
        if not isinstance(record, dict) or "loss" not in record or "step" not in record:
            raise InputError(f"{path}:{lineno}: expected an object with \"step\" and "
                             f"\"loss\", found {line.strip()[:80]}")
        if records and record["step"] != records[-1][1]["step"] + 1:
            raise InputError(f"{path}:{lineno}: step {record['step']} does not follow "
                             f"step {records[-1][1]['step']}")
        records.append((lineno, record))
    if not records:
        raise InputError(f"{path}: no metrics records")
    return records


def compare_scalar(what, actual, expected, rtol):
    if actual is None:  # qlora-run writes a non-finite value as null
        print(f"FAIL {what} actual=null (not finite) expected={expected!r}")
        return False, math.inf
    actual = float(actual)
    err = abs(actual - expected)
    rel = err / abs(expected) if expected != 0 else err
    ok = rel <= rtol  # False for NaN
    print(f"{'ok  ' if ok else 'FAIL'} {what} actual={actual!r} expected={expected!r} "
          f"rel_err={rel:.3e}")
    return ok, rel


def cmd_loss(args):
    records = read_metrics(args.metrics)
    try:
        with open(args.golden) as f:
            golden = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{args.golden}: {e}")
    losses = golden["losses"]
    norms = golden.get("grad_norms", [])
    steps = range(len(losses)) if args.all_steps else [args.step]
    if steps[-1] < 0 or steps[-1] >= len(losses):
        raise InputError(f"{args.golden}: no golden step {steps[-1]} "
                         f"({len(losses)} steps)")
    if len(records) <= steps[-1]:
        raise InputError(f"{args.metrics}: {len(records)} records, golden step "
                         f"{steps[-1]} needs {steps[-1] + 1}")
    failures, worst = 0, 0.0
    for i in steps:
        lineno, record = records[i]
        where = f"step {i} (line {lineno}, \"step\": {record['step']})"
        ok, rel = compare_scalar(f"{where} loss", record["loss"], losses[i], args.rtol)
        step_ok = ok
        worst = max(worst, rel)
        if args.grad_norms:
            if "grad_norm" not in record:
                raise InputError(f"{args.metrics}:{lineno}: no \"grad_norm\"")
            ok, rel = compare_scalar(f"{where} grad_norm", record["grad_norm"],
                                     norms[i], args.rtol)
            step_ok = step_ok and ok
            worst = max(worst, rel)
        failures += not step_ok
    if failures:
        print(f"FAIL {failures} of {len(steps)} steps beyond rtol={args.rtol:g}")
        return 1
    print(f"OK {len(steps)} steps max_rel_err={worst:.3e}")
    return 0


def l2(values):
    return math.sqrt(math.fsum(v * v for v in values))


def cmd_tensors(args):
    actual = read_safetensors(args.actual)
    expected = read_safetensors(args.expected)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    failures = 0
    for key in missing:
        print(f"FAIL missing {key} (in {args.expected}, not in {args.actual})")
    for key in extra:
        print(f"FAIL extra {key} (in {args.actual}, not in {args.expected})")
    failures += len(missing) + len(extra)
    worst_key, worst = None, -1.0
    for key in sorted(set(actual) & set(expected)):
        (ashape, a), (eshape, e) = actual[key], expected[key]
        if ashape != eshape:
            print(f"FAIL {key} shape {ashape}, expected {eshape}")
            failures += 1
            continue
        diff = l2([x - y for x, y in zip(a, e)])
        norm = l2(e)
        rel = diff / norm if norm > 0 else diff
        if not math.isfinite(rel) or rel > args.rtol:
            print(f"FAIL {key} rel_err={rel:.3e} (||a-e||={diff:.3e}, ||e||={norm:.3e}, "
                  f"rtol={args.rtol:g})")
            failures += 1
        if not math.isfinite(rel) or rel > worst:
            worst_key, worst = key, rel if math.isfinite(rel) else math.inf
    if worst_key is not None:
        print(f"worst {worst_key} rel_err={worst:.3e}")
    if failures:
        print(f"FAIL {failures} problems in {len(expected)} expected tensors")
        return 1
    print(f"OK {len(expected)} tensors max_rel_err={max(worst, 0.0):.3e}")
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    loss = sub.add_parser("loss", help="compare per-step losses with golden.json")
    loss.add_argument("--metrics", required=True, help="qlora-run --metrics JSONL")
    loss.add_argument("--golden", required=True, help="golden.json")
    which = loss.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, default=0, help="golden step (0-based) to compare")
    which.add_argument("--all-steps", action="store_true", help="compare every golden step")
    loss.add_argument("--rtol", type=float, default=1e-5)
    loss.add_argument("--grad-norms", action="store_true",
                      help="also compare \"grad_norm\" with golden grad_norms")
    tensors = sub.add_parser("tensors", help="compare two F32 safetensors files")
    tensors.add_argument("--actual", required=True)
    tensors.add_argument("--expected", required=True)
    tensors.add_argument("--rtol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    try:
        return cmd_loss(args) if args.command == "loss" else cmd_tensors(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
