"""Shared helpers for the peers that bench/compare races ember against.

A peer is bench/peers/SUITE.py: it runs the same cases as `ember bench SUITE`,
times them the same way and prints the same JSON lines, so that the ratio
bench/compare prints compares the two implementations and nothing else. The
rules that make that true live here, once:

  * timing  -- best_seconds(): 2 warm-up calls, then 5 repeats; each repeat
    loops the op until min_time has passed and gives seconds per call; the
    best (minimum) repeat counts. min_time is 0.05 s with --quick, 0.25 s
    otherwise, as in ember's bench/bench.c (--tiny: 0.002 s, 2 repeats;
    for tests of the scripts, not for numbers).
  * threads -- tune_threads(): a peer runs at its best thread count, found by
    trying 1, 2, 4, ... up to the CPU count on the first case.
  * output  -- emit(): one JSON object per line on stdout; logs go to stderr.
  * honesty -- torch_impl() / dist_version(): every line names the library and
    version that actually ran, including the BLAS that torch loaded.

Only the standard library is imported at module level, so peers that do not
use torch (pyarrow, pandas) can import this too.
"""

import argparse
import ctypes
import json
import math
import os
import re
import sys
import time

WARMUP = 2
REPEATS = 5
MIN_TIME_QUICK = 0.05
MIN_TIME_FULL = 0.25
MIN_TIME_TINY = 0.002  # --tiny: smallest sizes, 2 repeats; for tests, not for numbers
REPEATS_TINY = 2


def log(msg):
    print("%s: %s" % (os.path.basename(sys.argv[0]) or "peer", msg), file=sys.stderr, flush=True)


def parse_args(description, argv=None):
    """--quick and --json as `ember bench` takes them; --threads N skips tuning."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="fewer cases, shorter timing loops")
    ap.add_argument("--json", action="store_true",
                    help="JSON lines on stdout (always on; accepted for symmetry with ember)")
    ap.add_argument("--tiny", action="store_true",
                    help="smallest cases and loops, as `ember bench --tiny`: for tests, not numbers")
    ap.add_argument("--device", default="cpu",
                    help="cpu, or cuda for the suites that take it (as `ember bench --device cuda`)")
    ap.add_argument("--threads", type=int, default=0,
                    help="run at this thread count instead of tuning it on the first case")
    args = ap.parse_args(argv)
    if args.tiny:
        args.quick = True
    args.min_time = MIN_TIME_TINY if args.tiny else MIN_TIME_QUICK if args.quick else MIN_TIME_FULL
    args.repeats = REPEATS_TINY if args.tiny else REPEATS
    return args


def best_seconds(fn, min_time, warmup=WARMUP, repeats=REPEATS, sync=None):
    """Best seconds per call of fn() over `repeats` repeats of >= min_time each.

    sync, when given, is called before the clock is read (for asynchronous
    devices); on the CPU it is not needed.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    best = math.inf
    for _ in range(repeats):
        calls = 0
        t0 = time.perf_counter()
        while True:
            fn()
            calls += 1
            if sync:
                sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        best = min(best, elapsed / calls)
    return best


def thread_candidates(ncpu=None):
    """1, 2, 4, ... up to the usable CPU count, and that count itself."""
    if ncpu is None:
        try:
            ncpu = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            ncpu = os.cpu_count() or 1
    ncpu = max(1, ncpu)
    out, t = [], 1
    while t < ncpu:
        out.append(t)
        t *= 2
    out.append(ncpu)
    return out


def tune_threads(set_threads, measure, higher_is_better=True, candidates=None):
    """Try each thread count, return (best_count, {count: value}).

    set_threads(n) switches the library to n threads; measure() runs the first
    case and returns its metric. Ties go to the fewer threads.
    """
    results = {}
    best_n, best_v = None, None
    for n in candidates or thread_candidates():
        set_threads(n)
        v = measure()
        results[n] = v
        log("threads=%d: %.6g" % (n, v))
        if best_v is None or (v > best_v if higher_is_better else v < best_v):
            best_n, best_v = n, v
    set_threads(best_n)
    log("best thread count: %d" % best_n)
    return best_n, results


def emit(suite, case, metric, value, unit, params):
    """One result line on stdout, in ember's `bench --json` form."""
    line = {"suite": suite, "case": case, "metric": metric,
            "value": float("%.6g" % value), "unit": unit, "params": params}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def dist_version(dist, module=None):
    """Installed version of a distribution, or the module's __version__, or None."""
    try:
        import importlib.metadata as md
        return md.version(dist)
    except Exception:
        pass
    if module is not None:
        return getattr(module, "__version__", None)
    return None


def loaded_libraries(pattern):
    """Real paths of shared objects mapped into this process that match pattern."""
    rx = re.compile(pattern)
    seen = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if rx.search(os.path.basename(path)):
                        real = os.path.realpath(path)
                        if real not in seen:
                            seen.append(real)
    except OSError:
        pass
    return seen


def openblas_config(path):
    """OpenBLAS's own description ('OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell ...'), or None."""
    try:
        lib = ctypes.CDLL(path)
        fn = lib.openblas_get_config
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    try:
        return fn().decode(errors="replace").strip()
    except Exception:
        return None


def blas_in_process():
    """Which BLAS this process has loaded, in words, or None if none is mapped."""
    names = []
    for path in loaded_libraries(r"(blas|mkl|blis|flexiblas)"):
        cfg = openblas_config(path)
        if cfg:
            names.append(cfg)
        else:
            m = re.search(r"mkl_(core|rt|intel)", os.path.basename(path))
            if m:
                names.append("MKL " + os.path.basename(path))
            else:
                names.append(os.path.basename(path))
    # Keep one entry per library, most informative first.
    out = []
    for n in names:
        if n not in out:
            out.append(n)
    return "; ".join(out) if out else None


def openblas_threads(n=None):
    """Set (when n is given) and return the thread count of every OpenBLAS loaded.

    OpenBLAS's pthread build keeps its own pool, sized to all cores, whatever
    torch.set_num_threads says (torch only forwards the count to OpenMP and
    MKL); Debian's python3-torch runs its GEMMs there. Returns None when no
    OpenBLAS is loaded.
    """
    got = None
    for path in loaded_libraries(r"(blas)"):
        try:
            lib = ctypes.CDLL(path)
            if n is not None:
                lib.openblas_set_num_threads(ctypes.c_int(n))
            got = lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            continue
    return got


def torch_set_threads(torch, n):
    """Run torch's CPU ops, and the BLAS under them, on n threads."""
    torch.set_num_threads(n)
    openblas_threads(n)


def torch_threads(torch):
    """The thread count torch's dense math really uses (OpenBLAS's when loaded)."""
    ob = openblas_threads()
    return ob if ob is not None else torch.get_num_threads()


def torch_backends(torch):
    """Short list of what torch's CPU build uses for dense math, from torch itself."""
    cfg = torch.__config__.show()
    parts = []
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    blas_info = m.group(1) if m else None
    mkl = re.search(r"(?:Intel\(R\) )?(?:oneAPI )?Math Kernel Library Version ([0-9][^\s-]*)", cfg)
    if mkl:
        parts.append("MKL " + mkl.group(1))
    elif blas_info:
        parts.append("BLAS_INFO=" + blas_info)
    dnn = re.search(r"(?:oneDNN|MKL-DNN) (v[0-9][^\s]*)", cfg)
    if dnn:
        parts.append("oneDNN " + dnn.group(1))
    cap = re.search(r"CPU capability usage: (\S+)", cfg)
    if cap:
        parts.append(cap.group(1))
    return parts


def torch_impl(torch, threads):
    """'torch 2.9.1 (MKL 2025.2, oneDNN v3.7, AVX2, loaded: ..., threads=2)'.

    Call it after the first op ran, so that the BLAS torch uses is mapped.
    """
    parts = torch_backends(torch)
    loaded = blas_in_process()
    if loaded and not any(p.startswith("MKL") for p in parts):
        parts.append("BLAS " + loaded)
    parts.append("threads=%d" % threads)
    return "torch %s (%s)" % (torch.__version__, ", ".join(parts))
