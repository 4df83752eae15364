/*
 * gemm suite: C = A @ B in f32, row-major, through ember_gemm (OpenBLAS on the CPU,
 * cuBLAS on a GPU). Peer: bench/peers/gemm.py (torch.mm with out=). The shapes are
 * the square ladder, the MLP layers of DLRM's towers (batch 2048), and the three
 * products of one 1024 x 1024 layer's training step at batch 32 (engine/cpu/
 * gemm_skinny.c): Y = X W (m32_n1024_k1024), dX = dY W^T (..._nt: B stored (n, k)) and
 * dW = X^T dY (m1024_n1024_k32_tn: A stored (k, m)).
 */
#include <stdio.h>

#include "bench/bench.h"
#include "engine/internal.h"

typedef struct {
    ember_tensor *a, *b, *c;
    int ta, tb;
} gemm_arg;

static ember_status gemm_op(void *p) {
    gemm_arg *g = p;
    return ember_gemm(g->ta, g->tb, 1.0f, g->a, g->b, 0.0f, g->c);
}

/* C (m, n) = op(A) op(B); ta: A stored (k, m), tb: B stored (n, k). */
static ember_status run_case(const ember_bench_opts *o, int64_t m, int64_t n, int64_t k, int ta, int tb) {
    gemm_arg g = {.ta = ta, .tb = tb};
    ember_rng rng = {.seed = 1234};
    ember_status st = ember_tensor_create(
        &(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {ta ? k : m, ta ? m : k}}, &g.a);
    if (st == EMBER_OK)
        st = ember_tensor_create(
            &(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {tb ? n : k, tb ? k : n}}, &g.b);
    if (st == EMBER_OK)
        st = ember_tensor_create(
            &(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {m, n}}, &g.c);
    if (st == EMBER_OK) st = ember_rng_uniform(&rng, g.a, -1.0f, 1.0f);
    if (st == EMBER_OK) st = ember_rng_uniform(&rng, g.b, -1.0f, 1.0f);
    if (st == EMBER_OK) st = ember_tensor_fill(g.c, 0.0);
    double sec = 0;
    if (st == EMBER_OK) st = ember_bench_time(o, gemm_op, &g, &sec);
    if (st == EMBER_OK) {
        char name[64], params[192];
        snprintf(name, sizeof name, "m%lld_n%lld_k%lld%s", (long long)m, (long long)n, (long long)k,
                 ta ? "_tn" : tb ? "_nt" : "");
        snprintf(params, sizeof params,
                 "\"m\":%lld,\"n\":%lld,\"k\":%lld,\"trans_a\":%d,\"trans_b\":%d,\"dtype\":\"f32\",\"threads\":%d",
                 (long long)m, (long long)n, (long long)k, ta, tb, ember_get_num_threads());
        ember_bench_emit(o, "gemm", name, "gflops", 2.0 * (double)m * (double)n * (double)k / sec / 1e9,
                         "GFLOP/s", params);
    }
    ember_tensor_destroy(g.a);
    ember_tensor_destroy(g.b);
    ember_tensor_destroy(g.c);
    return st;
}

ember_status ember_bench_suite_gemm(const ember_bench_opts *o) {
    /* m, n, k, trans_a, trans_b */
    static const int64_t tiny[][5] = {{64, 64, 64, 0, 0}, {128, 32, 64, 0, 0}, {8, 256, 256, 0, 1}};
    static const int64_t quick[][5] = {{512, 512, 512, 0, 0},   {1024, 1024, 1024, 0, 0}, {2048, 256, 512, 0, 0},
                                       {32, 1024, 1024, 0, 0},  {32, 1024, 1024, 0, 1},   {1024, 1024, 32, 1, 0}};
    static const int64_t full[][5] = {{256, 256, 256, 0, 0},    {512, 512, 512, 0, 0},   {1024, 1024, 1024, 0, 0},
                                      {2048, 2048, 2048, 0, 0}, {2048, 256, 512, 0, 0},  {2048, 1024, 1024, 0, 0},
                                      {32, 1024, 1024, 0, 0},   {32, 1024, 1024, 0, 1},  {1024, 1024, 32, 1, 0}};
    const int64_t(*cases)[5] = o->tiny ? tiny : o->quick ? quick : full;
    int n = o->tiny ? 3 : o->quick ? 6 : 9;
    for (int i = 0; i < n; i++)
        EMBER_TRY(run_case(o, cases[i][0], cases[i][1], cases[i][2], (int)cases[i][3], (int)cases[i][4]));
    return EMBER_OK;
}
