#!/usr/bin/python3
"""Reference values for tests/test_graph_ref.c, computed by PyTorch.

Run with Debian's python3-torch: /usr/bin/python3 tests/ref/gen_graph.py
Writes tests/ref/graph_ops.bin: for each op case "<case>/<tensor>": the inputs, the
output, and the gradient of loss = sum(output * R) with respect to each float input;
and tests/ref/graph_mlp.bin: a 3-layer MLP (13-64-32-1, ReLU, BCE-with-logits)
trained 5 steps with Adam (lr 1e-2, weight decay 0) from the stored initial weights,
with the loss of each step and the final weights.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

torch.manual_seed(1234)
HERE = os.path.dirname(os.path.abspath(__file__))


def rnd(*shape):
    return (torch.rand(*shape, dtype=torch.float32) * 2 - 1).requires_grad_(True)


cases = []


def case(name, fn, inputs, extra=()):
    """fn(*inputs) -> output; inputs requiring grad get gradients recorded."""
    out = fn(*inputs)
    r = torch.rand(out.shape, dtype=torch.float32) * 2 - 1
    loss = (out * r).sum() if out.dim() > 0 else out * r
    floats = [t for t in inputs if t.dtype == torch.float32 and t.requires_grad]
    grads = torch.autograd.grad(loss, floats) if floats else []
    items = [(f"{name}/in{i}", t) for i, t in enumerate(inputs)]
    items += [(f"{name}/R", r), (f"{name}/out", out)]
    gi = 0
    for i, t in enumerate(inputs):
        if t.dtype == torch.float32 and t.requires_grad:
            items.append((f"{name}/grad{i}", grads[gi]))
            gi += 1
    items += list(extra)
    cases.extend(items)


case("matmul", lambda a, b: a @ b, [rnd(5, 7), rnd(7, 3)])
case("matmul_tn", lambda a, b: a.t() @ b, [rnd(7, 5), rnd(7, 3)])
case("matmul_nt", lambda a, b: a @ b.t(), [rnd(5, 7), rnd(3, 7)])
case("matmul_batched_shared", lambda a, b: a @ b, [rnd(2, 5, 7), rnd(7, 3)])
case("add_bias", lambda a, b: a + b, [rnd(4, 6), rnd(6)])
case("mul", lambda a, b: a * b, [rnd(4, 6), rnd(4, 6)])
case("relu", torch.relu, [rnd(4, 6)])
case("sigmoid", torch.sigmoid, [rnd(4, 6)])
case("tanh", torch.tanh, [rnd(4, 6)])
case("gelu", torch.nn.functional.gelu, [rnd(4, 6)])
case("layernorm", lambda x, g, b: torch.nn.functional.layer_norm(x, (8,), g, b, 1e-5), [rnd(5, 8), rnd(8), rnd(8)])
case("softmax", lambda x: torch.softmax(x, -1), [rnd(4, 9)])
case("log_softmax", lambda x: torch.log_softmax(x, -1), [rnd(4, 9)])


def attention(q, k, v):
    t = q.shape[1]
    s = q @ k.transpose(1, 2) / math.sqrt(q.shape[2])
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    return torch.softmax(s.masked_fill(mask, float("-inf")), -1) @ v


case("attention", attention, [rnd(3, 5, 4), rnd(3, 5, 4), rnd(3, 5, 4)])
case("concat", lambda a, b: torch.cat([a, b], 1), [rnd(3, 2), rnd(3, 4)])
case("slice", lambda a: a[:, 1:4].contiguous(), [rnd(3, 6)])
case("permute", lambda a: a.permute(2, 0, 1).contiguous(), [rnd(2, 3, 4)])
idx = torch.tensor([3, 0, 3, 5, 1, 1, 2], dtype=torch.int64)
case("gather_rows", lambda t, i: torch.nn.functional.embedding(i, t), [rnd(6, 4), idx])


def interaction(t):
    z = t @ t.transpose(1, 2)
    n = t.shape[1]
    li, lj = torch.tril_indices(n, n, -1)
    return z[:, li, lj]


case("interaction", interaction, [rnd(3, 5, 4)])
case("cross", lambda x0, w, b: x0 * (x0 @ w + b) + x0, [rnd(4, 6), rnd(6, 6), rnd(6)])
case("sum", lambda a: a.sum(), [rnd(3, 4)])
case("mean_last", lambda a: a.mean(-1), [rnd(3, 4)])
labels = torch.tensor([[0.0], [1.0], [1.0], [0.0], [0.25]])
case("bce", lambda x, y: torch.nn.functional.binary_cross_entropy_with_logits(x, y), [rnd(5, 1), labels])
cls = torch.tensor([2, 0, 3, 3, 1], dtype=torch.int32)
case("cross_entropy", lambda x, y: torch.nn.functional.cross_entropy(x, y.long()), [rnd(5, 4), cls])


def interaction_self(t):  # the reference DLRM's arch_interaction_itself: the diagonal too
    z = t @ t.transpose(1, 2)
    n = t.shape[1]
    li = torch.tensor([i for i in range(n) for j in range(i + 1)])
    lj = torch.tensor([j for i in range(n) for j in range(i + 1)])
    return z[:, li, lj]


# appended last: the cases above keep the random values they were written with
case("interaction_self", interaction_self, [rnd(3, 5, 4)])

fixture.write(os.path.join(HERE, "graph_ops.bin"), cases)

# ---- MLP + Adam, 5 steps ----
torch.manual_seed(99)
B = 64
x = torch.randn(B, 13)
y = (torch.rand(B, 1) < 0.3).float()
layers = [torch.nn.Linear(13, 64), torch.nn.Linear(64, 32), torch.nn.Linear(32, 1)]
items = [("x", x), ("y", y)]
for i, l in enumerate(layers):
    # ember stores weights as (in, out) for x @ w; torch as (out, in)
    items += [(f"w{i}", l.weight.detach().t().clone()), (f"b{i}", l.bias.detach().clone())]
params = [p for l in layers for p in (l.weight, l.bias)]
opt = torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
for step in range(5):
    opt.zero_grad()
    h = torch.relu(layers[0](x))
    h = torch.relu(layers[1](h))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(layers[2](h), y)
    loss.backward()
    if step == 0:
        for i, l in enumerate(layers):
            items += [(f"grad_w{i}", l.weight.grad.t().clone()), (f"grad_b{i}", l.bias.grad.clone())]
    opt.step()
    items.append((f"loss{step}", loss.detach().reshape(())))
for i, l in enumerate(layers):
    items += [(f"final_w{i}", l.weight.detach().t().clone()), (f"final_b{i}", l.bias.detach().clone())]
fixture.write(os.path.join(HERE, "graph_mlp.bin"), items)
print(f"wrote {len(cases)} op tensors and {len(items)} MLP tensors (torch {torch.__version__})")
