#!/usr/bin/env python3
"""Writes a damaged copy of a file for the runtime's bad-input tests.

    corrupt_file.py IN OUT flip OFFSET      flip every bit of one byte
                                            (a negative OFFSET counts from the end)
    corrupt_file.py IN OUT truncate SIZE    keep the first SIZE bytes
    corrupt_file.py IN OUT version N        set train.bin's footer schema version
"""
import struct
import sys


def main():
    src, dst, mode, value = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    data = bytearray(open(src, "rb").read())
    if mode == "flip":
        data[value] ^= 0xFF
    elif mode == "truncate":
        data = data[:value]
    elif mode == "version":
        # Footer: u64 checksum, u32 schema version, "QLTE".
        data[-8:-4] = struct.pack("<I", value)
    else:
        sys.exit("corrupt_file.py: unknown mode " + mode)
    open(dst, "wb").write(bytes(data))


if __name__ == "__main__":
    main()
