/*
 * limits suite: what this machine can physically do, so every other figure can be
 * quoted as a fraction of it. Copy bandwidth follows STREAM's convention (bytes read
 * plus bytes written); the gather rate is the access pattern of an embedding lookup
 * (random 256-byte rows, i.e. 64 f32 values, from a table much larger than cache);
 * sgemm is the square f32 GEMM peak through the same path as ember_gemm.
 */
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/bench.h"
#include "engine/internal.h"

#define ROW_BYTES 256

typedef struct {
    char *src, *dst;
    int64_t bytes;
} copy_arg;

static ember_status copy_op(void *p) {
    copy_arg *c = p;
    int64_t chunk = 1 << 20;
    int64_t nchunks = (c->bytes + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nchunks; i++) {
        int64_t off = i * chunk, len = c->bytes - off < chunk ? c->bytes - off : chunk;
        memcpy(c->dst + off, c->src + off, (size_t)len);
    }
    return EMBER_OK;
}

typedef struct {
    const char *table;
    char *out;
    const int64_t *idx;
    int64_t n;
} gather_arg;

static ember_status gather_op(void *p) {
    gather_arg *g = p;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < g->n; i++)
        memcpy(g->out + i * ROW_BYTES, g->table + g->idx[i] * ROW_BYTES, ROW_BYTES);
    return EMBER_OK;
}

typedef struct {
    ember_tensor *a, *b, *c;
} sgemm_arg;

static ember_status sgemm_op(void *p) {
    sgemm_arg *g = p;
    return ember_gemm(0, 0, 1.0f, g->a, g->b, 0.0f, g->c);
}

static ember_status measure_copy(const ember_bench_opts *o, ember_limits *l) {
    int64_t bytes = o->tiny ? (8 << 20) : o->quick ? (128 << 20) : (512 << 20);
    copy_arg c = {.bytes = bytes};
    ember_status st = ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)bytes, (void **)&c.src);
    if (st == EMBER_OK)
        st = ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)bytes, (void **)&c.dst);
    double sec = 0;
    if (st == EMBER_OK) {
        memset(c.src, 1, (size_t)bytes); /* fault pages in before timing */
        memset(c.dst, 0, (size_t)bytes);
        st = ember_bench_time(o, copy_op, &c, &sec);
    }
    if (st == EMBER_OK) {
        l->copy_gbs = 2.0 * (double)bytes / sec / 1e9;
        l->copy_bytes = bytes;
    }
    ember_memory_free(NULL, c.src);
    ember_memory_free(NULL, c.dst);
    return st;
}

static ember_status measure_gather(const ember_bench_opts *o, ember_limits *l) {
    int64_t table = o->tiny ? (16 << 20) : o->quick ? (256 << 20) : ((int64_t)1 << 30);
    int64_t rows = table / ROW_BYTES, n = o->tiny ? 16384 : 262144;
    gather_arg g = {.n = n};
    ember_status st = ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)table, (void **)&g.table);
    if (st == EMBER_OK)
        st = ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)(n * ROW_BYTES), (void **)&g.out);
    ember_tensor *idx = NULL;
    if (st == EMBER_OK)
        st = ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_I64, .ndim = 1, .shape = {n}},
                                 &idx);
    double sec = 0;
    if (st == EMBER_OK) {
        ember_rng rng = {.seed = 7};
        st = ember_rng_bits(&rng, idx);
        int64_t *ix = ember_tensor_data(idx);
        for (int64_t i = 0; st == EMBER_OK && i < n; i++) ix[i] = (int64_t)((uint64_t)ix[i] % (uint64_t)rows);
        g.idx = ix;
        memset((char *)g.table, 1, (size_t)table);
        if (st == EMBER_OK) st = ember_bench_time(o, gather_op, &g, &sec);
    }
    if (st == EMBER_OK) {
        l->gather_rows_s = (double)n / sec;
        l->gather_gbs = (double)n * ROW_BYTES / sec / 1e9;
        l->gather_table_bytes = table;
    }
    ember_tensor_destroy(idx);
    ember_memory_free(NULL, (void *)g.table);
    ember_memory_free(NULL, g.out);
    return st;
}

static ember_status measure_sgemm(const ember_bench_opts *o, ember_limits *l) {
    int64_t n = o->tiny ? 128 : o->quick ? 1024 : 2048;
    sgemm_arg g = {0};
    ember_tensor **ts[3] = {&g.a, &g.b, &g.c};
    ember_status st = EMBER_OK;
    ember_rng rng = {.seed = 3};
    for (int i = 0; i < 3 && st == EMBER_OK; i++) {
        st = ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {n, n}},
                                 ts[i]);
        if (st == EMBER_OK) st = ember_rng_uniform(&rng, *ts[i], -1, 1);
    }
    double sec = 0;
    if (st == EMBER_OK) st = ember_bench_time(o, sgemm_op, &g, &sec);
    if (st == EMBER_OK) {
        l->sgemm_gflops = 2.0 * (double)n * (double)n * (double)n / sec / 1e9;
        l->sgemm_n = n;
    }
    for (int i = 0; i < 3; i++) ember_tensor_destroy(*ts[i]);
    return st;
}

ember_status ember_bench_measure_limits(const ember_bench_opts *o, ember_limits *out) {
    memset(out, 0, sizeof *out);
    EMBER_TRY(measure_copy(o, out));
    EMBER_TRY(measure_gather(o, out));
    return measure_sgemm(o, out);
}

ember_status ember_bench_suite_limits(const ember_bench_opts *o) {
    ember_limits l;
    EMBER_TRY(ember_bench_measure_limits(o, &l));
    char p[160];
    snprintf(p, sizeof p, "\"bytes\":%lld,\"threads\":%d", (long long)l.copy_bytes, ember_get_num_threads());
    ember_bench_emit(o, "limits", "memcpy", "bandwidth", l.copy_gbs, "GB/s", p);
    snprintf(p, sizeof p, "\"row_bytes\":%d,\"table_bytes\":%lld,\"threads\":%d", ROW_BYTES,
             (long long)l.gather_table_bytes, ember_get_num_threads());
    ember_bench_emit(o, "limits", "gather_256B", "rows", l.gather_rows_s, "rows/s", p);
    ember_bench_emit(o, "limits", "gather_256B", "bandwidth", l.gather_gbs, "GB/s", p);
    snprintf(p, sizeof p, "\"m\":%lld,\"n\":%lld,\"k\":%lld,\"threads\":%d", (long long)l.sgemm_n,
             (long long)l.sgemm_n, (long long)l.sgemm_n, ember_get_num_threads());
    ember_bench_emit(o, "limits", "sgemm", "gflops", l.sgemm_gflops, "GFLOP/s", p);
    return EMBER_OK;
}
