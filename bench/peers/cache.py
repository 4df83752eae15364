#!/usr/bin/env python3
"""Peer of `ember bench cache`: the same training loop in PyTorch, tables resident.

26 nn.EmbeddingBag(sparse=True) tables with the Criteo Kaggle cardinalities (33.8M rows,
dim 16, sum pooling, weights uniform in [-0.05, 0.05)), one id per bag, batch 16384,
torch.optim.Adagrad (lr 0.01), one step = zero_grad, forward of every table, backward
of a fixed dL/d(out), optimizer step: ember's step (bench/suite_cache.c) without the
cache. The ids are the same: splitmix64 of (table << 56) ^ (batch * B + sample) to a
uniform u, the continuous inverse CDF of x^-1.15 on [1, N + 1) to a Zipf rank r, and
id = r * 2654435761 mod N; the timed batches are the same slice of the same pool.

PyTorch has no cache, so this is the resident baseline for every case: it is timed
once and its rows/s reported under each of ember's case names (params "measured":
"resident"). Its cache_vs_resident is 1 by construction; it is reported for host_r1.5
so that bench/compare prints ember's own cache_vs_resident there.

    bench/peers/cache.py [--quick] [--tiny] [--json] [--threads N]
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

KAGGLE = [1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
          27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572]
DIM = 16
ZIPF_S = 1.15
SCATTER = 2654435761
LR = 0.01
CASES = ["resident"] + ["%s_r%s" % (s, r) for s in ("host", "lmdb") for r in ("0.5", "1.5", "5", "100")]


def mix64(np, x):
    """splitmix64 on a uint64 array (wrapping arithmetic, as in C)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def zipf_ids(np, keys, rows):
    u = (mix64(np, keys) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    a = 1.0 - ZIPF_S
    top = np.power(rows + 1.0, a) - 1.0
    r = np.floor(np.power(top * u + 1.0, 1.0 / a)).astype(np.int64) - 1
    r = np.clip(r, 0, rows - 1).astype(np.uint64)
    return ((r * np.uint64(SCATTER)) % np.uint64(rows)).astype(np.int64)


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    try:
        import numpy as np
        import torch
    except ImportError as e:
        common.log("cannot import torch/numpy (%s); run bench/peers/setup" % e)
        return 1
    np.seterr(over="ignore")
    batch = 256 if args.tiny else 16384
    nb = 24 if args.tiny else 64 if args.quick else 160
    rows = [min(r, 20000) if args.tiny else r for r in KAGGLE]
    nt = len(rows)

    # the pool of batches, as ember makes it
    s = np.arange(batch, dtype=np.uint64)
    pool = []
    for k in range(nb):
        ids = []
        for t in range(nt):
            keys = (np.uint64(t) << np.uint64(56)) ^ (np.uint64(k) * np.uint64(batch) + s)
            ids.append(torch.from_numpy(zipf_ids(np, keys, rows[t])))
        pool.append(ids)
    offsets = torch.arange(0, batch, dtype=torch.int64)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        pool = [[ids.to(dev) for ids in b] for b in pool]
        offsets = offsets.to(dev)

    torch.manual_seed(2024)
    tables = []
    for n in rows:
        e = torch.nn.EmbeddingBag(n, DIM, mode="sum", sparse=True)
        with torch.no_grad():
            e.weight.uniform_(-0.05, 0.05)
        tables.append(e.to(dev))
    params = [p for e in tables for p in e.parameters()]
    opt = torch.optim.Adagrad(params, lr=LR)
    grad = (torch.rand(batch, nt * DIM, generator=torch.Generator().manual_seed(7)) * 2e-3 - 1e-3).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None

    state = {"k": nb // 4 + 4}  # the batches ember times: after its warm-up batches

    def step():
        ids = pool[state["k"] % nb]
        state["k"] += 1
        opt.zero_grad(set_to_none=True)
        out = torch.cat([tables[t](ids[t], offsets) for t in range(nt)], dim=1)
        out.backward(grad)
        opt.step()

    def timed():
        return common.best_seconds(step, args.min_time, repeats=args.repeats, sync=sync)

    if args.threads > 0 or dev.type == "cuda":
        threads = args.threads if args.threads > 0 else torch.get_num_threads()
        common.torch_set_threads(torch, threads)
    else:
        threads, _ = common.tune_threads(lambda n: common.torch_set_threads(torch, n),
                                         lambda: batch * nt / timed())
    sec = timed()
    impl = common.torch_impl(torch, threads)
    rows_s = batch * nt / sec
    for case in CASES:
        p = {"tables": nt, "rows_total": sum(rows), "dim": DIM, "batch": batch, "optim": "adagrad",
             "zipf_s": ZIPF_S, "measured": "resident", "threads": threads, "impl": impl,
             "device": "cuda:0" if dev.type == "cuda" else "cpu"}
        common.emit("cache", case, "rows", rows_s, "rows/s", p)
        if case == "host_r1.5":
            common.emit("cache", case, "cache_vs_resident", 1.0, "x", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
