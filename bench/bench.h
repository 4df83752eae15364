/*
 * bench/bench.h: the benchmark harness behind `ember bench SUITE`.
 *
 * A suite measures cases and emits one line per measurement. With --json a line is
 * one JSON object (DESIGN.md section 10):
 *   {"suite":"gemm","case":"m1024_n1024_k1024","metric":"gflops","value":98.1,
 *    "unit":"GFLOP/s","params":{"m":1024,...,"impl":"ember 0.1.0 (...)"}}
 * bench/compare pairs these lines with the PyTorch peer's (bench/peers/SUITE.py),
 * which uses the same timing method: 2 warm-up calls, then 5 repeats, each looping
 * until 0.05 s (--quick) or 0.25 s have passed; the best seconds per call is kept.
 */
#ifndef EMBER_BENCH_H
#define EMBER_BENCH_H

#include <stdint.h>

#include "ember/ember.h"

typedef struct ember_bench_opts {
    int quick; /* fewer, smaller cases and shorter timing loops */
    int json;  /* JSON lines instead of a table */
    int tiny;  /* smallest sizes: for the test suite, not for numbers */
    int ranks; /* dlrm: > 0 measures 1, 2, 4, ... up to this many ranks under mpiexec */
    int cuda;  /* --device cuda: the suites that take it (cache, offload, embedding) run on cuda:0 */
} ember_bench_opts;

typedef ember_status (*ember_bench_fn)(const ember_bench_opts *o);
/* One timed operation; returns a status so failures surface instead of being timed. */
typedef ember_status (*ember_bench_op)(void *arg);

typedef struct ember_bench_suite {
    const char *name;
    const char *what;
    ember_bench_fn run;
} ember_bench_suite;

/* All suites, for the CLI (NULL-terminated). */
extern const ember_bench_suite ember_bench_suites[];

/* Best seconds per call of op under the harness's timing method. */
ember_status ember_bench_time(const ember_bench_opts *o, ember_bench_op op, void *arg, double *sec);

/* Emit one measurement. params_json: the inside of the params object ("\"m\":1,..."), may be "". */
void ember_bench_emit(const ember_bench_opts *o, const char *suite, const char *case_name,
                      const char *metric, double value, const char *unit, const char *params_json);

/* "ember 0.1.0 (OpenBLAS 0.3.21 ..., threads=2)", for the params' "impl". */
const char *ember_bench_impl(void);

/* Machine limits, shared by the limits suite and `ember doctor`. */
typedef struct ember_limits {
    double copy_gbs;        /* memcpy bandwidth, bytes read + written per second / 1e9 */
    double gather_rows_s;   /* random 256-byte row gathers per second */
    double gather_gbs;      /* the same in GB/s of rows read */
    double sgemm_gflops;    /* f32 GEMM, square */
    int64_t copy_bytes, gather_table_bytes, sgemm_n;
} ember_limits;

ember_status ember_bench_measure_limits(const ember_bench_opts *o, ember_limits *out);

ember_status ember_bench_suite_limits(const ember_bench_opts *o);
ember_status ember_bench_suite_plan(const ember_bench_opts *o);
ember_status ember_bench_suite_gemm(const ember_bench_opts *o);
ember_status ember_bench_suite_embedding(const ember_bench_opts *o);
ember_status ember_bench_suite_embedding_fbgemm(const ember_bench_opts *o);
ember_status ember_bench_suite_mlp(const ember_bench_opts *o);
ember_status ember_bench_suite_data(const ember_bench_opts *o);
ember_status ember_bench_suite_cache(const ember_bench_opts *o);
ember_status ember_bench_suite_dlrm(const ember_bench_opts *o);
ember_status ember_bench_suite_dlrm_torchrec(const ember_bench_opts *o);
ember_status ember_bench_suite_dlrm_ranks(const ember_bench_opts *o);
ember_status ember_bench_suite_comm(const ember_bench_opts *o);
ember_status ember_bench_suite_offload(const ember_bench_opts *o);

#endif /* EMBER_BENCH_H */
