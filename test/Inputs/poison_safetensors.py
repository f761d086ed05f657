#!/usr/bin/env python3
"""Copies a safetensors file with one F32 element replaced, for error tests.

    poison_safetensors.py IN OUT TENSOR INDEX VALUE

VALUE is a Python float spelling ("nan", "inf", "-inf", "1.5"). Standard
library only; the header and every other byte stay as they were.
"""
import json
import struct
import sys


def main():
    src, out, name, index, value = sys.argv[1:6]
    with open(src, "rb") as f:
        blob = bytearray(f.read())
    (n,) = struct.unpack("<Q", blob[:8])
    entry = json.loads(blob[8:8 + n])[name]
    if entry["dtype"] != "F32":
        sys.exit(f"{name}: expected an F32 tensor, found {entry['dtype']}")
    at = 8 + n + entry["data_offsets"][0] + 4 * int(index)
    if at + 4 > 8 + n + entry["data_offsets"][1]:
        sys.exit(f"{name}: element {index} is out of range")
    blob[at:at + 4] = struct.pack("<f", float(value))
    with open(out, "wb") as f:
        f.write(blob)


if __name__ == "__main__":
    main()
