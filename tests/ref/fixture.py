"""Writer of ember's test fixture files (read by tests/fixture.h).

Layout, little-endian: magic b"EMBRFIX\\0", u32 version (1), u32 tensor count; then
per tensor: u32 name length, name (UTF-8), u32 dtype (ember_dtype: 0 f32, 5 i32,
6 i64), u32 ndim, i64 shape[ndim], raw data (C order).
"""
import struct

import torch

MAGIC = b"EMBRFIX\0"
VERSION = 1
DTYPES = {torch.float32: 0, torch.int32: 5, torch.int64: 6}


def write(path, tensors):
    """tensors: list of (name, torch.Tensor)."""
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<II", VERSION, len(tensors)))
        for name, t in tensors:
            t = t.detach().cpu().clone().contiguous()  # a copy: views of live parameters would change
            if t.dtype not in DTYPES:
                raise ValueError(f"{name}: dtype {t.dtype} not supported")
            b = name.encode()
            f.write(struct.pack("<I", len(b)))
            f.write(b)
            f.write(struct.pack("<II", DTYPES[t.dtype], t.dim()))
            f.write(struct.pack(f"<{t.dim()}q", *t.shape))
            f.write(t.numpy().tobytes())
