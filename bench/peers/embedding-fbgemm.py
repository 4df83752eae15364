#!/usr/bin/env python3
"""Peer of `ember bench embedding-fbgemm`: FBGEMM's CPU table-batched embedding with its
fused optimizers (fbgemm-gpu-cpu). The cases and the code are bench/peers/embedding.py's
(run with --fbgemm); this name lets `bench/compare embedding-fbgemm` find it.

    bench/peers/embedding-fbgemm.py [--quick] [--tiny] [--json] [--threads N]
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embedding  # noqa: E402

if __name__ == "__main__":
    sys.exit(embedding.main(fbgemm=True))
