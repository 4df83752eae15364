#!/usr/bin/env python3
"""Peer for `ember bench gemm`: C = op(A) @ op(B) in PyTorch, f32, row-major.

A is (m, k) (stored (k, m) and transposed in the _tn cases), B is (k, n) (stored
(n, k) and transposed in the _nt cases), inputs uniform in [-1, 1), C
preallocated and written by torch.mm(op(a), op(b), out=c). Same cases, timing and JSON lines as ember's
gemm suite (see common.py); gflops = 2*m*n*k / seconds / 1e9. The thread count
is tuned on the first case and kept for all of them.

    bench/peers/gemm.py [--quick] [--tiny] [--json] [--threads N]
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SUITE = "gemm"
# (m, n, k, trans_a, trans_b); the order matches ember's suite (bench/suite_gemm.c).
# The last three are one 1024 x 1024 layer's training step at batch 32.
SHORT = [(32, 1024, 1024, 0, 0), (32, 1024, 1024, 0, 1), (1024, 1024, 32, 1, 0)]
CASES_TINY = [(64, 64, 64, 0, 0), (128, 32, 64, 0, 0), (8, 256, 256, 0, 1)]
CASES_QUICK = [(512, 512, 512, 0, 0), (1024, 1024, 1024, 0, 0), (2048, 256, 512, 0, 0)] + SHORT
CASES_FULL = [(256, 256, 256, 0, 0), (512, 512, 512, 0, 0), (1024, 1024, 1024, 0, 0),
              (2048, 2048, 2048, 0, 0), (2048, 256, 512, 0, 0), (2048, 1024, 1024, 0, 0)] + SHORT


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    try:
        import torch
    except ImportError as e:
        common.log("cannot import torch (%s); run bench/peers/setup" % e)
        return 1

    torch.manual_seed(0)
    cases = CASES_TINY if args.tiny else CASES_QUICK if args.quick else CASES_FULL

    def make(m, n, k, ta, tb):
        a = torch.rand(*((k, m) if ta else (m, k)), dtype=torch.float32) * 2 - 1
        b = torch.rand(*((n, k) if tb else (k, n)), dtype=torch.float32) * 2 - 1
        c = torch.empty(m, n, dtype=torch.float32)  # (m, n)
        opa, opb = (a.t() if ta else a), (b.t() if tb else b)
        return lambda: torch.mm(opa, opb, out=c)

    def gflops(case, fn):
        m, n, k = case[:3]
        return 2.0 * m * n * k / common.best_seconds(fn, args.min_time, repeats=args.repeats) / 1e9

    if args.threads > 0:
        threads = args.threads
        common.torch_set_threads(torch, threads)
    else:
        first = make(*cases[0])
        threads, _ = common.tune_threads(
            lambda t: common.torch_set_threads(torch, t), lambda: gflops(cases[0], first))
        del first

    impl = None
    for case in cases:
        m, n, k, ta, tb = case
        fn = make(*case)
        value = gflops(case, fn)
        if impl is None:  # after the first mm, so the BLAS torch uses is loaded
            threads = common.torch_threads(torch)  # what really ran
            impl = common.torch_impl(torch, threads)
        name = "m%d_n%d_k%d%s" % (m, n, k, "_tn" if ta else "_nt" if tb else "")
        common.emit(SUITE, name, "gflops", value, "GFLOP/s",
                    {"m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb, "dtype": "f32",
                     "threads": threads, "impl": impl})
    return 0


if __name__ == "__main__":
    sys.exit(main())
