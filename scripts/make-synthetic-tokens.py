#!/usr/bin/env python3
"""Writes a learnable synthetic token file for qlora-run (standard library only).

The file is raw little-endian uint16 token ids: one fixed cycle of CYCLE
distinct ids (drawn with SEED from [0, VOCAB)) repeated COUNT times in all.
Every next token is a function of the current one, so a model that learns
the cycle drives the loss towards 0 from about ln(VOCAB) at the start.

    python3 scripts/make-synthetic-tokens.py OUT.bin [--vocab 256]
        [--cycle 32] [--tokens 65536] [--seed 0]
"""
import argparse
import random
import struct
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--cycle", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=65536)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 < args.cycle <= args.vocab <= 65536:
        sys.exit("make-synthetic-tokens: need 0 < cycle <= vocab <= 65536")
    cycle = random.Random(args.seed).sample(range(args.vocab), args.cycle)
    ids = [cycle[i % args.cycle] for i in range(args.tokens)]
    with open(args.out, "wb") as f:
        f.write(struct.pack("<%dH" % len(ids), *ids))
    print("%s: %d tokens, a cycle of %d ids from a vocabulary of %d"
          % (args.out, len(ids), args.cycle, args.vocab))


if __name__ == "__main__":
    main()
