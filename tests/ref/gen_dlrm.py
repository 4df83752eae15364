#!/usr/bin/python3
"""Reference training run of a small DLRM in PyTorch, for tests/test_dlrm.c.

Run with Debian's python3-torch: /usr/bin/python3 tests/ref/gen_dlrm.py
Writes tests/ref/dlrm.bin: the initial weights (dense layers as (in, out) for
x @ W, embedding tables), 20 batches (dense, per-table ids and offsets, labels), and
the loss of every step for SGD and for Adagrad (lr 0.1 for dense and sparse
parameters alike; nn.EmbeddingBag(mode="sum", sparse=True)).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ND, ROWS, D, BOTTOM, TOP, B, STEPS, LR = 4, [10, 7, 5], 4, [8, 4], [8, 1], 8, 20, 0.1


class DLRM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        dims = [ND] + BOTTOM
        self.bottom = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.embs = torch.nn.ModuleList(torch.nn.EmbeddingBag(r, D, mode="sum", sparse=True, include_last_offset=True) for r in ROWS)
        for e, r in zip(self.embs, ROWS):
            torch.nn.init.uniform_(e.weight, -1 / r ** 0.5, 1 / r ** 0.5)
        n = len(ROWS) + 1
        tdims = [D + n * (n - 1) // 2] + TOP
        self.top = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(tdims[:-1], tdims[1:]))

    def forward(self, dense, ids, offs):
        z = dense
        for l in self.bottom:
            z = torch.relu(l(z))
        es = [e(i, o) for e, i, o in zip(self.embs, ids, offs)]
        t = torch.stack([z] + es, dim=1)  # (B, T + 1, D)
        zz = t @ t.transpose(1, 2)
        n = t.shape[1]
        li, lj = torch.tril_indices(n, n, -1)
        h = torch.cat([z, zz[:, li, lj]], dim=1)
        for k, l in enumerate(self.top):
            h = l(h)
            if k < len(self.top) - 1:
                h = torch.relu(h)
        return h


torch.manual_seed(2024)
model = DLRM()
items = []
for i, l in enumerate(model.bottom):
    items += [(f"bottom.{i}.weight", l.weight.detach().t().clone()), (f"bottom.{i}.bias", l.bias.detach().clone())]
for i, l in enumerate(model.top):
    items += [(f"top.{i}.weight", l.weight.detach().t().clone()), (f"top.{i}.bias", l.bias.detach().clone())]
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

for name, make in [("sgd", lambda p: torch.optim.SGD(p, lr=LR)), ("adagrad", lambda p: torch.optim.Adagrad(p, lr=LR))]:
    model.load_state_dict(init)
    opt = make(list(model.parameters()))
    losses = []
    for dense, ids, offs, labels in batches:
        opt.zero_grad()
        logit = model(dense, ids, offs).reshape(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, labels)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    items.append((f"{name}.losses", torch.stack(losses)))
    for t, e in enumerate(model.embs):
        items.append((f"{name}.final_table{t}", e.weight.detach().clone()))

fixture.write(os.path.join(HERE, "dlrm.bin"), items)
print(f"wrote {len(items)} tensors (torch {torch.__version__})")
