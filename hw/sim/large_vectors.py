#!/usr/bin/env python3
"""Writes diode frame test vectors at the largest payload (2^24 bytes, hw/FRAMES.md) into
DIR/large.vec, each with its expected code set by how it is built:

- ACCEPT: `{"a":"xxx…"}` of exactly 16 777 216 bytes with its SHA-256;
- BAD_HASH: the same frame with one payload byte changed after hashing (still valid JSON);
- TRAILING: the accepted frame and one more byte.

Usage: hw/sim/large_vectors.py DIR, then hw/sim/run DIR (about 50 MB of vectors; the
simulation takes minutes, so it is not part of the default run).
"""
import hashlib
import os
import sys

MAX = 1 << 24


def frame(payload: bytes, digest: bytes) -> bytes:
    return (b"GWDF" + bytes([1, 1, 0, 0]) + (0x0123456789ABCDEF).to_bytes(8, "big")
            + (1).to_bytes(8, "big") + len(payload).to_bytes(4, "big") + bytes(4) + digest
            + payload)


def line(vid: int, code: int, f: bytes) -> str:
    return f"{vid} {code} {len(f)} {f.hex(' ')}\n"


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    payload = b'{"a":"' + b"x" * (MAX - 8) + b'"}'
    assert len(payload) == MAX
    good = frame(payload, hashlib.sha256(payload).digest())
    changed = bytearray(good)
    changed[64 + MAX // 2] = ord("y")
    with open(os.path.join(out, "large.vec"), "w") as v:
        v.write("# 1 ACCEPT: payload of 2^24 bytes\n" + line(1, 0, good))
        v.write("# 2 BAD_HASH: payload of 2^24 bytes changed after hashing\n"
                + line(2, 15, bytes(changed)))
        v.write("# 3 TRAILING: one byte after a payload of 2^24 bytes\n"
                + line(3, 9, good + b"}"))


if __name__ == "__main__":
    main()
