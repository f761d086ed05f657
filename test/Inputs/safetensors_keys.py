#!/usr/bin/env python3
"""Lists a safetensors file's tensors, sorted: `KEY DTYPE [SHAPE]` (stdlib only)."""
import json
import struct
import sys

with open(sys.argv[1], "rb") as f:
    (size,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(size))
header.pop("__metadata__", None)
print("%d tensors" % len(header))
for key in sorted(header):
    print("%s %s [%s]" % (key, header[key]["dtype"],
                          ", ".join(str(d) for d in header[key]["shape"])))
