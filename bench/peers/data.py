#!/usr/bin/env python3
"""Peer for `ember bench data`: Criteo TSV to model-ready arrays in Python.

Same file as ember's suite: tests/data/criteo_kaggle_head900.tsv plus '\\n',
repeated 1400 times (--quick 460, --tiny 4) into $EMBER_BENCH_DIR (default
$TMPDIR or /tmp, subdirectory ember-bench-data), made here if missing, byte for
byte as ember makes it. Same timing and JSON lines as ember (common.py).

  tsv_to_arrays  the arrays ember's reader returns: dense f32 (N, 13) =
                 log1p(max(x, 0)) with missing = 0, ids uint32 (N, 26) from the
                 hex strings with missing = 0, labels int32 (N). Two pipelines
                 are tried once each and the faster is timed:
                   pyarrow  pyarrow.csv.read_csv (multi-threaded, typed
                            columns) + numpy: log1p, and the hex strings
                            decoded from the Arrow buffers in bulk;
                   pandas   pandas.read_csv (C engine) + the same numpy steps
                            on its object columns.
  tsv_parse      pyarrow.csv.read_csv alone to typed columns (ids stay strings).

The arrays are checked against known values of the sample's first row, so a
fast wrong pipeline cannot win. Metric "TSV rows/s", as ember's.

    bench/peers/data.py [--quick] [--tiny] [--json] [--threads N]
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SUITE = "data"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = "criteo_kaggle_head900.tsv"
SAMPLE_ROWS = 900
NAMES = ["label"] + ["I%d" % i for i in range(1, 14)] + ["C%d" % i for i in range(1, 27)]


def find_sample():
    env = os.environ.get("EMBER_TEST_DATA")
    for d in ([env] if env else []) + [os.path.join(ROOT, "tests", "data"), os.path.join("tests", "data")]:
        p = os.path.join(d, SAMPLE)
        if os.path.isfile(p):
            return p
    raise SystemExit("data.py: cannot find %s (set EMBER_TEST_DATA to the project's tests/data)" % SAMPLE)


def repeated_file(reps):
    """The same file ember's suite makes (bench/suite_data.c)."""
    d = os.environ.get("EMBER_BENCH_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "ember-bench-data")
    path = os.path.join(d, "criteo_x%d.tsv" % reps)
    with open(find_sample(), "rb") as f:
        unit = f.read() + b"\n"
    if os.path.isfile(path) and os.path.getsize(path) == len(unit) * reps:
        return path
    os.makedirs(d, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        for _ in range(reps):
            f.write(unit)
    os.replace(tmp, path)
    return path


def hex_from_arrow(col, np, pa):
    """uint32 ids from an Arrow string column of hex ids (1..8 digits, "" or null = 0).

    Works on the raw buffers: for each string, the 8 bytes that end where it ends
    are gathered (bytes before its start count as '0'), and each byte's nibble
    value is (b & 15) + 9 * (b >> 6), which maps '0'-'9', 'a'-'f', 'A'-'F'.
    """
    out = []
    for chunk in col.chunks:
        if chunk.type != pa.string():
            chunk = chunk.cast(pa.string())
        n = len(chunk)
        bufs = chunk.buffers()
        offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=chunk.offset * 4).astype(np.int64)
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        padded = np.concatenate([np.full(8, ord("0"), np.uint8), data])
        start, end = offsets[:-1] + 8, offsets[1:] + 8
        idx = end[:, None] - 8 + np.arange(8)[None, :]
        b = padded[idx]
        b = np.where(idx >= start[:, None], b, ord("0")).astype(np.uint32)
        nib = (b & 15) + 9 * (b >> 6)
        v = np.zeros(n, np.uint32)
        for k in range(8):
            v = (v << 4) | nib[:, k]
        if chunk.null_count:
            v[np.asarray(chunk.is_null())] = 0
        out.append(v)
    return np.concatenate(out) if out else np.zeros(0, np.uint32)


def hex_from_objects(values, np):
    """uint32 ids from an object array of hex strings (NaN = missing = 0)."""
    s = np.asarray(values, dtype=object)
    missing = np.array([not isinstance(x, str) for x in s]) if s.dtype == object else np.zeros(len(s), bool)
    s = np.where(missing, "0", s)
    b = np.char.rjust(s.astype("U8"), 8, "0").astype("S8")
    raw = np.frombuffer(b.tobytes(), dtype=np.uint8).reshape(-1, 8).astype(np.uint32)
    nib = (raw & 15) + 9 * (raw >> 6)
    v = np.zeros(len(s), np.uint32)
    for k in range(8):
        v = (v << 4) | nib[:, k]
    return v


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError as e:
        common.log("cannot import numpy/pyarrow (%s); run bench/peers/setup" % e)
        return 1
    try:
        import pandas as pd
    except ImportError:
        pd = None
        common.log("pandas not installed: only the pyarrow pipeline runs")

    reps = 4 if args.tiny else 460 if args.quick else 1400
    path = repeated_file(reps)
    rows = reps * SAMPLE_ROWS
    mb = os.path.getsize(path) / 1e6

    types = {n: pa.int64() for n in NAMES[:14]}
    types.update({n: pa.string() for n in NAMES[14:]})
    read_opts = pacsv.ReadOptions(column_names=NAMES, block_size=1 << 24)
    parse_opts = pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False)
    conv_opts = pacsv.ConvertOptions(column_types=types)

    def arrow_table():
        return pacsv.read_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts)

    def pyarrow_arrays():
        t = arrow_table()
        n = t.num_rows
        dense = np.empty((n, 13), np.float32)
        for i in range(13):
            a = t.column(1 + i).fill_null(0).to_numpy()
            dense[:, i] = np.log1p(np.maximum(a, 0).astype(np.float64))
        ids = np.empty((n, 26), np.uint32)
        for j in range(26):
            ids[:, j] = hex_from_arrow(t.column(14 + j), np, pa)
        labels = t.column(0).to_numpy().astype(np.int32)
        return dense, ids, labels

    def pandas_arrays():
        df = pd.read_csv(path, sep="\t", header=None, names=NAMES, engine="c",
                         dtype={**{n: "float64" for n in NAMES[:14]}, **{n: object for n in NAMES[14:]}})
        n = len(df)
        dense = np.log1p(np.maximum(np.nan_to_num(df[NAMES[1:14]].to_numpy(), nan=0.0), 0)).astype(np.float32)
        ids = np.empty((n, 26), np.uint32)
        for j in range(26):
            ids[:, j] = hex_from_objects(df[NAMES[14 + j]].to_numpy(), np)
        labels = df["label"].to_numpy().astype(np.int32)
        return dense, ids, labels

    def check(arrays, who):
        dense, ids, labels = arrays
        ok = (dense.shape == (rows, 13) and ids.shape == (rows, 26) and labels.shape == (rows,)
              and labels[0] == 0 and abs(float(dense[0, 0]) - float(np.float32(np.log1p(1.0)))) == 0
              and dense[0, 11] == 0 and ids[0, 0] == 0x68FD1E64 and ids[0, 21] == 0
              and ids[SAMPLE_ROWS - 1, 25] == 0xC84C4AEC and int(labels[:SAMPLE_ROWS].sum()) == 176)
        if not ok:
            raise SystemExit("data.py: the %s pipeline produced wrong arrays" % who)

    def set_threads(n):
        pa.set_cpu_count(n)
        pa.set_io_thread_count(max(1, n))

    def rate(fn):
        return rows / common.best_seconds(fn, args.min_time, repeats=args.repeats)

    if args.threads > 0:
        threads = args.threads
        set_threads(threads)
    else:
        threads, _ = common.tune_threads(set_threads, lambda: rate(arrow_table))

    # tsv_to_arrays: try each pipeline once, time the faster.
    candidates = [("pyarrow", pyarrow_arrays)] + ([("pandas", pandas_arrays)] if pd is not None else [])
    probe = {}
    for name, fn in candidates:
        t0 = time.perf_counter()
        check(fn(), name)
        probe[name] = time.perf_counter() - t0
        common.log("%s pipeline: %.3f s for one pass" % (name, probe[name]))
    winner = min(probe, key=probe.get)
    fn = dict(candidates)[winner]
    versions = "pyarrow %s, numpy %s%s" % (pa.__version__, np.__version__,
                                           ", pandas %s" % pd.__version__ if pd is not None else "")
    impl = "%s read_csv + numpy (%s, threads=%d)" % (winner, versions, threads if winner == "pyarrow" else 1)
    common.emit(SUITE, "tsv_to_arrays", "TSV rows/s", rate(fn), "rows/s",
                {"rows": rows, "mb": round(mb, 1), "output": "log1p dense f32, u32 ids, labels",
                 "pipeline": winner, "probe_s": {k: round(v, 3) for k, v in probe.items()},
                 "threads": threads, "impl": impl})

    # tsv_parse: pyarrow's CSV reader alone.
    common.emit(SUITE, "tsv_parse", "TSV rows/s", rate(arrow_table), "rows/s",
                {"rows": rows, "mb": round(mb, 1), "output": "typed Arrow columns, ids as strings",
                 "threads": threads, "impl": "pyarrow.csv.read_csv (%s, threads=%d)" % (versions, threads)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
