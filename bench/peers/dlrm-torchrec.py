#!/usr/bin/env python3
"""Peer of `ember bench dlrm-torchrec`: TorchRec's DLRM (torchrec.models.dlrm.DLRM) on the
CPU, its EmbeddingBagCollection sharded by DistributedModelParallel (one rank, gloo)
into FBGEMM's table-batched CPU kernels with Adagrad fused into the backward. The cases
and the code are bench/peers/dlrm.py's (run with --torchrec); this name lets
`bench/compare dlrm-torchrec` find it.

    bench/peers/dlrm-torchrec.py [--quick] [--tiny] [--json] [--threads N]
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlrm  # noqa: E402

if __name__ == "__main__":
    sys.exit(dlrm.main(torchrec=True))
