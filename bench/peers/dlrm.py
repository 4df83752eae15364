#!/usr/bin/env python3
"""Peer of `ember bench dlrm`: DLRM training steps in PyTorch, and one epoch's AUC.

The model is the DLRM of ember/dlrm.h written as the DLRM reference implementation
writes it: a bottom MLP (ReLU after every layer), one nn.EmbeddingBag(mode="sum",
sparse=True) per table, the dot interaction (torch.bmm of [z, e_1..e_T] with itself,
the strict lower triangle in the order (1,0), (2,0), (2,1), ..., concatenated after
z), a top MLP (ReLU between layers, none after the last) and BCEWithLogitsLoss.
Initialisation as ember's: nn.Linear's own, embedding rows uniform in +-1/sqrt(rows).
Optimizer as ember's: torch.optim.Adagrad (lr LR, eps 1e-10, initial accumulator 0)
on the dense layers (foreach) and on the sparse embedding gradients. One timed call
is one step: zero_grad, forward, backward, both optimizer steps.

Cases (bench/suite_dlrm.c; each again as ..._bf16 under torch.autocast(bfloat16) where
the CPU has AMX or AVX512-BF16, as ember's _bf16 cases): dlrm_b{2048,16384}_resident (the default model, emb_dim
64, bottom 512-256-64, top 1024-1024-512-256-1, the Kaggle cardinalities times 0.05;
--quick: 2048 only), kaggle_b2048_resident (dim 16, bottom 512-256-64-16, top
512-256-1, cardinalities times 0.25), metric samples_per_s. PyTorch has no cache: the
resident figure is also reported under ember's dlrm_b*_cache1.5 names (params
"measured": "resident"). The batches are ember's: ids of table t, batch k, sample s
from splitmix64 of (t << 56) ^ (k * B + s) to a Zipf(1.15) rank scattered over the
table (bench/peers/cache.py's formula), dense feature i = 4 u with u from splitmix64
of ((32 + i) << 56) ^ (k * B + s), label = top bit of splitmix64 of (63 << 56) ^ (k * B + s).

auc_1epoch (not under --tiny): a small DLRM (dim 16, bottom 64-16, top 128-64-1,
batch 1024, lr 0.05) trained one epoch in file order on the first 200704 rows of
`ember gen-data --format npy --scale 0.01 --seed 1 --rows 251904` and evaluated on the
51200 rows after them; metric auc, the mean over three initialisations (seeds 1, 2,
3). The ember binary is $EMBER_BIN, else the first of build/{release,debug,asan}/
tools/ember (as bench/compare finds it).

With --torchrec (or run as dlrm-torchrec.py) the model is TorchRec's
torchrec.models.dlrm.DLRM, its EmbeddingBagCollection sharded by
DistributedModelParallel (one CPU rank, gloo) into FBGEMM's table-batched CPU
kernels with Adagrad fused into the backward (EXACT_ADAGRAD, through
apply_optimizer_in_backward), the dense layers under torch.optim.Adagrad; suite
"dlrm-torchrec".

    bench/peers/dlrm.py [--quick] [--tiny] [--json] [--threads N] [--torchrec]
"""

import gc
import logging
import math
import os
import subprocess
import sys
import tempfile
import warnings
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KAGGLE = [1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
          27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572]
NT, ND = 26, 13
ZIPF_S = 1.15
SCATTER = 2654435761
LR = 0.01          # the speed cases
SCALE = 0.05       # default model: 1.69M rows
KAGGLE_SCALE = 0.25
AUC_LR = 0.05
AUC_SCALE = 0.01
AUC_BATCH = 1024
AUC_TRAIN = 196 * AUC_BATCH
AUC_EVAL = 50 * AUC_BATCH
AUC_SEEDS = 3  # models (init seeds 1, 2, 3) whose AUCs are averaged
EPS = 1e-10

ARCHS = {  # name: (dim, bottom, top)
    "default": (64, [512, 256, 64], [1024, 1024, 512, 256, 1]),
    "kaggle": (16, [512, 256, 64, 16], [512, 256, 1]),
    "small": (16, [64, 16], [128, 64, 1]),
}


def scaled_rows(scale):
    """Kaggle's cardinalities times scale, rounded, at least 1 (ember_gen's rule)."""
    return [max(1, int(math.floor(k * scale + 0.5))) for k in KAGGLE]


def mix64(np, x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def unit(np, keys):
    return (mix64(np, keys) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def zipf_ids(np, keys, rows):
    u = unit(np, keys)
    a = 1.0 - ZIPF_S
    top = np.power(rows + 1.0, a) - 1.0
    r = np.floor(np.power(top * u + 1.0, 1.0 / a)).astype(np.int64) - 1
    r = np.clip(r, 0, rows - 1).astype(np.uint64)
    return ((r * np.uint64(SCATTER)) % np.uint64(rows)).astype(np.int64)


def make_pool(np, torch, batch, nb, rows):
    """[(dense (B, 13), ids (26, B), labels (B))] for batches 0 .. nb - 1, as ember makes them."""
    out = []
    s = np.arange(batch, dtype=np.uint64)
    for k in range(nb):
        key = np.uint64(k) * np.uint64(batch) + s
        dense = np.stack([(4.0 * unit(np, (np.uint64(32 + i) << np.uint64(56)) ^ key)).astype(np.float32)
                          for i in range(ND)], axis=1)
        labels = (mix64(np, (np.uint64(63) << np.uint64(56)) ^ key) >> np.uint64(63)).astype(np.float32)
        ids = np.stack([zipf_ids(np, (np.uint64(t) << np.uint64(56)) ^ key, rows[t]) for t in range(NT)])
        out.append((torch.from_numpy(dense), torch.from_numpy(ids), torch.from_numpy(labels)))
    return out


def mlp(torch, sizes, last_relu):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_relu:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class TorchDLRM:
    """The DLRM reference's model: nn.EmbeddingBag(sparse=True) tables, bmm interaction."""

    def __init__(self, torch, rows, arch, batch, lr, seed=1):
        dim, bottom, top = arch
        nn = torch.nn
        self.torch = torch
        torch.manual_seed(seed)

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.bot = mlp(torch, [ND] + bottom, True)
                self.emb = nn.ModuleList()
                for n in rows:
                    e = nn.EmbeddingBag(n, dim, mode="sum", sparse=True)
                    with torch.no_grad():
                        e.weight.uniform_(-1.0 / math.sqrt(n), 1.0 / math.sqrt(n))
                    self.emb.append(e)
                n = len(rows) + 1
                self.li = torch.tensor([i for i in range(n) for j in range(i)])
                self.lj = torch.tensor([j for i in range(n) for j in range(i)])
                self.top = mlp(torch, [dim + n * (n - 1) // 2] + top, False)

            def forward(self, dense, ids, offsets):
                z = self.bot(dense)
                e = [self.emb[t](ids[t], offsets) for t in range(len(self.emb))]
                b = z.shape[0]
                t3 = torch.cat([z] + e, dim=1).view(b, -1, z.shape[1])
                zz = torch.bmm(t3, torch.transpose(t3, 1, 2))
                return self.top(torch.cat([z, zz[:, self.li, self.lj]], dim=1))

        self.model = Model()
        self.bf16 = False  # set by the caller: forward under torch.autocast(bfloat16)
        self.offsets = torch.arange(0, batch, dtype=torch.int64)
        dense_params = [p for n, p in self.model.named_parameters() if not n.startswith("emb.")]
        self.opt_dense = torch.optim.Adagrad(dense_params, lr=lr, eps=EPS)
        self.opt_sparse = torch.optim.Adagrad(list(self.model.emb.parameters()), lr=lr, eps=EPS)
        self.loss = nn.BCEWithLogitsLoss()

    def prepare(self, batch):
        """A pool batch in this model's input form (outside the timed step)."""
        dense, ids, labels = batch
        return dense, [ids[t] for t in range(ids.shape[0])], labels

    def step(self, b):
        dense, ids, labels = b
        self.opt_dense.zero_grad(set_to_none=True)
        self.opt_sparse.zero_grad(set_to_none=True)
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16):
            logits = self.model(dense, ids, self.offsets).squeeze(1)
        loss = self.loss(logits.float(), labels)
        loss.backward()
        self.opt_dense.step()
        self.opt_sparse.step()
        return loss

    def predict(self, b):
        dense, ids, _ = b
        with self.torch.no_grad(), self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16):
            return self.torch.sigmoid(self.model(dense, ids, self.offsets).squeeze(1).float())


_dist_ready = False


def init_dist(torch):
    """One-rank gloo process group, as DistributedModelParallel needs one."""
    global _dist_ready
    if _dist_ready:
        return
    import socket
    import torch.distributed as dist
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=0, world_size=1)
    _dist_ready = True


class TorchRecDLRM:
    """torchrec.models.dlrm.DLRM, tables in FBGEMM's CPU TBE with fused Adagrad."""

    def __init__(self, torch, rows, arch, batch, lr, seed=1):
        dim, bottom, top = arch
        self.bf16 = False  # set by the caller: forward under torch.autocast(bfloat16)
        from torchrec.distributed import DistributedModelParallel
        from torchrec.distributed.embedding_types import EmbeddingComputeKernel
        from torchrec.distributed.model_parallel import DataParallelWrapper, get_default_sharders
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
        from torchrec.distributed.types import ShardingType
        from torchrec.models.dlrm import DLRM
        from torchrec.modules.embedding_configs import EmbeddingBagConfig
        from torchrec.modules.embedding_modules import EmbeddingBagCollection
        from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
        from torchrec.optim.optimizers import in_backward_optimizer_filter
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        class NoDataParallel(DataParallelWrapper):
            """One rank: leave the dense layers as they are (no DDP hooks, no all-reduce)."""

            def wrap(self, dmp, env, device):
                pass

        self.torch = torch
        self.kjt = KeyedJaggedTensor
        init_dist(torch)
        torch.manual_seed(seed)
        self.keys = ["f%d" % t for t in range(len(rows))]
        tables = [EmbeddingBagConfig(name="t%d" % t, embedding_dim=dim, num_embeddings=n,
                                     feature_names=[self.keys[t]],
                                     weight_init_min=-1.0 / math.sqrt(n), weight_init_max=1.0 / math.sqrt(n))
                  for t, n in enumerate(rows)]
        ebc = EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
        model = DLRM(embedding_bag_collection=ebc, dense_in_features=ND, dense_arch_layer_sizes=bottom,
                     over_arch_layer_sizes=top, dense_device=torch.device("cpu"))
        apply_optimizer_in_backward(torch.optim.Adagrad, model.sparse_arch.parameters(),
                                    {"lr": lr, "eps": EPS})
        # Every table table-wise in the fused TBE: left alone, the planner makes the small
        # tables data-parallel dense ones (a dense gradient over the table) on one rank.
        constraints = {"t%d" % t: ParameterConstraints(sharding_types=[ShardingType.TABLE_WISE.value],
                                                       compute_kernels=[EmbeddingComputeKernel.FUSED.value])
                       for t in range(len(rows))}
        planner = EmbeddingShardingPlanner(topology=Topology(world_size=1, compute_device="cpu"),
                                           constraints=constraints)
        plan = planner.plan(model, get_default_sharders())
        self.model = DistributedModelParallel(model, device=torch.device("cpu"), plan=plan,
                                              data_parallel_wrapper=NoDataParallel())
        dense_params = [p for _, p in in_backward_optimizer_filter(self.model.named_parameters())]
        self.opt_dense = torch.optim.Adagrad(dense_params, lr=lr, eps=EPS)
        self.loss = torch.nn.BCEWithLogitsLoss()
        self.batch = batch

    def prepare(self, b):
        dense, ids, labels = b
        nt, bsz = ids.shape
        kjt = self.kjt.from_offsets_sync(keys=self.keys, values=ids.reshape(-1),
                                         offsets=self.torch.arange(0, nt * bsz + 1, dtype=self.torch.int64))
        return dense, kjt, labels

    def step(self, b):
        dense, kjt, labels = b
        self.opt_dense.zero_grad(set_to_none=True)
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16):
            logits = self.model(dense, kjt).squeeze(1)
        loss = self.loss(logits.float(), labels)
        loss.backward()  # the embedding rows are updated here (fused Adagrad)
        self.opt_dense.step()
        return loss

    def predict(self, b):
        dense, kjt, _ = b
        with self.torch.no_grad(), self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16):
            return self.torch.sigmoid(self.model(dense, kjt).squeeze(1).float())


def auc_of(np, scores, labels):
    """Exact ROC AUC, tied scores counted half (Mann-Whitney with average ranks)."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = 0.5 * (i + j) + 1.0
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    pos = labels > 0.5
    npos, nneg = int(pos.sum()), int((~pos).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    return float((r[pos].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def find_ember():
    env = os.environ.get("EMBER_BIN")
    if env:
        return env
    for rel in ("build/release/tools/ember", "build/debug/tools/ember", "build/asan/tools/ember"):
        path = os.path.join(ROOT, rel)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def bf16_native():
    """The CPU multiplies bf16 natively (AMX or AVX512-BF16), as ember's bf16 cases need."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def run_auc(np, torch, model_cls, suite, impl, threads, bf16=False):
    ember = find_ember()
    if not ember:
        common.log("auc_1epoch skipped: no ember binary for gen-data (set EMBER_BIN)")
        return
    n = AUC_TRAIN + AUC_EVAL
    with tempfile.TemporaryDirectory(prefix="ember-peer-dlrm-") as d:
        prefix = os.path.join(d, "gen")
        subprocess.run([ember, "gen-data", "--rows", str(n), "--format", "npy", "-o", prefix,
                        "--scale", repr(AUC_SCALE), "--seed", "1", "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        dense = np.load(prefix + "_dense.npy")
        sparse = np.load(prefix + "_sparse.npy").astype(np.int64) & 0xFFFFFFFF  # int32 holding u32 ids
        labels = np.load(prefix + "_labels.npy").reshape(-1).astype(np.float32)
    rows = scaled_rows(AUC_SCALE)
    sparse = sparse % np.asarray(rows, dtype=np.int64)[None, :]
    batches = [(torch.from_numpy(np.ascontiguousarray(dense[r0:r0 + AUC_BATCH])),
                torch.from_numpy(np.ascontiguousarray(sparse[r0:r0 + AUC_BATCH].T)),
                torch.from_numpy(labels[r0:r0 + AUC_BATCH])) for r0 in range(0, n, AUC_BATCH)]
    y = labels[AUC_TRAIN:]
    aucs, loglosses, train_losses = [], [], []
    t0 = time.perf_counter()
    for seed in range(1, AUC_SEEDS + 1):
        model = model_cls(torch, rows, ARCHS["small"], AUC_BATCH, AUC_LR, seed=seed)
        model.bf16 = bf16
        loss_sum, steps, probs = 0.0, 0, []
        for i, raw in enumerate(batches):
            b = model.prepare(raw)
            if i * AUC_BATCH < AUC_TRAIN:
                loss_sum += model.step(b).item()
                steps += 1
            else:
                probs.append(model.predict(b).numpy())
        p = np.concatenate(probs).astype(np.float64)
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        aucs.append(auc_of(np, p, y))
        loglosses.append(float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))))
        train_losses.append(loss_sum / max(steps, 1))
        del model
        gc.collect()
    el = time.perf_counter() - t0
    dim, bottom, top = ARCHS["small"]
    params = {"data": "ember gen-data --format npy --scale %g --seed 1 --rows %d" % (AUC_SCALE, n),
              "train_rows": AUC_TRAIN, "eval_rows": AUC_EVAL, "epochs": 1, "order": "file",
              "rows_total": sum(rows), "dim": dim, "bottom": "-".join(map(str, bottom)),
              "top": "-".join(map(str, top)), "batch": AUC_BATCH, "optim": "adagrad", "lr": AUC_LR,
              "init_seeds": AUC_SEEDS, "auc_per_seed": [round(a, 5) for a in aucs],
              "mean_train_loss": round(sum(train_losses) / AUC_SEEDS, 5),
              "eval_logloss": round(sum(loglosses) / AUC_SEEDS, 5),
              "seconds": round(el, 2), "threads": threads, "impl": impl,
              "matmul_precision": "bf16 (torch.autocast)" if bf16 else "f32"}
    common.emit(suite, "auc_1epoch_bf16" if bf16 else "auc_1epoch", "auc", sum(aucs) / AUC_SEEDS, "AUC", params)


def main(torchrec=None):
    args_list = sys.argv[1:]
    if torchrec is None:
        torchrec = "--torchrec" in args_list
    args_list = [a for a in args_list if a != "--torchrec"]
    args = common.parse_args(__doc__.splitlines()[0], args_list)
    suite = "dlrm-torchrec" if torchrec else "dlrm"
    try:
        import numpy as np
        import torch
    except ImportError as e:
        common.log("cannot import torch/numpy (%s); run bench/peers/setup" % e)
        return 1
    np.seterr(over="ignore")
    # torch.optim.Adagrad's sparse path builds its COO tensors without invariant checks, and says so
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    model_cls = TorchDLRM
    if torchrec:
        logging.disable(logging.WARNING)  # fbgemm_gpu's and torchrec's notices go to stderr otherwise
        warnings.filterwarnings("ignore", category=FutureWarning)  # torchrec's planner and DDP notices
        try:
            import torchrec as _tr  # noqa: F401
            import fbgemm_gpu  # noqa: F401
        except Exception as e:
            common.log("TorchRec is not usable here (%s: %s); bench/peers/setup installs torchrec and "
                       "fbgemm-gpu-cpu" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
            return 1
        model_cls = TorchRecDLRM

    scale = 0.001 if args.tiny else SCALE
    kscale = 0.001 if args.tiny else KAGGLE_SCALE
    cases = [("default", b, scale) for b in ((2048,) if args.quick else (2048, 16384))]
    cases.append(("kaggle", 2048, kscale))
    # every case in f32, then under torch.autocast(bfloat16) (cases _bf16), PyTorch's own
    # mixed precision on CPU, where ember runs its bf16 cases (the CPU has AMX or AVX512-BF16)
    modes = [False, True] if bf16_native() else [False]
    cases = [(a, b, sc, m) for m in modes for a, b, sc in cases]
    threads, impl = None, None
    for arch_name, bname, sc, bf16 in cases:
        sfx = "_bf16" if bf16 else ""
        batch = 256 if args.tiny else bname
        nb = 8 if args.tiny else 16 if batch >= 16384 else 64
        rows = scaled_rows(sc)
        model = model_cls(torch, rows, ARCHS[arch_name], batch, LR)
        model.bf16 = bf16
        pool = [model.prepare(b) for b in make_pool(np, torch, batch, nb, rows)]
        state = {"k": 0}

        def step():
            b = pool[state["k"] % nb]
            state["k"] += 1
            model.step(b)

        def timed():
            return common.best_seconds(step, args.min_time, repeats=args.repeats)

        if threads is None:
            if args.threads > 0:
                threads = args.threads
                common.torch_set_threads(torch, threads)
            else:
                threads, _ = common.tune_threads(lambda n: common.torch_set_threads(torch, n),
                                                 lambda: batch / timed())
        sec = timed()
        if impl is None:
            impl = common.torch_impl(torch, threads)
            if torchrec:
                impl = "torchrec %s, fbgemm-gpu-cpu %s on %s" % (
                    common.dist_version("torchrec") or "?", common.dist_version("fbgemm-gpu-cpu") or "?", impl)
        dim, bottom, top = ARCHS[arch_name]
        p = {"model": arch_name, "tables": NT, "scale": sc, "rows_total": sum(rows), "dim": dim,
             "bottom": "-".join(map(str, bottom)), "top": "-".join(map(str, top)), "interaction": "dot",
             "batch": batch, "optim": "adagrad", "lr": LR, "zipf_s": ZIPF_S, "store": "resident",
             "threads": threads, "impl": impl, "mode": "bf16" if bf16 else "f32",
             "matmul_precision": "bf16 (torch.autocast)" if bf16 else "f32"}
        if arch_name == "kaggle":
            common.emit(suite, "kaggle_b%d_resident%s" % (bname, sfx), "samples_per_s", batch / sec, "samples/s", p)
        else:
            for kind in ("resident", "cache1.5"):
                q = dict(p, measured="resident") if kind != "resident" else p
                common.emit(suite, "dlrm_b%d_%s%s" % (bname, kind, sfx), "samples_per_s", batch / sec, "samples/s",
                            q)
        del model, pool
        gc.collect()
    if not args.tiny:
        for bf16 in modes:
            run_auc(np, torch, model_cls, suite, impl, threads, bf16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
