#!/usr/bin/env python3
"""Seed corpus of tests/fuzz/fuzz_safetensors.c: small valid and broken safetensors files.

Run: python3 tests/fuzz/make_corpus.py   (no dependencies; rewrites corpus/safetensors/)

Files named valid-* must open in ember; bad-* must be rejected
(tests/test_fuzz_safetensors.c checks both, then fuzzes mutations of all of them).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "safetensors")


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def image(header, data=b"", pad=True):
    h = header.encode() if isinstance(header, str) else header
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def ember_file(tensors, meta=None, corrupt_sum=False):
    """tensors: list of (name, dtype, shape, bytes), written the way ember lays them out."""
    data = b""
    entries = {}
    for name, dt, shape, raw in tensors:
        entries[name] = {"dtype": dt, "shape": list(shape),
                         "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    crc = crc32c(data) ^ (1 if corrupt_sum else 0)
    m = {"ember.checksum": "crc32c:%08x" % crc, "ember.format": "1"}
    m.update(meta or {})
    header = json.dumps({"__metadata__": m, **entries}, separators=(",", ":"), ensure_ascii=False)
    return image(header, data)


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.unlink(os.path.join(OUT, f))
    files = {}
    files["valid-ember"] = ember_file([("w", "F32", (2, 2), f32(1, 2, 3, 4)),
                                       ("ids", "I64", (2,), struct.pack("<2q", 7, -7)),
                                       ("b", "U8", (3,), b"\x01\x02\x03")], {"k": "v"})
    files["valid-ember-scalar-empty"] = ember_file([("s", "F32", (), f32(0.5)),
                                                    ("e", "BF16", (0, 4), b"")])
    files["valid-foreign"] = image('{"__metadata__":{"format":"pt"},'
                                   '"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},'
                                   '"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}}',
                                   b"\x00\x3c\x00\xc0" + struct.pack("<i", 9))
    files["valid-unicode"] = image('{"caf\\u00e9 \\ud83d\\ude00":{"dtype":"I8","shape":[1],'
                                   '"data_offsets":[0,1]}}', b"\x80")
    files["valid-f64-listed"] = image('{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}',
                                      f32(0, 0))
    files["valid-empty"] = image("{}")
    files["valid-unpadded"] = image('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
                                    b"\x05", pad=False)
    files["bad-short"] = b"\x10\x00\x00"
    files["bad-length"] = struct.pack("<Q", 1 << 40) + b"{}"
    files["bad-truncated"] = files["valid-ember"][:-3]
    files["bad-json"] = image('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1],}}', b"\x00")
    files["bad-overlap"] = image('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                 '"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(1, 2))
    files["bad-range"] = image('{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', f32(1))
    files["bad-dtype"] = image('{"x":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}', b"\x00")
    files["bad-duplicate"] = image('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                   '"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\x00\x00")
    files["bad-checksum"] = ember_file([("w", "F32", (1,), f32(1))], corrupt_sum=True)
    files["bad-version"] = image('{"__metadata__":{"ember.format":"9","ember.checksum":"crc32c:00000000"}}')
    files["bad-deep"] = image("[" * 80 + "]" * 80)
    files["bad-surrogate"] = image('{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00")
    files["bad-utf8"] = image(b'{"\xc0\xaf":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00")
    files["bad-shape"] = image('{"x":{"dtype":"U8","shape":[1,-2],"data_offsets":[0,1]}}', b"\x00")
    files["bad-meta"] = image('{"__metadata__":{"k":["v"]}}')
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(files)} files in {OUT}")


if __name__ == "__main__":
    main()
