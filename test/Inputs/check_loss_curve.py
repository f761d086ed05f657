#!/usr/bin/env python3
"""Checks a qlora-run metrics file (standard library only).

    check_loss_curve.py METRICS.jsonl --steps N [--first-above X] [--last-below Y]

Every line must be a JSON object with step 1..N in order and the keys
step, loss, lr, grad_norm, tokens_per_s; prints `OK N steps first=.. last=..`
or a FAIL line and exits 1.
"""
import argparse
import json
import sys

KEYS = ("step", "loss", "lr", "grad_norm", "tokens_per_s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("metrics")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--first-above", type=float)
    parser.add_argument("--last-below", type=float)
    args = parser.parse_args()
    with open(args.metrics) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if len(rows) != args.steps:
        sys.exit("FAIL %d lines, expected %d" % (len(rows), args.steps))
    for i, row in enumerate(rows, 1):
        missing = [k for k in KEYS if k not in row]
        if missing or row["step"] != i:
            sys.exit("FAIL line %d: step %r, missing %s" % (i, row.get("step"), missing))
    first, last = rows[0]["loss"], rows[-1]["loss"]
    if args.first_above is not None and not first > args.first_above:
        sys.exit("FAIL first loss %.4f is not above %g" % (first, args.first_above))
    if args.last_below is not None and not last < args.last_below:
        sys.exit("FAIL last loss %.4f is not below %g" % (last, args.last_below))
    print("OK %d steps first=%.4f last=%.4f" % (len(rows), first, last))


if __name__ == "__main__":
    main()
