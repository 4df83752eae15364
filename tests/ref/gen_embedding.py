#!/usr/bin/python3
"""Write tests/ref/embedding.bin: PyTorch reference results for ember's embedding bags.

    /usr/bin/python3 tests/ref/gen_embedding.py [OUT]

Run with Debian's python3-torch (the version is recorded in the file). Every case is
made from torch.manual_seed(case index), so the file is reproducible.

Cases (names are the prefixes of their arrays):
  fwd_*           nn.EmbeddingBag forward: sum, mean, per-sample weights, an odd dim;
                  batches with empty bags and repeated ids.
  sgd_*, adagrad_*, sparse_adam
                  nn.EmbeddingBag(sparse=True) + torch.optim.SGD / Adagrad / SparseAdam,
                  several steps, a different learning rate at each step (as a scheduler
                  would give), loss = sum(out * grad) so dL/dout = grad.
  adam_dense_wd, adamw_dense, sgd_wd_dense
                  sparse=False (dense gradients) with Adam / AdamW / SGD and weight decay.
                  Every batch touches every row, so torch's dense update (which decays
                  all rows) equals ember's lazy one (which touches rows in the batch).
  rowwise_adagrad rowwise Adagrad written out in torch (FBGEMM's EXACT_ROWWISE_ADAGRAD):
                  s += mean(g^2) per row; w -= lr / (sqrt(s) + eps) * g.
  adagrad_clip    per-row gradient clipping (torch.nn.utils.clip_grad_norm_'s formula
                  applied to each coalesced row) in front of torch.optim.Adagrad.

The file is tests/ref/fixture.py's format (magic "EMBRFIX\0", version 1; read by
tests/fixture.h). Per case: <case>/config (f32: rows, dim, pooling 0 sum / 1 mean,
optimizer -1 none / 0 sgd / 1 adagrad / 2 rowwise_adagrad / 3 adam / 4 adamw, steps,
batch, eps, beta1, beta2, weight_decay, max_grad_norm, initial_accumulator,
has_weights), <case>/w0
(rows, dim), per step k: <case>/s<k>/{offsets (B+1), values, weights, grad (B, dim),
lr (1,), out (B, dim), w (rows, dim)}, and <case>/state (rows, state floats) after the
last step: Adagrad sums; rowwise Adagrad's one value; Adam's exp_avg then exp_avg_sq.
"""

import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

OPT = {"none": -1, "sgd": 0, "adagrad": 1, "rowwise_adagrad": 2, "adam": 3, "adamw": 4}

arrays = []


def f32(name, t):
    arrays.append((name, torch.as_tensor(t).detach().to(torch.float32).clone()))


def i64(name, t):
    arrays.append((name, torch.as_tensor(t).detach().to(torch.int64).clone()))


def make_batch(g, rows, batch, max_len, full):
    """Offsets (B+1) and ids: some empty bags, repeated ids; full = every row appears."""
    lens = torch.randint(0, max_len + 1, (batch,), generator=g)
    lens[1] = 0  # an empty bag, always
    ids = []
    for b in range(batch):
        bag = torch.randint(0, rows, (int(lens[b]),), generator=g).tolist()
        if b == 2 and len(bag) >= 2:
            bag[1] = bag[0]  # a repeated id inside one bag
        ids.append(bag)
    if full:  # spread every row over the non-empty bags
        for r in range(rows):
            ids[(r % (batch - 2)) + 2].append(r)
    offsets = [0]
    for bag in ids:
        offsets.append(offsets[-1] + len(bag))
    flat = [i for bag in ids for i in bag]
    return torch.tensor(offsets, dtype=torch.int64), torch.tensor(flat, dtype=torch.int64)


def rowwise_adagrad_step(weight, state, grad_sparse, lr, eps):
    g = grad_sparse.coalesce()
    idx, vals = g.indices()[0], g.values()
    with torch.no_grad():
        for k in range(idx.numel()):
            r = int(idx[k])
            gr = vals[k]
            state[r] += (gr * gr).mean()
            weight[r] -= lr / (torch.sqrt(state[r]) + eps) * gr


def clip_rows(param, max_norm):
    """Replace param.grad (sparse) by its coalesced rows, each clipped to max_norm."""
    g = param.grad.coalesce()
    vals = g.values()
    norms = vals.norm(dim=1, keepdim=True)
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    param.grad = torch.sparse_coo_tensor(g.indices(), vals * coef, g.shape)


def case(index, name, rows, dim, batch, steps, pooling="sum", opt="none", weights=False,
         sparse=True, full=False, lr=0.1, eps=None, betas=(0.9, 0.999), weight_decay=0.0,
         max_norm=0.0, init_acc=0.0, max_len=5):
    torch.manual_seed(index)
    g = torch.Generator().manual_seed(1000 + index)
    emb = torch.nn.EmbeddingBag(rows, dim, mode=pooling, sparse=sparse, include_last_offset=True)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(rows, dim, generator=g) * 0.5)
    f32(name + "/w0", emb.weight)
    if eps is None:
        eps = 1e-8 if opt in ("adam", "adamw", "rowwise_adagrad") else 1e-10
    optimizer, state = None, None
    if opt == "sgd":
        optimizer = torch.optim.SGD(emb.parameters(), lr=lr, weight_decay=weight_decay)
    elif opt == "adagrad":
        optimizer = torch.optim.Adagrad(emb.parameters(), lr=lr, eps=eps, weight_decay=weight_decay,
                                        initial_accumulator_value=init_acc)
    elif opt == "adam" and sparse:
        optimizer = torch.optim.SparseAdam(emb.parameters(), lr=lr, betas=betas, eps=eps)
    elif opt == "adam":
        optimizer = torch.optim.Adam(emb.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    elif opt == "adamw":
        optimizer = torch.optim.AdamW(emb.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    elif opt == "rowwise_adagrad":
        state = torch.full((rows,), float(init_acc))
    for k in range(steps):
        p = "%s/s%d/" % (name, k)
        offsets, values = make_batch(g, rows, batch, max_len, full)
        psw = torch.rand(values.numel(), generator=g) * 2 - 0.5 if weights else None
        i64(p + "offsets", offsets)
        i64(p + "values", values)
        if weights:
            f32(p + "weights", psw)
        out = emb(values, offsets, per_sample_weights=psw)
        f32(p + "out", out)
        step_lr = lr * (0.5 ** k)  # a schedule: the learning rate changes every step
        f32(p + "lr", [step_lr])
        grad = torch.randn(batch, dim, generator=g)
        f32(p + "grad", grad)
        if opt == "none":
            f32(p + "w", emb.weight)
            continue
        emb.zero_grad(set_to_none=True)
        (out * grad).sum().backward()
        if max_norm > 0:
            clip_rows(emb.weight, max_norm)
        if optimizer is not None:
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            optimizer.step()
        else:
            rowwise_adagrad_step(emb.weight, state, emb.weight.grad, step_lr, eps)
        f32(p + "w", emb.weight)
    if opt in ("adagrad",):
        f32(name + "/state", optimizer.state[emb.weight]["sum"])
    elif opt in ("adam", "adamw"):
        st = optimizer.state[emb.weight]
        f32(name + "/state", torch.cat([st["exp_avg"], st["exp_avg_sq"]], dim=1))
    elif opt == "rowwise_adagrad":
        f32(name + "/state", state.reshape(rows, 1))
    config = [rows, dim, 0 if pooling == "sum" else 1, OPT[opt], steps, batch, eps, betas[0], betas[1],
              weight_decay, max_norm, init_acc, 1 if weights else 0]
    f32(name + "/config", config)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "embedding.bin")
    cases = [
        dict(name="fwd_sum", rows=50, dim=16, batch=8, steps=1),
        dict(name="fwd_mean", rows=50, dim=16, batch=8, steps=1, pooling="mean"),
        dict(name="fwd_weighted", rows=50, dim=16, batch=8, steps=1, weights=True),
        dict(name="fwd_odd", rows=30, dim=13, batch=7, steps=1, max_len=9),
        dict(name="sgd_sparse", rows=40, dim=8, batch=6, steps=3, opt="sgd", lr=0.5),
        dict(name="sgd_weighted", rows=40, dim=8, batch=6, steps=3, opt="sgd", lr=0.5, weights=True),
        dict(name="sgd_mean", rows=40, dim=24, batch=6, steps=3, opt="sgd", lr=0.5, pooling="mean"),
        dict(name="adagrad_sparse", rows=40, dim=16, batch=6, steps=3, opt="adagrad", lr=0.1),
        dict(name="adagrad_init", rows=40, dim=16, batch=6, steps=3, opt="adagrad", lr=0.1,
             init_acc=0.1, pooling="mean"),
        dict(name="rowwise_adagrad", rows=40, dim=16, batch=6, steps=3, opt="rowwise_adagrad", lr=0.1),
        dict(name="sparse_adam", rows=40, dim=16, batch=6, steps=4, opt="adam", lr=0.01),
        dict(name="adam_dense_wd", rows=12, dim=16, batch=6, steps=3, opt="adam", lr=0.01,
             sparse=False, full=True, weight_decay=0.01),
        dict(name="adamw_dense", rows=12, dim=16, batch=6, steps=3, opt="adamw", lr=0.01,
             sparse=False, full=True, weight_decay=0.1),
        dict(name="sgd_wd_dense", rows=12, dim=8, batch=6, steps=3, opt="sgd", lr=0.5,
             sparse=False, full=True, weight_decay=0.05),
        dict(name="adagrad_clip", rows=40, dim=16, batch=6, steps=3, opt="adagrad", lr=0.1,
             max_norm=0.5),
    ]
    for i, c in enumerate(cases):
        case(i, **c)
    f32("meta/torch_version", [float(x) if x.isdigit() else 0.0
                                for x in torch.__version__.split("+")[0].split(".")[:2]])
    fixture.write(out, arrays)
    print("wrote %s: %d arrays, %d cases, torch %s" % (out, len(arrays), len(cases), torch.__version__))


if __name__ == "__main__":
    main()
