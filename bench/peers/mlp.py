#!/usr/bin/env python3
"""Peer for `ember bench mlp`: one training step of an MLP in PyTorch.

x (batch, in) f32 uniform in [-1, 1); Linear layers with ReLU between them (none
after the last); loss = mean of the output; loss.backward(); Adam(lr=1e-3).step().
Same cases, timing and JSON lines as ember's mlp suite (bench/suite_mlp.c):
samples/s = batch / seconds per step; gflops counts the forward and backward GEMMs
(2*batch*in*out per layer forward, twice that backward, the first layer's input
gradient excluded) as ember's meta graph does.

    bench/peers/mlp.py [--quick] [--tiny] [--json] [--threads N]
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SUITE = "mlp"
# (batch, dims); the order matches bench/suite_mlp.c.
CASES_TINY = [(64, (32, 16, 8))]
CASES_QUICK = [(2048, (512, 256, 128)), (2048, (1024, 1024, 1024))]
CASES_FULL = CASES_QUICK


def case_name(batch, dims):
    return "b%d_%s" % (batch, "-".join(str(d) for d in dims))


def gemm_flops(batch, dims):
    f = 0
    for i in range(len(dims) - 1):
        mm = 2.0 * batch * dims[i] * dims[i + 1]
        f += mm * (3 if i > 0 else 2)  # forward, weight grad, input grad (not for the first layer)
    return f


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    try:
        import torch
    except ImportError as e:
        common.log("cannot import torch (%s); run bench/peers/setup" % e)
        return 1
    torch.manual_seed(0)
    cases = CASES_TINY if args.tiny else CASES_QUICK if args.quick else CASES_FULL

    def make(batch, dims):
        layers = []
        for i in range(len(dims) - 1):
            layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.rand(batch, dims[0]) * 2 - 1  # (batch, in)

        def step():
            opt.zero_grad(set_to_none=False)
            loss = model(x).mean()
            loss.backward()
            opt.step()
        return step

    def seconds(case, fn):
        return common.best_seconds(fn, args.min_time, repeats=args.repeats)

    if args.threads > 0:
        threads = args.threads
        common.torch_set_threads(torch, threads)
    else:
        first = make(*cases[0])
        threads, _ = common.tune_threads(
            lambda t: common.torch_set_threads(torch, t), lambda: 1.0 / seconds(cases[0], first))
        del first

    impl = None
    for batch, dims in cases:
        fn = make(batch, dims)
        sec = seconds((batch, dims), fn)
        if impl is None:
            threads = common.torch_threads(torch)
            impl = common.torch_impl(torch, threads)
        params = {"batch": batch, "dims": "-".join(str(d) for d in dims), "optimizer": "adam",
                  "threads": threads, "impl": impl}
        common.emit(SUITE, case_name(batch, dims), "samples", batch / sec, "samples/s", params)
        common.emit(SUITE, case_name(batch, dims), "gflops", gemm_flops(batch, dims) / sec / 1e9, "GFLOP/s", params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
