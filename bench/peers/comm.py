#!/usr/bin/env python3
"""Peer of `ember bench comm`: the same collectives through torch.distributed (gloo, CPU).

bench/compare runs ember's side as `mpiexec -n 2 ember bench comm --json` (MPI between
two processes of this machine); this peer spawns two processes that join a gloo
process group and time the same cases the same way (bench/suite_comm.c): f32 buffers,
SUM reductions, sizes counted as nccl-tests counts them (all_reduce and broadcast the
buffer, all_gather the gathered output, reduce_scatter the input, all_to_all one
rank's input, sendrecv the message), 2 warm-up calls, one timed call (slowest rank)
sets the iteration count for about min_time, then 5 repeats each starting at a
barrier, the slowest rank's time per call, the best repeat kept. Metric busbw =
bytes / t * factor (2(n-1)/n all_reduce; (n-1)/n all_gather, reduce_scatter,
all_to_all; 1 broadcast, sendrecv), as ember reports it. A collective gloo does not
implement is skipped with a note on stderr.

    bench/peers/comm.py [--quick] [--tiny] [--json] [--ranks N]
"""

import os
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TINY = [1 << 10, 4 << 10, 16 << 10]
QUICK = [4 << 10, 32 << 10, 256 << 10, 2 << 20, 16 << 20, 64 << 20]
FULL = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
COLLS = ["allreduce", "allgather", "reducescatter", "alltoall", "broadcast", "sendrecv"]


def size_label(b):
    if b >= (1 << 20) and b % (1 << 20) == 0:
        return "%dMiB" % (b >> 20)
    if b >= 1024 and b % 1024 == 0:
        return "%dKiB" % (b >> 10)
    return "%dB" % b


def factor(coll, n):
    if coll == "allreduce":
        return 2.0 * (n - 1) / n
    if coll in ("allgather", "reducescatter", "alltoall"):
        return (n - 1) / n
    return 1.0


def worker(rank, n, store_path, args, out_path):
    import warnings

    import torch
    import torch.distributed as dist

    warnings.filterwarnings("ignore", category=FutureWarning)  # the *_tensor collectives' renames
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + store_path, rank=rank, world_size=n)
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    min_time = args.min_time
    repeats = 2 if args.tiny else 5
    lines = []

    def slowest(sec):
        t = torch.tensor([sec], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    for coll in COLLS:
        for size in sizes:
            blocks = n if coll in ("allgather", "reducescatter", "alltoall") else 1
            count = size // 4 // blocks
            nbytes = count * 4 * blocks
            send = torch.ones(count * (blocks if coll in ("reducescatter", "alltoall") else 1))
            recv = torch.zeros(count * (blocks if coll in ("allgather", "alltoall") else 1))
            nxt, prv = (rank + 1) % n, (rank - 1) % n

            def call():
                if coll == "allreduce":
                    dist.all_reduce(send)
                elif coll == "allgather":
                    dist.all_gather_into_tensor(recv, send)
                elif coll == "reducescatter":
                    dist.reduce_scatter_tensor(recv, send)
                elif coll == "alltoall":
                    dist.all_to_all_single(recv, send)
                elif coll == "broadcast":
                    dist.broadcast(send, 0)
                else:
                    reqs = [dist.isend(send, nxt), dist.irecv(recv, prv)]
                    for r in reqs:
                        r.wait()

            try:
                for _ in range(2):
                    call()
            except (RuntimeError, NotImplementedError, ValueError) as e:
                if rank == 0:
                    common.log("%s: skipped: gloo says %s" % (coll, str(e).splitlines()[0][:120]))
                break
            dist.barrier()
            t0 = time.perf_counter()
            call()
            once = slowest(time.perf_counter() - t0)
            iters = max(1, min(100000, int(min_time / max(once, 1e-9))))
            best = float("inf")
            for _ in range(repeats):
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(iters):
                    call()
                best = min(best, slowest((time.perf_counter() - t0) / iters))
            if rank == 0:
                algbw = nbytes / best / 1e9
                lines.append(("%s_%s" % (coll, size_label(nbytes)), algbw * factor(coll, n),
                              {"collective": coll, "bytes": nbytes, "ranks": n, "backend": "gloo",
                               "dtype": "f32", "time_us": round(best * 1e6, 3), "algbw": algbw}))
    if rank == 0:
        import json
        with open(out_path, "w") as f:
            json.dump({"lines": lines, "impl": "torch %s, torch.distributed gloo, %d processes" % (
                torch.__version__, n)}, f)
    dist.destroy_process_group()


def main():
    argv = sys.argv[1:]
    ranks = 2
    if "--ranks" in argv:
        i = argv.index("--ranks")
        ranks = int(argv[i + 1])
        del argv[i:i + 2]
    args = common.parse_args(__doc__.splitlines()[0], argv)
    try:
        import torch  # noqa: F401
        import torch.multiprocessing as mp
    except ImportError as e:
        common.log("cannot import torch (%s); run bench/peers/setup" % e)
        return 1
    import json
    with tempfile.TemporaryDirectory(prefix="ember-peer-comm-") as d:
        store, out = os.path.join(d, "store"), os.path.join(d, "out.json")
        mp.spawn(worker, args=(ranks, store, args, out), nprocs=ranks, join=True)
        with open(out) as f:
            res = json.load(f)
    for name, busbw, params in res["lines"]:
        params["impl"] = res["impl"]
        common.emit("comm", name, "busbw", busbw, "GB/s", params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
