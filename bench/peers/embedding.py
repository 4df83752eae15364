#!/usr/bin/env python3
"""Peer of `ember bench embedding`: torch.nn.EmbeddingBag(sparse=True) + torch.optim.

One table of 4M rows (dim 64; also 128 without --quick), batch 4096, pooling factors
1 and 64, uniform and Zipf ids; the same cases, timing and JSON lines as ember's
embedding suite (bench/suite_embedding.c, common.py). Modes: fwd (forward under
no_grad), sgd and adagrad (zero_grad, forward, backward of sum(out * G) with a fixed G,
optimizer step, lr 0.01). Metrics: "rows" (looked-up ids per second) and "bandwidth"
(the least bytes the operation moves, counted as ember counts them: each looked-up row
read, plus each unique row read and written back with its optimizer state).

With --fbgemm (or run as embedding-fbgemm.py) the peer is FBGEMM's CPU table-batched
embedding (fbgemm-gpu-cpu, SplitTableBatchedEmbeddingBagsCodegen on ComputeDevice.CPU)
with its fused optimizers EXACT_SGD, EXACT_ADAGRAD and EXACT_ROWWISE_ADAGRAD, reported
as suite "embedding-fbgemm" against `ember bench embedding-fbgemm`.

    bench/peers/embedding.py [--quick] [--tiny] [--json] [--threads N] [--fbgemm]

Zipf ids: rank r from the continuous inverse CDF of x^-1.15 on [1, N + 1), scattered as
id = r * 2654435761 mod N, as in ember's suite. The thread count is tuned on the first
case and kept for all of them.
"""

import gc
import logging
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ZIPF_S = 1.15
SCATTER = 2654435761
LR = 0.01
# (mode, trains, state floats per dim, fixed state floats); the order follows ember's suite
MODES_TORCH = [[("fwd", False, 0, 0), ("sgd", True, 0, 0)], [("adagrad", True, 1, 0)]]
MODES_FBGEMM = MODES_TORCH + [[("rowwise_adagrad", True, 0, 1)]]


def make_ids(torch, n, rows, zipf, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, dtype=torch.float64, generator=g)
    if not zipf:
        ids = (u * rows).long()
    else:
        a = 1.0 - ZIPF_S
        top = (rows + 1.0) ** a - 1.0
        r = torch.floor((top * u + 1.0) ** (1.0 / a)).long() - 1
        ids = (r.clamp_(0, rows - 1) * SCATTER) % rows
    return ids.clamp_(0, rows - 1)


class TorchTable:
    """nn.EmbeddingBag(sparse=True) + torch.optim, one table."""

    def __init__(self, torch, rows, dim, optimizer):
        self.torch = torch
        self.emb = torch.nn.EmbeddingBag(rows, dim, mode="sum", sparse=True)
        s = 1.0 / rows ** 0.5  # TorchRec's default init range, as ember's suite
        with torch.no_grad():
            self.emb.weight.uniform_(-s, s)
        if optimizer == "adagrad":
            self.opt = torch.optim.Adagrad(self.emb.parameters(), lr=LR)
        else:
            self.opt = torch.optim.SGD(self.emb.parameters(), lr=LR)

    def forward(self, ids, offsets):
        with self.torch.no_grad():
            return self.emb(ids, offsets[:-1])

    def train(self, ids, offsets, grad):
        self.opt.zero_grad(set_to_none=True)
        out = self.emb(ids, offsets[:-1])
        out.backward(grad)
        self.opt.step()


class FbgemmTable:
    """FBGEMM's CPU TBE with its fused optimizer (the update runs inside backward)."""

    def __init__(self, torch, rows, dim, optimizer):
        from fbgemm_gpu.split_embedding_configs import SparseType
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
            ComputeDevice, EmbeddingLocation, OptimType, PoolingMode,
            SplitTableBatchedEmbeddingBagsCodegen)
        opt = {"sgd": OptimType.EXACT_SGD, "adagrad": OptimType.EXACT_ADAGRAD,
               "rowwise_adagrad": OptimType.EXACT_ROWWISE_ADAGRAD}[optimizer]
        self.torch = torch
        self.emb = SplitTableBatchedEmbeddingBagsCodegen(
            [(rows, dim, EmbeddingLocation.HOST, ComputeDevice.CPU)], optimizer=opt,
            learning_rate=LR, eps=1e-10 if optimizer == "adagrad" else 1e-8,
            pooling_mode=PoolingMode.SUM, weights_precision=SparseType.FP32)
        s = 1.0 / rows ** 0.5
        with torch.no_grad():
            for w in self.emb.split_embedding_weights():
                w.uniform_(-s, s)

    def forward(self, ids, offsets):
        with self.torch.no_grad():
            return self.emb(ids, offsets)

    def train(self, ids, offsets, grad):
        out = self.emb(ids, offsets)
        out.backward(grad)


def impl_string(torch, threads, fbgemm):
    base = common.torch_impl(torch, threads)
    if not fbgemm:
        return base
    return "fbgemm-gpu-cpu %s on %s" % (common.dist_version("fbgemm-gpu-cpu") or "?", base)


def main(fbgemm=None):
    args_list = sys.argv[1:]
    if fbgemm is None:
        fbgemm = "--fbgemm" in args_list
    args_list = [a for a in args_list if a != "--fbgemm"]
    args = common.parse_args(__doc__.splitlines()[0], args_list)
    suite = "embedding-fbgemm" if fbgemm else "embedding"
    try:
        import torch
    except ImportError as e:
        common.log("cannot import torch (%s); run bench/peers/setup" % e)
        return 1
    table_cls = TorchTable
    if fbgemm:
        logging.disable(logging.WARNING)  # fbgemm_gpu's version notices go to stderr otherwise
        try:
            import fbgemm_gpu  # noqa: F401
            from fbgemm_gpu.split_table_batched_embeddings_ops_training import (  # noqa: F401
                SplitTableBatchedEmbeddingBagsCodegen)
        except Exception as e:  # ImportError, or undefined symbols when built for another torch
            common.log("FBGEMM is not usable here (%s: %s); bench/peers/setup installs fbgemm-gpu-cpu"
                       % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
            return 1
        table_cls = FbgemmTable

    rows, batch = (20000, 256) if args.tiny else (4000000, 4096)
    dims = [16] if args.tiny else [64] if args.quick else [64, 128]
    pools = [1, 64]
    groups = MODES_FBGEMM if fbgemm else MODES_TORCH
    threads, impl = None, None

    def timed(fn):
        return common.best_seconds(fn, args.min_time, repeats=args.repeats)

    for dim in dims:
        grad = torch.rand(batch, dim, generator=torch.Generator().manual_seed(5)) * 2 - 1
        for group in groups:
            optimizer = "sgd" if group[0][0] == "fwd" else group[0][0]
            table = table_cls(torch, rows, dim, optimizer)
            for pool in pools:
                offsets = torch.arange(0, batch * pool + 1, pool, dtype=torch.int64)
                for zipf in (0, 1):
                    ids = make_ids(torch, batch * pool, rows, zipf, 1000 + pool * 2 + zipf)
                    unique = int(torch.unique(ids).numel())
                    for name, trains, per_dim, fixed in group:
                        if trains:
                            fn = lambda: table.train(ids, offsets, grad)  # noqa: E731
                        else:
                            fn = lambda: table.forward(ids, offsets)  # noqa: E731
                        if threads is None:
                            if args.threads > 0:
                                threads = args.threads
                                common.torch_set_threads(torch, threads)
                            else:
                                threads, _ = common.tune_threads(
                                    lambda t: common.torch_set_threads(torch, t),
                                    lambda: batch * pool / timed(fn))
                        sec = timed(fn)
                        if impl is None:
                            impl = impl_string(torch, torch.get_num_threads(), fbgemm)
                        n = batch * pool
                        bytes_ = n * dim * 4.0
                        if trains:
                            bytes_ += 2.0 * unique * (dim + per_dim * dim + fixed) * 4.0
                        case = "%s_d%d_L%d_%s" % (name, dim, pool, "zipf" if zipf else "uniform")
                        params = {"rows": rows, "dim": dim, "batch": batch, "pooling": pool,
                                  "ids": "zipf" if zipf else "uniform", "unique": unique,
                                  "mode": "fwd+bwd+update" if trains else "fwd",
                                  "optimizer": optimizer if trains else "none",
                                  "threads": torch.get_num_threads(), "impl": impl}
                        common.emit(suite, case, "rows", n / sec, "rows/s", params)
                        common.emit(suite, case, "bandwidth", bytes_ / sec / 1e9, "GB/s", params)
            del table
            gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
