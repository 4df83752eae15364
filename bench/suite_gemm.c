/*
 * gemm suite: C = A @ B in f32, row-major, through ember_gemm (OpenBLAS on the CPU,
 * cuBLAS on a GPU). Peer: bench/peers/gemm.py (torch.mm with out=). The shapes are
 * the square ladder plus the MLP layers of DLRM's towers (batch 2048).
 */
#include <stdio.h>

#include "bench/bench.h"
#include "engine/internal.h"

typedef struct {
    ember_tensor *a, *b, *c;
} gemm_arg;

static ember_status gemm_op(void *p) {
    gemm_arg *g = p;
    return ember_gemm(0, 0, 1.0f, g->a, g->b, 0.0f, g->c);
}

static ember_status run_case(const ember_bench_opts *o, int64_t m, int64_t n, int64_t k) {
    gemm_arg g = {0};
    ember_rng rng = {.seed = 1234};
    ember_status st = ember_tensor_create(
        &(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {m, k}}, &g.a);
    if (st == EMBER_OK)
        st = ember_tensor_create(
            &(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {k, n}}, &g.b);
    if (st == EMBER_OK)
        st = ember_tensor_create(
            &(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {m, n}}, &g.c);
    if (st == EMBER_OK) st = ember_rng_uniform(&rng, g.a, -1.0f, 1.0f);
    if (st == EMBER_OK) st = ember_rng_uniform(&rng, g.b, -1.0f, 1.0f);
    if (st == EMBER_OK) st = ember_tensor_fill(g.c, 0.0);
    double sec = 0;
    if (st == EMBER_OK) st = ember_bench_time(o, gemm_op, &g, &sec);
    if (st == EMBER_OK) {
        char name[64], params[160];
        snprintf(name, sizeof name, "m%lld_n%lld_k%lld", (long long)m, (long long)n, (long long)k);
        snprintf(params, sizeof params, "\"m\":%lld,\"n\":%lld,\"k\":%lld,\"dtype\":\"f32\",\"threads\":%d",
                 (long long)m, (long long)n, (long long)k, ember_get_num_threads());
        ember_bench_emit(o, "gemm", name, "gflops", 2.0 * (double)m * (double)n * (double)k / sec / 1e9,
                         "GFLOP/s", params);
    }
    ember_tensor_destroy(g.a);
    ember_tensor_destroy(g.b);
    ember_tensor_destroy(g.c);
    return st;
}

ember_status ember_bench_suite_gemm(const ember_bench_opts *o) {
    static const int64_t tiny[][3] = {{64, 64, 64}, {128, 32, 64}};
    static const int64_t quick[][3] = {{512, 512, 512}, {1024, 1024, 1024}, {2048, 256, 512}};
    static const int64_t full[][3] = {{256, 256, 256},    {512, 512, 512},  {1024, 1024, 1024},
                                      {2048, 2048, 2048}, {2048, 256, 512}, {2048, 1024, 1024}};
    const int64_t(*cases)[3] = o->tiny ? tiny : o->quick ? quick : full;
    int n = o->tiny ? 2 : o->quick ? 3 : 6;
    for (int i = 0; i < n; i++) EMBER_TRY(run_case(o, cases[i][0], cases[i][1], cases[i][2]));
    return EMBER_OK;
}
