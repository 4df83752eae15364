/* The harness: suite table, timing method and output lines. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "engine/internal.h"

const ember_bench_suite ember_bench_suites[] = {
    {"limits", "this machine's memory copy bandwidth, random 256-byte row gathers, sgemm peak",
     ember_bench_suite_limits},
    {"gemm", "f32 GEMM C = A @ B (row-major) at square and MLP shapes", ember_bench_suite_gemm},
    {"embedding", "embedding bags, 4M-row table: forward, and forward + backward + SGD / Adagrad",
     ember_bench_suite_embedding},
    {"embedding-fbgemm", "the embedding cases of FBGEMM's CPU TBE, plus rowwise Adagrad",
     ember_bench_suite_embedding_fbgemm},
    {"mlp", "one MLP training step (forward, backward, Adam) through the graph engine", ember_bench_suite_mlp},
    {"data", "Criteo TSV to arrays, npy loader batches, synthetic rows", ember_bench_suite_data},
    {"cache", "Criteo-Kaggle tables through the embedding cache (0.5-100%, host and LMDB) vs resident",
     ember_bench_suite_cache},
    {"dlrm", "DLRM training samples/s (batch 2048 and 16384, resident and 1.5% cache; Kaggle config), one-epoch AUC",
     ember_bench_suite_dlrm},
    {"dlrm-torchrec", "the dlrm cases, under the name bench/compare pairs with the TorchRec peer",
     ember_bench_suite_dlrm_torchrec},
    {"dlrm-ranks", "the default DLRM's samples/s on the ranks of mpirun, tables table-wise (ember bench dlrm --ranks N)",
     ember_bench_suite_dlrm_ranks},
    {"plan", "sharding plans' lookup imbalance on skewed Criteo-shaped and real Criteo counts, 2-8 devices",
     ember_bench_suite_plan},
    {"comm", "collectives' bus bandwidth vs message size and alpha-beta fits (run under mpirun)",
     ember_bench_suite_comm},
    {"offload", "an MLP whose parameters, gradients and Adam state are 4x the device budget: steps/s and bytes moved",
     ember_bench_suite_offload},
    {NULL, NULL, NULL},
};

ember_status ember_bench_time(const ember_bench_opts *o, ember_bench_op op, void *arg, double *sec) {
    double min_time = o->tiny ? 0.002 : o->quick ? 0.05 : 0.25;
    for (int w = 0; w < 2; w++) EMBER_TRY(op(arg));
    double best = 1e30;
    for (int r = 0; r < (o->tiny ? 2 : 5); r++) {
        int64_t calls = 0;
        double t0 = ember__now(), el;
        do {
            EMBER_TRY(op(arg));
            calls++;
            el = ember__now() - t0;
        } while (el < min_time);
        double per = el / (double)calls;
        if (per < best) best = per;
    }
    *sec = best;
    return EMBER_OK;
}

const char *ember_bench_impl(void) {
    static char buf[sizeof(ember_features) + 64];
    ember_features f;
    ember_get_features(&f);
    char blas[sizeof f.blas_version];
    /* First word pair of the OpenBLAS config ("OpenBLAS 0.3.21"). */
    snprintf(blas, sizeof blas, "%s", f.blas ? f.blas_version : "reference gemm");
    char *sp = strchr(blas, ' ');
    if (sp && (sp = strchr(sp + 1, ' '))) *sp = '\0';
    snprintf(buf, sizeof buf, "ember %s (%s, threads=%d)", ember_version_string(), blas,
             ember_get_num_threads());
    return buf;
}

void ember_bench_emit(const ember_bench_opts *o, const char *suite, const char *case_name,
                      const char *metric, double value, const char *unit, const char *params_json) {
    if (o->json) {
        printf("{\"suite\":\"%s\",\"case\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\","
               "\"params\":{%s%s\"impl\":\"%s\"}}\n",
               suite, case_name, metric, value, unit, params_json ? params_json : "",
               params_json && *params_json ? "," : "", ember_bench_impl());
    } else {
        printf("%-8s %-28s %-14s %12.4g %s\n", suite, case_name, metric, value, unit);
    }
    fflush(stdout);
}
