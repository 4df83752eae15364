#!/usr/bin/python3
"""Reference training runs of small DLRMs in PyTorch, for tests/test_dlrm.c.

Run with Debian's python3-torch: /usr/bin/python3 tests/ref/gen_dlrm.py
Writes tests/ref/dlrm.bin: the initial weights (dense layers as (in, out) for
x @ W, embedding tables), 20 batches (dense, per-table ids and offsets, labels), and
the loss of every step for SGD and for Adagrad (lr 0.1 for dense and sparse
parameters alike; nn.EmbeddingBag(mode="sum", sparse=True)), with the dot interaction.

Then variants on the same batches, each from its own initial weights, stored under
"<variant>/" ("<variant>/bottom.0.weight", "<variant>/table0", "<variant>/sgd.losses",
"<variant>/sgd.final_table0", ...):
  dot_self  the dot interaction with the diagonal (arch_interaction_itself), SGD and Adagrad
  dcn       DCNv2, 3 full-rank cross layers, table dims 2, 4, 3, bottom MLP ending with 3, Adagrad
  dcn_lr    DCNv2, 2 low-rank (rank 3) cross layers, the same dims, SGD
The cross layers are written as torchrec's CrossNet / LowRankCrossNet compute them
(kernels on column vectors); ember's parameters are their transposes:
"dcn.<l>.weight" = kernels[l].T, "dcn.<l>.v" = V_kernels[l].T, "dcn.<l>.u" = W_kernels[l].T.
The existing entries come first and draw the same random numbers as before the variants
were added, so they keep their values.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ND, ROWS, D, BOTTOM, TOP, B, STEPS, LR = 4, [10, 7, 5], 4, [8, 4], [8, 1], 8, 20, 0.1


class DLRM(torch.nn.Module):
    def __init__(self, interaction="dot", dims=None, bottom=BOTTOM, dcn_layers=0, dcn_rank=0):
        super().__init__()
        dims = dims or [D] * len(ROWS)
        self.interaction, self.rank = interaction, dcn_rank
        bdims = [ND] + bottom
        self.bottom = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(bdims[:-1], bdims[1:]))
        self.embs = torch.nn.ModuleList(torch.nn.EmbeddingBag(r, d, mode="sum", sparse=True, include_last_offset=True) for r, d in zip(ROWS, dims))
        for e, r in zip(self.embs, ROWS):
            torch.nn.init.uniform_(e.weight, -1 / r ** 0.5, 1 / r ** 0.5)
        n = len(ROWS) + 1
        if interaction == "dcn":
            N = bottom[-1] + sum(dims)
            xavier = lambda *shape: torch.nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(*shape)))
            bias = lambda: torch.nn.Parameter(torch.empty(N).uniform_(-0.1, 0.1))  # torchrec: zeros; nonzero tests more
            if dcn_rank:  # torchrec LowRankCrossNet
                self.W_kernels = torch.nn.ParameterList(xavier(N, dcn_rank) for _ in range(dcn_layers))
                self.V_kernels = torch.nn.ParameterList(xavier(dcn_rank, N) for _ in range(dcn_layers))
            else:  # torchrec CrossNet
                self.kernels = torch.nn.ParameterList(xavier(N, N) for _ in range(dcn_layers))
            self.bias = torch.nn.ParameterList(bias() for _ in range(dcn_layers))
            tdims = [N] + TOP
        else:
            pairs = n * (n + 1) // 2 if interaction == "dot_self" else n * (n - 1) // 2
            tdims = [D + pairs] + TOP
        self.top = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(tdims[:-1], tdims[1:]))

    def forward(self, dense, ids, offs):
        z = dense
        for l in self.bottom:
            z = torch.relu(l(z))
        es = [e(i, o) for e, i, o in zip(self.embs, ids, offs)]
        if self.interaction == "dcn":
            x0 = torch.cat([z] + es, dim=1)  # (B, N)
            xl = x0
            for k in range(len(self.bias)):
                if self.rank:  # LowRankCrossNet.forward
                    xw = torch.nn.functional.linear(torch.nn.functional.linear(xl, self.V_kernels[k]), self.W_kernels[k])
                    xl = x0 * (xw + self.bias[k]) + xl
                else:  # CrossNet.forward, on column vectors
                    xw = torch.matmul(self.kernels[k], xl.unsqueeze(2)).squeeze(2)
                    xl = x0 * (xw + self.bias[k]) + xl
            h = xl
        else:
            t = torch.stack([z] + es, dim=1)  # (B, T + 1, D)
            zz = t @ t.transpose(1, 2)
            n = t.shape[1]
            if self.interaction == "dot_self":  # the reference DLRM's arch_interaction_itself
                li = torch.tensor([i for i in range(n) for j in range(i + 1)])
                lj = torch.tensor([j for i in range(n) for j in range(i + 1)])
            else:
                li, lj = torch.tril_indices(n, n, -1)
            h = torch.cat([z, zz[:, li, lj]], dim=1)
        for k, l in enumerate(self.top):
            h = l(h)
            if k < len(self.top) - 1:
                h = torch.relu(h)
        return h


def weights(model, prefix=""):
    """The initial weights under ember's names, (in, out) layout."""
    out = []
    for i, l in enumerate(model.bottom):
        out += [(f"{prefix}bottom.{i}.weight", l.weight.detach().t().clone()), (f"{prefix}bottom.{i}.bias", l.bias.detach().clone())]
    if model.interaction == "dcn":
        for k in range(len(model.bias)):
            if model.rank:
                out += [(f"{prefix}dcn.{k}.v", model.V_kernels[k].detach().t().clone()),
                        (f"{prefix}dcn.{k}.u", model.W_kernels[k].detach().t().clone())]
            else:
                out.append((f"{prefix}dcn.{k}.weight", model.kernels[k].detach().t().clone()))
            out.append((f"{prefix}dcn.{k}.bias", model.bias[k].detach().clone()))
    for i, l in enumerate(model.top):
        out += [(f"{prefix}top.{i}.weight", l.weight.detach().t().clone()), (f"{prefix}top.{i}.bias", l.bias.detach().clone())]
    return out


OPTIMS = {"sgd": lambda p: torch.optim.SGD(p, lr=LR), "adagrad": lambda p: torch.optim.Adagrad(p, lr=LR)}


def train(model, init, name, prefix=""):
    model.load_state_dict(init)
    opt = OPTIMS[name](list(model.parameters()))
    losses = []
    for dense, ids, offs, labels in batches:
        opt.zero_grad()
        logit = model(dense, ids, offs).reshape(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, labels)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    out = [(f"{prefix}{name}.losses", torch.stack(losses))]
    for t, e in enumerate(model.embs):
        out.append((f"{prefix}{name}.final_table{t}", e.weight.detach().clone()))
    return out


torch.manual_seed(2024)
model = DLRM()
items = weights(model)
for t, e in enumerate(model.embs):
    items.append((f"table{t}", e.weight.detach().clone()))
init = {k: v.clone() for k, v in model.state_dict().items()}

batches = []
for s in range(STEPS):
    dense = torch.rand(B, ND) * 2
    ids, offs = [], []
    for r in ROWS:
        lens = torch.randint(0, 4, (B,))  # empty bags included
        off = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lens, 0)])
        ids.append(torch.randint(0, r, (int(off[-1]),), dtype=torch.int64))
        offs.append(off)
    labels = (torch.rand(B) < 0.4).float()
    batches.append((dense, ids, offs, labels))
    items += [(f"b{s}.dense", dense), (f"b{s}.labels", labels)]
    for t in range(len(ROWS)):
        items += [(f"b{s}.ids{t}", ids[t]), (f"b{s}.offsets{t}", offs[t])]

for name in ["sgd", "adagrad"]:
    items += train(model, init, name)

VARIANTS = [
    ("dot_self", 7, dict(interaction="dot_self"), ["sgd", "adagrad"]),
    ("dcn", 8, dict(interaction="dcn", dims=[2, 4, 3], bottom=[8, 3], dcn_layers=3), ["adagrad"]),
    ("dcn_lr", 9, dict(interaction="dcn", dims=[2, 4, 3], bottom=[8, 3], dcn_layers=2, dcn_rank=3), ["sgd"]),
]
for variant, seed, kw, optims in VARIANTS:
    torch.manual_seed(seed)
    model = DLRM(**kw)
    prefix = variant + "/"
    items += weights(model, prefix)
    for t, e in enumerate(model.embs):
        items.append((f"{prefix}table{t}", e.weight.detach().clone()))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    for name in optims:
        items += train(model, init, name, prefix)

fixture.write(os.path.join(HERE, "dlrm.bin"), items)
print(f"wrote {len(items)} tensors (torch {torch.__version__})")
