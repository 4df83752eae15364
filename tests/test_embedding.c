/*
 * Embedding bags and fused sparse optimizers (embedding/): layouts, forward and
 * backward against a double-precision reference written here, every instruction set
 * and thread count, PyTorch fixtures (tests/ref/gen_embedding.py), finite differences,
 * int8-rowwise error bound, slot arrays (ember_ebc_rows), and every validation rule.
 *
 * Tolerances, and why:
 *  - forward, f32 accumulation against a double reference: each of the L adds rounds
 *    once (FMA or not), so |err| <= L * 2^-24 * sum|terms|; we allow 4e-7 * (L + 1) *
 *    sum|terms| + 1e-30 (a little over twice that bound).
 *  - optimizer steps in f32 against double: a handful of roundings per element, on
 *    values of order 1 over 2-3 steps: 2e-6 * (1 + |w|). Adagrad/Adam divide by
 *    sqrt(state) + eps, which amplifies relative error when the state is tiny; the
 *    gradients here keep state >= 1e-4, so the bound holds.
 *  - f16 / bf16 rows: the result is rounded to the storage format, and ember's f32
 *    value may sit on the other side of a rounding boundary from the reference: one
 *    unit in the last place of the format (2^-10 / 2^-7 relative) plus the f32 bound.
 *  - int8-rowwise rows after an update: re-quantised over the new range; one
 *    quantisation step (range / 255) plus the f32 bound.
 *  - PyTorch fixtures: torch sums bags in its own order and evaluates the optimizers
 *    with the same expressions but different f32 rounding order: 1e-5 absolute on
 *    values of order 1 (about 100 ulp; the largest difference seen is 1.1e-6).
 *  - finite differences: forward is linear in the weights, so the central difference
 *    is exact up to f32 rounding of the loss: with h = 0.05 and |loss| ~ 10, 2e-3.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "embedding/ebc_internal.h"
#include "embedding/ebc_math.h"
#include "fixture.h"

#define MAXT 4

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint64_t xr(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static float fr(float lo, float hi) { return lo + (hi - lo) * (float)((xr() >> 40) * (1.0 / 16777216.0)); }

static void best_isa(void) {
    if (!ember__ebc_cpu_set_isa("avx512")) (void)ember__ebc_cpu_set_isa("avx2");
}

/* ---- a jagged batch in host memory ---- */

typedef struct {
    int64_t batch;
    int ntables;
    int64_t *off[MAXT], *val[MAXT], len[MAXT];
    float *w[MAXT];
    ember_jagged_feature f[MAXT];
    ember_jagged j;
} hbatch;

/* Random bags of 0..maxlen ids, bag 1 empty, a repeated id in bag 2; offsets start at
 * `skip` (ids before it are never read) when skip > 0. */
static void hb_make(hbatch *h, int ntables, int64_t batch, const int64_t *rows, int maxlen,
                    int weights, int skip) {
    memset(h, 0, sizeof *h);
    h->batch = batch;
    h->ntables = ntables;
    for (int t = 0; t < ntables; t++) {
        h->off[t] = malloc((size_t)(batch + 1) * 8);
        int64_t n = skip;
        h->off[t][0] = skip;
        for (int64_t b = 0; b < batch; b++) {
            int64_t l = b == 1 ? 0 : (int64_t)(xr() % (uint64_t)(maxlen + 1));
            n += l;
            h->off[t][b + 1] = n;
        }
        h->len[t] = n + 2; /* two unused ids at the end */
        h->val[t] = malloc((size_t)h->len[t] * 8);
        h->w[t] = weights ? malloc((size_t)h->len[t] * 4) : NULL;
        for (int64_t k = 0; k < h->len[t]; k++) {
            h->val[t][k] = (int64_t)(xr() % (uint64_t)rows[t]);
            if (h->w[t]) h->w[t][k] = fr(-0.5f, 1.5f);
        }
        if (batch > 2 && h->off[t][3] - h->off[t][2] >= 2) h->val[t][h->off[t][2] + 1] = h->val[t][h->off[t][2]];
        h->f[t] = (ember_jagged_feature){.values = h->val[t], .offsets = h->off[t], .weights = h->w[t],
                                         .length = h->len[t]};
    }
    h->j = (ember_jagged){.batch = batch, .num_features = ntables, .features = h->f};
}

static void hb_free(hbatch *h) {
    for (int t = 0; t < h->ntables; t++) {
        free(h->off[t]);
        free(h->val[t]);
        free(h->w[t]);
    }
}

static ember_tensor *new2d(int64_t r, int64_t c) {
    ember_tensor *t = NULL;
    ember_status st =
        ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {r, c}}, &t);
    if (st != EMBER_OK) {
        fprintf(stderr, "tensor (%lld, %lld): %s\n", (long long)r, (long long)c, ember_last_error());
        exit(1);
    }
    return t;
}

static void fill_rand(ember_tensor *t, float lo, float hi) {
    float *p = ember_tensor_data(t);
    for (int64_t i = 0; i < ember_tensor_numel(t); i++) p[i] = fr(lo, hi);
}

/* ---- double-precision reference ---- */

typedef struct {
    int64_t rows;
    int dim, pooling, format;
    double *w;  /* (rows, dim) */
    double *st;   /* (rows, state floats) */
    double *amax; /* int8-rowwise: max |weight| of each row, for the error bound */
    int sf;
} rtable;

static void rt_load(rtable *r, const ember_ebc *e, int t) {
    ember_ebc_table_info in;
    ember_ebc_get_table_info(e, t, &in);
    r->rows = in.rows;
    r->dim = in.dim;
    r->pooling = in.pooling;
    r->format = in.format;
    r->sf = in.state_floats;
    float *tmp = malloc((size_t)(in.rows * in.dim) * 4);
    ember_ebc_read_rows(e, t, 0, in.rows, tmp);
    r->w = malloc((size_t)(in.rows * in.dim) * 8);
    for (int64_t i = 0; i < in.rows * in.dim; i++) r->w[i] = tmp[i];
    r->amax = NULL;
    if (r->format == EMBER_ROW_FORMAT_INT8_ROWWISE) {
        r->amax = calloc((size_t)in.rows, 8);
        for (int64_t i = 0; i < in.rows * in.dim; i++)
            if (fabs(tmp[i]) > r->amax[i / in.dim]) r->amax[i / in.dim] = fabs(tmp[i]);
    }
    free(tmp);
    r->st = NULL;
    if (r->sf) {
        float *s = malloc((size_t)(in.rows * r->sf) * 4);
        ember_ebc_read_state(e, t, 0, in.rows, s);
        r->st = malloc((size_t)(in.rows * r->sf) * 8);
        for (int64_t i = 0; i < in.rows * r->sf; i++) r->st[i] = s[i];
        free(s);
    }
}

static void rt_free(rtable *r) {
    free(r->amax);
    free(r->w);
    free(r->st);
}

/* out (B, D) in double and the per-element bound of the f32 error */
static void ref_forward(const rtable *rt, int ntables, const hbatch *h, int64_t D, double *out,
                        double *bound) {
    int64_t col = 0;
    for (int t = 0; t < ntables; t++) {
        const rtable *r = &rt[t];
        for (int64_t b = 0; b < h->batch; b++) {
            int64_t s = h->off[t][b], e = h->off[t][b + 1];
            double scale = r->pooling == EMBER_POOLING_MEAN && e > s ? 1.0 / (double)(e - s) : 1.0;
            for (int j = 0; j < r->dim; j++) {
                double acc = 0, mag = 0;
                for (int64_t k = s; k < e; k++) {
                    double w = h->w[t] ? h->w[t][k] : 1.0;
                    double x = w * r->w[h->val[t][k] * r->dim + j];
                    acc += x;
                    /* int8 rows are summed as sum(w * scale * q) + sum(w * bias), whose
                       terms reach |x| + 2 max|row| */
                    mag += fabs(x) + (r->amax ? 2 * fabs(w) * r->amax[h->val[t][k]] : 0.0);
                }
                out[b * D + col + j] = acc * scale;
                bound[b * D + col + j] = 4e-7 * (double)(e - s + 1) * mag * scale + 1e-30;
            }
        }
        col += r->dim;
    }
}

/* One optimizer step in double on the reference tables. */
static void ref_backward(rtable *rt, int ntables, const hbatch *h, const float *grad, int64_t D,
                         const ember_sparse_optim_config *o, float lr, int64_t step) {
    int64_t col = 0;
    for (int t = 0; t < ntables; t++) {
        rtable *r = &rt[t];
        int dim = r->dim;
        double *g = calloc((size_t)(r->rows * dim), 8);
        char *touched = calloc((size_t)r->rows, 1);
        for (int64_t b = 0; b < h->batch; b++) {
            int64_t s = h->off[t][b], e = h->off[t][b + 1];
            double scale = r->pooling == EMBER_POOLING_MEAN && e > s ? 1.0 / (double)(e - s) : 1.0;
            for (int64_t k = s; k < e; k++) {
                double c = (h->w[t] ? h->w[t][k] : 1.0) * scale;
                int64_t id = h->val[t][k];
                touched[id] = 1;
                for (int j = 0; j < dim; j++) g[id * dim + j] += c * grad[b * D + col + j];
            }
        }
        double b1 = o->beta1, b2 = o->beta2;
        for (int64_t id = 0; id < r->rows; id++) {
            if (!touched[id]) continue;
            double *gr = g + id * dim, *w = r->w + id * dim, *st = r->st ? r->st + id * r->sf : NULL;
            if (o->max_grad_norm > 0) {
                double ss = 0;
                for (int j = 0; j < dim; j++) ss += gr[j] * gr[j];
                double c = o->max_grad_norm / (sqrt(ss) + 1e-6);
                if (c < 1)
                    for (int j = 0; j < dim; j++) gr[j] *= c;
            }
            if (o->weight_decay > 0 && o->type != EMBER_SPARSE_OPTIM_ADAMW)
                for (int j = 0; j < dim; j++) gr[j] += o->weight_decay * w[j];
            double ss = 0;
            for (int j = 0; j < dim; j++) ss += gr[j] * gr[j];
            for (int j = 0; j < dim; j++) {
                switch (o->type) {
                case EMBER_SPARSE_OPTIM_SGD: w[j] -= lr * gr[j]; break;
                case EMBER_SPARSE_OPTIM_ADAGRAD:
                    st[j] += gr[j] * gr[j];
                    w[j] -= lr * gr[j] / (sqrt(st[j]) + o->eps);
                    break;
                case EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD:
                    if (j == 0) st[0] += ss / dim;
                    w[j] -= lr / (sqrt(st[0]) + o->eps) * gr[j];
                    break;
                default:
                    if (o->type == EMBER_SPARSE_OPTIM_ADAMW) w[j] *= 1.0 - (double)lr * o->weight_decay;
                    st[j] = b1 * st[j] + (1 - b1) * gr[j];
                    st[dim + j] = b2 * st[dim + j] + (1 - b2) * gr[j] * gr[j];
                    w[j] -= lr / (1 - pow(b1, (double)step)) * st[j] /
                            (sqrt(st[dim + j]) / sqrt(1 - pow(b2, (double)step)) + o->eps);
                    break;
                }
            }
        }
        free(g);
        free(touched);
        col += dim;
    }
}

/* Compare an ebc's weights and state with the reference, with the format's slack. */
static int compare_tables(const ember_ebc *e, const rtable *rt, int ntables, double rel, const char *what) {
    int bad = 0;
    for (int t = 0; t < ntables; t++) {
        const rtable *r = &rt[t];
        int64_t n = r->rows * r->dim;
        float *w = malloc((size_t)n * 4);
        ember_ebc_read_rows(e, t, 0, r->rows, w);
        for (int64_t row = 0; row < r->rows && !bad; row++) {
            double mn = 1e30, mx = -1e30;
            for (int j = 0; j < r->dim; j++) {
                double x = r->w[row * r->dim + j];
                mn = x < mn ? x : mn;
                mx = x > mx ? x : mx;
            }
            for (int j = 0; j < r->dim && !bad; j++) {
                double ref = r->w[row * r->dim + j], got = w[row * r->dim + j];
                double tol = rel * (1 + fabs(ref));
                if (r->format == EMBER_ROW_FORMAT_F16) tol += fabs(ref) * 0x1p-10 + 0x1p-24;
                if (r->format == EMBER_ROW_FORMAT_BF16) tol += fabs(ref) * 0x1p-7;
                if (r->format == EMBER_ROW_FORMAT_INT8_ROWWISE) tol += (mx - mn) / 255.0 * 1.01;
                if (!(fabs(got - ref) <= tol)) {
                    fprintf(stderr, "FAIL %s: table %d row %lld col %d: %.9g vs reference %.9g (tol %.3g)\n",
                            what, t, (long long)row, j, got, ref, tol);
                    bad = 1;
                }
            }
        }
        free(w);
        if (r->sf && !bad) {
            float *s = malloc((size_t)(r->rows * r->sf) * 4);
            ember_ebc_read_state(e, t, 0, r->rows, s);
            for (int64_t i = 0; i < r->rows * r->sf && !bad; i++) {
                double tol = rel * 4 * (1 + fabs(r->st[i]));
                if (!(fabs(s[i] - r->st[i]) <= tol)) {
                    fprintf(stderr, "FAIL %s: table %d state %lld: %.9g vs reference %.9g\n", what, t,
                            (long long)i, s[i], r->st[i]);
                    bad = 1;
                }
            }
            free(s);
        }
    }
    check__report(!bad, __FILE__, __LINE__, what);
    return !bad;
}

static ember_ebc *make(int ntables, const ember_ebc_table_config *tc, ember_sparse_optim_config o,
                       uint64_t seed) {
    ember_ebc *e = NULL;
    ember_status st = ember_ebc_create(&(ember_ebc_config){.num_tables = ntables, .tables = tc, .optim = o}, &e);
    if (st != EMBER_OK) {
        fprintf(stderr, "ember_ebc_create: %s\n", ember_last_error());
        exit(1);
    }
    ember_rng rng = {.seed = seed};
    CHECK_OK(ember_ebc_init_uniform(e, &rng, -1.0f, 1.0f));
    return e;
}

/* ---- layouts ---- */

static void test_layout(void) {
    struct {
        int fmt, dim, opt;
        size_t align, wb, so, rb;
        int sf;
    } c[] = {
        {EMBER_ROW_FORMAT_F32, 64, EMBER_SPARSE_OPTIM_SGD, 0, 256, 256, 256, 0},
        {EMBER_ROW_FORMAT_F32, 64, EMBER_SPARSE_OPTIM_ADAGRAD, 0, 256, 256, 512, 64},
        {EMBER_ROW_FORMAT_F32, 64, EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD, 0, 256, 256, 272, 1},
        {EMBER_ROW_FORMAT_F32, 64, EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD, 64, 256, 256, 320, 1},
        {EMBER_ROW_FORMAT_F32, 64, EMBER_SPARSE_OPTIM_ADAM, 0, 256, 256, 768, 128},
        {EMBER_ROW_FORMAT_F16, 13, EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD, 0, 26, 28, 32, 1},
        {EMBER_ROW_FORMAT_BF16, 8, EMBER_SPARSE_OPTIM_ADAMW, 4, 16, 16, 80, 16},
        {EMBER_ROW_FORMAT_INT8_ROWWISE, 64, EMBER_SPARSE_OPTIM_ADAGRAD, 0, 72, 72, 336, 64},
        {EMBER_ROW_FORMAT_INT8_ROWWISE, 5, EMBER_SPARSE_OPTIM_SGD, 0, 13, 16, 16, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ember_ebc_table_info in;
        CHECK_OK(ember_ebc_record_layout(&(ember_ebc_table_config){.rows = 10, .dim = c[i].dim, .format = c[i].fmt},
                                         &(ember_sparse_optim_config){.type = c[i].opt}, c[i].align, &in));
        CHECK_EQ_INT(in.weight_bytes, c[i].wb);
        CHECK_EQ_INT(in.state_offset, c[i].so);
        CHECK_EQ_INT(in.record_bytes, c[i].rb);
        CHECK_EQ_INT(in.state_floats, c[i].sf);
        CHECK(in.data == NULL);
    }
    ember_ebc_table_info in;
    ember_ebc_table_config tc = {.rows = 10, .dim = 4};
    CHECK_STATUS(ember_ebc_record_layout(&tc, NULL, 3, &in), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_record_layout(&tc, NULL, 8192, &in), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_record_layout(&(ember_ebc_table_config){.rows = INT64_MAX / 2, .dim = 64}, NULL, 0, &in),
                 EMBER_ERR_OVERFLOW);
    CHECK_STR(ember_row_format_name(EMBER_ROW_FORMAT_INT8_ROWWISE), "int8_rowwise");
    CHECK_STR(ember_sparse_optim_name(EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD), "rowwise_adagrad");
    CHECK_STR(ember_sparse_optim_name((ember_sparse_optim)99), "invalid");

    /* a collection: output columns, info, memory kinds, defaults */
    ember_memory *mm;
    CHECK_OK(ember_memory_create(NULL, &mm));
    ember_ebc *e = NULL;
    ember_ebc_table_config tabs[3] = {{.name = "a", .rows = 7, .dim = 3},
                                      {.rows = 5, .dim = 16, .format = EMBER_ROW_FORMAT_F16},
                                      {.name = "c", .rows = 9, .dim = 2, .pooling = EMBER_POOLING_MEAN}};
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 3, .tables = tabs, .mm = mm,
                                                  .optim = {.type = EMBER_SPARSE_OPTIM_ADAM}},
                              &e));
    CHECK_EQ_INT(ember_ebc_num_tables(e), 3);
    CHECK_EQ_INT(ember_ebc_output_dim(e), 21);
    CHECK(ember_device_equal(ember_ebc_device(e), EMBER_CPU));
    ember_sparse_optim_config oc = ember_ebc_optim(e);
    CHECK_NEAR(oc.eps, 1e-8, 1e-15);
    CHECK_NEAR(oc.beta1, 0.9, 1e-7);
    CHECK_NEAR(oc.beta2, 0.999, 1e-7);
    CHECK_OK(ember_ebc_get_table_info(e, 1, &in));
    CHECK_STR(in.name, "table 1");
    CHECK_EQ_INT(in.out_offset, 3);
    CHECK_OK(ember_ebc_get_table_info(e, 2, &in));
    CHECK_STR(in.name, "c");
    CHECK_EQ_INT(in.out_offset, 19);
    CHECK_EQ_INT(in.pooling, EMBER_POOLING_MEAN);
    ember_memory_stats ms;
    ember_memory_get_stats(mm, &ms);
    size_t expect = 0;
    for (int t = 0; t < 3; t++) {
        ember_ebc_get_table_info(e, t, &in);
        expect += (size_t)in.rows * in.record_bytes;
    }
    CHECK_EQ_INT(ms.live[EMBER_TIER_HOST][EMBER_MEM_PARAMETER], expect);
    /* fresh collection: weights 0, state 0 */
    float w[16 * 5], s[32 * 5];
    CHECK_OK(ember_ebc_read_rows(e, 1, 0, 5, w));
    CHECK_OK(ember_ebc_read_state(e, 1, 0, 5, s));
    int zero = 1;
    for (int i = 0; i < 16 * 5; i++) zero &= w[i] == 0.0f;
    for (int i = 0; i < 32 * 5; i++) zero &= s[i] == 0.0f;
    CHECK(zero);
    ember_ebc_destroy(e);
    ember_ebc_destroy(NULL);
    ember_memory_get_stats(mm, &ms);
    CHECK_EQ_INT(ms.live_total[EMBER_TIER_HOST], 0);
    ember_memory_destroy(mm);
}

/* ---- forward ---- */

static void check_forward(ember_ebc *e, const hbatch *h, const char *what) {
    int T = ember_ebc_num_tables(e);
    int64_t D = ember_ebc_output_dim(e);
    rtable rt[MAXT];
    for (int t = 0; t < T; t++) rt_load(&rt[t], e, t);
    double *ref = malloc((size_t)(h->batch * D) * 8), *bound = malloc((size_t)(h->batch * D) * 8);
    ref_forward(rt, T, h, D, ref, bound);
    ember_tensor *out = new2d(h->batch, D);
    fill_rand(out, 100, 200); /* every element must be written, empty bags too */
    CHECK_OK(ember_ebc_forward(e, &h->j, out, NULL));
    const float *o = ember_tensor_data(out);
    int64_t bad = -1;
    for (int64_t i = 0; i < h->batch * D && bad < 0; i++)
        if (!(fabs(o[i] - ref[i]) <= bound[i])) bad = i;
    if (bad >= 0)
        fprintf(stderr, "FAIL %s (%s): out[%lld, %lld] = %.9g, reference %.9g (bound %.3g)\n", what,
                ember__ebc_cpu_isa(), (long long)(bad / D), (long long)(bad % D), o[bad], ref[bad], bound[bad]);
    check__report(bad < 0, __FILE__, __LINE__, what);
    ember_tensor_destroy(out);
    free(ref);
    free(bound);
    for (int t = 0; t < T; t++) rt_free(&rt[t]);
}

static void test_forward(void) {
    static const int dims[] = {1, 5, 8, 16, 17, 64, 100, 130, 257};
    static const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int ii = 0; ii < 3; ii++) {
        if (!ember__ebc_cpu_set_isa(isas[ii])) {
            printf("note: this CPU has no %s; its kernels are not tested here\n", isas[ii]);
            continue;
        }
        for (int fmt = 0; fmt < EMBER_ROW_FORMAT_COUNT; fmt++)
            for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
                for (int pool = 0; pool < 2; pool++) {
                    int weights = pool == 0 && (di % 2 == 0);
                    ember_ebc_table_config tc[2] = {
                        {.rows = 97, .dim = dims[di], .format = fmt, .pooling = pool},
                        {.rows = 13, .dim = 3, .pooling = EMBER_POOLING_SUM}};
                    ember_ebc *e = make(2, tc, (ember_sparse_optim_config){.type = EMBER_SPARSE_OPTIM_ADAGRAD},
                                        7 + di);
                    hbatch h;
                    int64_t rows[2] = {97, 13};
                    hb_make(&h, 2, 37, rows, 9, weights, (int)(di % 3));
                    char what[128];
                    snprintf(what, sizeof what, "forward %s fmt=%s dim=%d pool=%d weights=%d", isas[ii],
                             ember_row_format_name(fmt), dims[di], pool, weights);
                    check_forward(e, &h, what);
                    hb_free(&h);
                    ember_ebc_destroy(e);
                }
    }
    /* a larger batch, threaded, long bags, every ISA again on one shape */
    for (int ii = 0; ii < 3; ii++) {
        if (!ember__ebc_cpu_set_isa(isas[ii])) continue;
        for (int threads = 1; threads <= 2; threads++) {
            ember_set_num_threads(threads);
            ember_ebc_table_config tc[1] = {{.rows = 5000, .dim = 64}};
            ember_ebc *e = make(1, tc, (ember_sparse_optim_config){0}, 3);
            hbatch h;
            int64_t rows[1] = {5000};
            hb_make(&h, 1, 700, rows, 70, 1, 0);
            check_forward(e, &h, "forward large batch");
            hb_free(&h);
            ember_ebc_destroy(e);
        }
    }
    ember_set_num_threads(2);
    best_isa();
}

/* Empty batch, all-empty bags, and an output that is a column slice of a wider buffer. */
static void test_forward_shapes(void) {
    ember_ebc_table_config tc[2] = {{.rows = 20, .dim = 5}, {.rows = 20, .dim = 3, .pooling = EMBER_POOLING_MEAN}};
    ember_ebc *e = make(2, tc, (ember_sparse_optim_config){0}, 5);
    int64_t off0[1] = {0};
    ember_jagged_feature f0[2] = {{.offsets = off0}, {.offsets = off0}};
    ember_tensor *o0 = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {0, 8}}, &o0));
    CHECK_OK(ember_ebc_forward(e, &(ember_jagged){.batch = 0, .num_features = 2, .features = f0}, o0, NULL));
    CHECK_OK(ember_ebc_backward(e, &(ember_jagged){.batch = 0, .num_features = 2, .features = f0}, o0,
                                &(ember_ebc_call){.lr = 1}));
    ember_tensor_destroy(o0);

    int64_t offz[4] = {0, 0, 0, 0};
    ember_jagged_feature fz[2] = {{.offsets = offz}, {.offsets = offz}};
    ember_jagged jz = {.batch = 3, .num_features = 2, .features = fz};
    ember_tensor *oz = new2d(3, 8);
    fill_rand(oz, 1, 2);
    CHECK_OK(ember_ebc_forward(e, &jz, oz, NULL));
    int zero = 1;
    for (int i = 0; i < 24; i++) zero &= ((float *)ember_tensor_data(oz))[i] == 0.0f;
    CHECK(zero);
    CHECK_OK(ember_ebc_backward(e, &jz, oz, &(ember_ebc_call){.lr = 1}));
    ember_tensor_destroy(oz);

    /* column slice: (B, 11) buffer, embeddings in columns [2, 10) */
    hbatch h;
    int64_t rows[2] = {20, 20};
    hb_make(&h, 2, 9, rows, 4, 0, 0);
    ember_tensor *wide = new2d(9, 11), *view = NULL, *full = new2d(9, 8);
    fill_rand(wide, 5, 6);
    CHECK_OK(ember_tensor_narrow(wide, 1, 2, 8, &view));
    CHECK_OK(ember_ebc_forward(e, &h.j, view, NULL));
    CHECK_OK(ember_ebc_forward(e, &h.j, full, NULL));
    const float *a = ember_tensor_data(wide), *b = ember_tensor_data(full);
    int same = 1, untouched = 1;
    for (int r = 0; r < 9; r++) {
        for (int c = 0; c < 8; c++) same &= a[r * 11 + 2 + c] == b[r * 8 + c];
        untouched &= a[r * 11] >= 5 && a[r * 11 + 1] >= 5 && a[r * 11 + 10] >= 5;
    }
    CHECK(same);
    CHECK(untouched);
    ember_tensor_destroy(view);
    ember_tensor_destroy(wide);
    ember_tensor_destroy(full);
    hb_free(&h);
    ember_ebc_destroy(e);
}

/* ---- backward ---- */

static void run_training(int fmt, ember_sparse_optim_config o, int pooling, int weights, int dim,
                         const char *tag) {
    ember_ebc_table_config tc[2] = {{.name = "x", .rows = 61, .dim = dim, .format = fmt, .pooling = pooling},
                                    {.name = "y", .rows = 9, .dim = 4, .format = fmt}};
    ember_ebc *e = make(2, tc, o, 11);
    o = ember_ebc_optim(e);
    rtable rt[2];
    rt_load(&rt[0], e, 0);
    rt_load(&rt[1], e, 1);
    int64_t D = ember_ebc_output_dim(e);
    for (int step = 1; step <= 3; step++) {
        hbatch h;
        int64_t rows[2] = {61, 9};
        hb_make(&h, 2, 23, rows, 6, weights && pooling == EMBER_POOLING_SUM, step - 1);
        ember_tensor *g = new2d(h.batch, D);
        fill_rand(g, -1, 1);
        float lr = 0.05f / (float)step;
        CHECK_OK(ember_ebc_backward(e, &h.j, g, &(ember_ebc_call){.lr = lr}));
        ref_backward(rt, 2, &h, ember_tensor_data(g), D, &o, lr, step);
        /* int8 rows are re-quantised: compare with what ember now stores, the reference
           continues from ember's values so quantisation error does not compound */
        char what[160];
        snprintf(what, sizeof what, "backward %s %s %s pool=%d weights=%d dim=%d step %d (%s)",
                 ember_sparse_optim_name(o.type), ember_row_format_name(fmt), tag, pooling, weights, dim, step,
                 ember__ebc_cpu_isa());
        compare_tables(e, rt, 2, 2e-6, what);
        if (fmt != EMBER_ROW_FORMAT_F32)
            for (int t = 0; t < 2; t++) {
                rt_free(&rt[t]);
                rt_load(&rt[t], e, t);
            }
        ember_tensor_destroy(g);
        hb_free(&h);
    }
    rt_free(&rt[0]);
    rt_free(&rt[1]);
    ember_ebc_destroy(e);
}

static void test_backward(void) {
    static const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int ii = 0; ii < 3; ii++) {
        if (!ember__ebc_cpu_set_isa(isas[ii])) continue;
        for (int opt = 0; opt < EMBER_SPARSE_OPTIM_COUNT; opt++)
            for (int fmt = 0; fmt < EMBER_ROW_FORMAT_COUNT; fmt++) {
                ember_sparse_optim_config o = {.type = opt};
                run_training(fmt, o, EMBER_POOLING_SUM, 1, 37, "plain");
                run_training(fmt, o, EMBER_POOLING_MEAN, 0, 16, "plain");
                o.weight_decay = 0.03f;
                o.max_grad_norm = 0.4f;
                o.initial_accumulator = 0.2f;
                run_training(fmt, o, EMBER_POOLING_SUM, 1, 64, "wd+clip");
            }
    }
    best_isa();
}

/* Same inputs on 1, 2, 4 and again 2 threads (fewer workers than the pool has
 * threads): the same bits. */
static void test_determinism(void) {
    static const int nthreads[4] = {1, 2, 4, 2};
    uint32_t *res[4];
    ember_ebc_table_config tc[1] = {{.rows = 300, .dim = 40}};
    for (int run = 0; run < 4; run++) {
        ember_set_num_threads(nthreads[run]);
        ember_ebc *e = make(1, tc, (ember_sparse_optim_config){.type = EMBER_SPARSE_OPTIM_ADAM}, 21);
        uint64_t keep = rs;
        rs = 12345;
        hbatch h;
        int64_t rows[1] = {300};
        hb_make(&h, 1, 3000, rows, 40, 1, 0); /* > 32768 ids: the threaded sort */
        ember_tensor *g = new2d(3000, 40);
        fill_rand(g, -1, 1);
        rs = keep;
        for (int s = 0; s < 2; s++) CHECK_OK(ember_ebc_backward(e, &h.j, g, &(ember_ebc_call){.lr = 0.01f}));
        res[run] = malloc(300 * 40 * 4);
        CHECK_OK(ember_ebc_read_rows(e, 0, 0, 300, (float *)res[run]));
        ember_tensor_destroy(g);
        hb_free(&h);
        ember_ebc_destroy(e);
    }
    for (int i = 1; i < 4; i++) CHECK(memcmp(res[0], res[i], 300 * 40 * 4) == 0);
    for (int i = 0; i < 4; i++) free(res[i]);
    ember_set_num_threads(2);
}

/* A slot array (as a cache would hold): the table's records permuted, at a larger
 * stride, ids remapped; forward and backward must equal the plain table's, bit for bit. */
static void test_rows_override(void) {
    const int64_t R = 50;
    ember_ebc_table_config tc[1] = {{.rows = R, .dim = 12, .format = EMBER_ROW_FORMAT_BF16}};
    ember_sparse_optim_config o = {.type = EMBER_SPARSE_OPTIM_ADAGRAD};
    ember_ebc *a = make(1, tc, o, 8), *b = make(1, tc, o, 8);
    ember_ebc_table_info in;
    CHECK_OK(ember_ebc_get_table_info(b, 0, &in));
    size_t stride = in.record_bytes + 16;
    char *slots = NULL;
    CHECK_OK(ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_CACHE, (size_t)(R + 5) * stride, (void **)&slots));
    int64_t slot_of[50];
    for (int64_t i = 0; i < R; i++) slot_of[i] = (i * 17 + 3) % R + 5; /* a permutation into [5, 55) */
    for (int64_t i = 0; i < R; i++)
        memcpy(slots + slot_of[i] * stride, (char *)in.data + i * in.record_bytes, in.record_bytes);
    hbatch h;
    int64_t rows[1] = {R};
    hb_make(&h, 1, 40, rows, 7, 1, 0);
    int64_t *remapped = malloc((size_t)h.len[0] * 8);
    for (int64_t k = 0; k < h.len[0]; k++) remapped[k] = slot_of[h.val[0][k]];
    ember_jagged_feature f = h.f[0];
    f.values = remapped;
    ember_jagged jr = {.batch = h.batch, .num_features = 1, .features = &f};
    ember_ebc_rows ov = {.base = slots, .count = R + 5, .stride = stride};
    ember_tensor *oa = new2d(40, 12), *ob = new2d(40, 12), *g = new2d(40, 12);
    fill_rand(g, -1, 1);
    CHECK_OK(ember_ebc_forward(a, &h.j, oa, NULL));
    CHECK_OK(ember_ebc_forward(b, &jr, ob, &(ember_ebc_call){.rows = &ov}));
    CHECK(memcmp(ember_tensor_data(oa), ember_tensor_data(ob), 40 * 12 * 4) == 0);
    CHECK_OK(ember_ebc_backward(a, &h.j, g, &(ember_ebc_call){.lr = 0.1f}));
    CHECK_OK(ember_ebc_backward(b, &jr, g, &(ember_ebc_call){.lr = 0.1f, .rows = &ov}));
    ember_ebc_table_info ia;
    CHECK_OK(ember_ebc_get_table_info(a, 0, &ia));
    int same = 1;
    for (int64_t i = 0; i < R; i++)
        same &= memcmp(slots + slot_of[i] * stride, (char *)ia.data + i * ia.record_bytes, ia.record_bytes) == 0;
    CHECK(same);
    /* b's own table was not touched */
    float wa[12], wb[12];
    int64_t id = h.val[0][h.off[0][0]];
    CHECK_OK(ember_ebc_read_rows(a, 0, id, 1, wa));
    CHECK_OK(ember_ebc_read_rows(b, 0, id, 1, wb));
    CHECK(memcmp(wa, wb, sizeof wa) != 0);
    /* ids must be inside the override's count */
    ember_ebc_rows small = {.base = slots, .count = 5, .stride = stride};
    CHECK_STATUS(ember_ebc_forward(b, &jr, ob, &(ember_ebc_call){.rows = &small}), EMBER_ERR_INDEX);
    ember_ebc_rows skew = {.base = slots, .count = R + 5, .stride = in.record_bytes - 4};
    CHECK_STATUS(ember_ebc_forward(b, &jr, ob, &(ember_ebc_call){.rows = &skew}), EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor_destroy(oa);
    ember_tensor_destroy(ob);
    ember_tensor_destroy(g);
    free(remapped);
    hb_free(&h);
    ember_memory_free(NULL, slots);
    ember_ebc_destroy(a);
    ember_ebc_destroy(b);
}

/* ---- finite differences: d/dw of sum(G * forward(w)) against SGD(lr = 1)'s step ---- */

static double loss_of(ember_ebc *e, const hbatch *h, const ember_tensor *g, ember_tensor *out) {
    ember_ebc_forward(e, &h->j, out, NULL);
    const float *o = ember_tensor_data(out), *gg = ember_tensor_data(g);
    double l = 0;
    for (int64_t i = 0; i < ember_tensor_numel(out); i++) l += (double)o[i] * gg[i];
    return l;
}

static void test_finite_differences(void) {
    for (int pool = 0; pool < 2; pool++) {
        ember_ebc_table_config tc[2] = {{.rows = 15, .dim = 6, .pooling = pool}, {.rows = 4, .dim = 3}};
        ember_ebc *e = make(2, tc, (ember_sparse_optim_config){0}, 31);
        hbatch h;
        int64_t rows[2] = {15, 4};
        hb_make(&h, 2, 10, rows, 5, pool == 0, 0);
        ember_tensor *g = new2d(10, 9), *out = new2d(10, 9);
        fill_rand(g, -1, 1);
        float w0[15 * 6], w1[15 * 6];
        CHECK_OK(ember_ebc_read_rows(e, 0, 0, 15, w0));
        const float hstep = 0.05f;
        double fd[15 * 6];
        for (int i = 0; i < 15 * 6; i++) {
            float w[15 * 6];
            memcpy(w, w0, sizeof w);
            w[i] = w0[i] + hstep;
            ember_ebc_write_rows(e, 0, 0, 15, w);
            double lp = loss_of(e, &h, g, out);
            w[i] = w0[i] - hstep;
            ember_ebc_write_rows(e, 0, 0, 15, w);
            double lm = loss_of(e, &h, g, out);
            fd[i] = (lp - lm) / (2.0 * ((double)(w0[i] + hstep) - (double)w0[i]));
        }
        CHECK_OK(ember_ebc_write_rows(e, 0, 0, 15, w0));
        CHECK_OK(ember_ebc_backward(e, &h.j, g, &(ember_ebc_call){.lr = 1.0f}));
        CHECK_OK(ember_ebc_read_rows(e, 0, 0, 15, w1));
        double worst = 0;
        for (int i = 0; i < 15 * 6; i++) {
            double grad = (double)w0[i] - (double)w1[i];
            if (fabs(grad - fd[i]) > worst) worst = fabs(grad - fd[i]);
        }
        CHECK_NEAR(worst, 0.0, 2e-3);
        ember_tensor_destroy(g);
        ember_tensor_destroy(out);
        hb_free(&h);
        ember_ebc_destroy(e);
    }
}

/* ---- int8-rowwise: round trip within half a quantisation step ---- */

static void test_int8_bound(void) {
    const int R = 40, dim = 33;
    ember_ebc_table_config tc[1] = {{.rows = R, .dim = dim, .format = EMBER_ROW_FORMAT_INT8_ROWWISE}};
    ember_ebc *e = make(1, tc, (ember_sparse_optim_config){0}, 1);
    float x[40 * 33], y[40 * 33];
    for (int r = 0; r < R; r++) {
        float span = r == 0 ? 0.0f : powf(10.0f, (float)(r % 9) - 4.0f), center = fr(-3, 3);
        for (int j = 0; j < dim; j++) x[r * dim + j] = r == 0 ? 1.25f : center + span * fr(-1, 1);
    }
    CHECK_OK(ember_ebc_write_rows(e, 0, 0, R, x));
    CHECK_OK(ember_ebc_read_rows(e, 0, 0, R, y));
    int ok = 1;
    for (int r = 0; r < R && ok; r++) {
        float mn = x[r * dim], mx = mn;
        for (int j = 0; j < dim; j++) {
            mn = fminf(mn, x[r * dim + j]);
            mx = fmaxf(mx, x[r * dim + j]);
        }
        /* half a step, plus the f32 rounding of q * scale + bias and of the step itself */
        double bound = (mx - mn) / 255.0 * 0.5 * (1 + 1e-5) + 4 * FLT_EPSILON * fmax(fabs(mn), fabs(mx));
        for (int j = 0; j < dim && ok; j++)
            if (!(fabs((double)y[r * dim + j] - x[r * dim + j]) <= bound)) {
                fprintf(stderr, "FAIL int8 row %d col %d: %.9g -> %.9g (bound %.3g)\n", r, j, x[r * dim + j],
                        y[r * dim + j], bound);
                ok = 0;
            }
    }
    CHECK(ok);
    CHECK_EQ_INT(y[0] == 1.25f, 1); /* a constant row is exact */
    ember_ebc_destroy(e);
}

/* ---- PyTorch fixtures ---- */

static const fixture_tensor *fxg(const fixture *fx, const char *cs, const char *what, int step) {
    char name[300]; /* cs is under 128 bytes: no truncation */
    if (step >= 0)
        snprintf(name, sizeof name, "%s/s%d/%s", cs, step, what);
    else
        snprintf(name, sizeof name, "%s/%s", cs, what);
    return fixture_get(fx, name);
}

static void run_fixture(const fixture *fx, const char *cs) {
    const fixture_tensor *cf = fxg(fx, cs, "config", -1), *w0 = fxg(fx, cs, "w0", -1);
    if (!cf || !w0) {
        check__report(0, __FILE__, __LINE__, cs);
        return;
    }
    const float *c = cf->data;
    int64_t rows = (int64_t)c[0], batch = (int64_t)c[5];
    int dim = (int)c[1], pooling = (int)c[2], opt = (int)c[3], steps = (int)c[4], has_w = (int)c[12];
    ember_sparse_optim_config o = {.type = opt < 0 ? EMBER_SPARSE_OPTIM_SGD : opt,
                                   .eps = c[6],
                                   .beta1 = c[7],
                                   .beta2 = c[8],
                                   .weight_decay = c[9],
                                   .max_grad_norm = c[10],
                                   .initial_accumulator = c[11]};
    ember_ebc_table_config tc = {.name = cs, .rows = rows, .dim = dim, .pooling = pooling};
    ember_ebc *e = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 1, .tables = &tc, .optim = o}, &e));
    if (!e) return;
    CHECK_OK(ember_ebc_write_rows(e, 0, 0, rows, w0->data));
    ember_tensor *out = new2d(batch, dim), *g = NULL;
    float *w = malloc((size_t)(rows * dim) * 4);
    for (int s = 0; s < steps; s++) {
        const fixture_tensor *off = fxg(fx, cs, "offsets", s), *val = fxg(fx, cs, "values", s),
                             *wt = has_w ? fxg(fx, cs, "weights", s) : NULL, *gr = fxg(fx, cs, "grad", s),
                             *lr = fxg(fx, cs, "lr", s), *eo = fxg(fx, cs, "out", s), *ew = fxg(fx, cs, "w", s);
        if (!off || !val || !gr || !lr || !eo || !ew || (has_w && !wt)) {
            check__report(0, __FILE__, __LINE__, cs);
            break;
        }
        ember_jagged_feature f = {.values = val->data, .offsets = off->data, .weights = wt ? wt->data : NULL,
                                  .length = val->numel};
        ember_jagged j = {.batch = batch, .num_features = 1, .features = &f};
        CHECK_OK(ember_ebc_forward(e, &j, out, NULL));
        /* 1e-5: torch sums bags in its own order; values are O(1) (see the top) */
        CHECK_NEAR_ARRAY((const float *)ember_tensor_data(out), (const float *)eo->data, batch * dim, 1e-5);
        if (opt < 0) continue;
        CHECK_OK(ember_tensor_wrap(gr->data, EMBER_DTYPE_F32, 2, (int64_t[]){batch, dim}, NULL, EMBER_CPU, &g));
        CHECK_OK(ember_ebc_backward(e, &j, g, &(ember_ebc_call){.lr = ((const float *)lr->data)[0], .step = s + 1}));
        ember_tensor_destroy(g);
        g = NULL;
        CHECK_OK(ember_ebc_read_rows(e, 0, 0, rows, w));
        /* 1e-5: the same expressions as torch.optim, other f32 rounding order */
        CHECK_NEAR_ARRAY(w, (const float *)ew->data, rows * dim, 1e-5);
    }
    const fixture_tensor *est = opt > 0 ? fxg(fx, cs, "state", -1) : NULL;
    if (est) {
        ember_ebc_table_info in;
        ember_ebc_get_table_info(e, 0, &in);
        CHECK_EQ_INT(in.state_floats, est->shape[1]);
        float *s = malloc((size_t)(rows * in.state_floats) * 4);
        CHECK_OK(ember_ebc_read_state(e, 0, 0, rows, s));
        /* state: sums of squares and moments of O(1) gradients, relative 1e-5 */
        CHECK_NEAR_ARRAY(s, (const float *)est->data, rows * in.state_floats, 1e-5);
        free(s);
    }
    free(w);
    ember_tensor_destroy(out);
    ember_ebc_destroy(e);
    printf("fixture %s: %d step%s\n", cs, steps, steps == 1 ? "" : "s");
}

static void test_fixtures(void) {
    fixture fx;
    if (!fixture_load(&fx, "ref/embedding.bin")) {
        check__report(0, __FILE__, __LINE__, "fixture tests/ref/embedding.bin loads");
        return;
    }
    int cases = 0;
    for (int i = 0; i < fx.n; i++) {
        const char *n = fx.t[i].name;
        size_t l = strlen(n);
        if (l > 7 && strcmp(n + l - 7, "/config") == 0) {
            char cs[128];
            snprintf(cs, sizeof cs, "%.*s", (int)(l - 7), n);
            run_fixture(&fx, cs);
            cases++;
        }
    }
    CHECK(cases >= 15);
    fixture_free(&fx);
}

/* ---- steps, init, row I/O ---- */

static void test_steps_and_init(void) {
    /* Adam counting its own steps equals explicit steps 1, 2, 3 */
    ember_ebc_table_config tc[1] = {{.rows = 20, .dim = 8}};
    ember_sparse_optim_config o = {.type = EMBER_SPARSE_OPTIM_ADAM};
    ember_ebc *a = make(1, tc, o, 2), *b = make(1, tc, o, 2);
    hbatch h;
    int64_t rows[1] = {20};
    hb_make(&h, 1, 6, rows, 5, 0, 0);
    ember_tensor *g = new2d(6, 8);
    fill_rand(g, -1, 1);
    for (int s = 1; s <= 3; s++) {
        CHECK_OK(ember_ebc_backward(a, &h.j, g, &(ember_ebc_call){.lr = 0.01f}));
        CHECK_OK(ember_ebc_backward(b, &h.j, g, &(ember_ebc_call){.lr = 0.01f, .step = s}));
    }
    float wa[160], wb[160];
    ember_ebc_read_rows(a, 0, 0, 20, wa);
    ember_ebc_read_rows(b, 0, 0, 20, wb);
    CHECK(memcmp(wa, wb, sizeof wa) == 0);
    ember_tensor_destroy(g);
    hb_free(&h);
    ember_ebc_destroy(a);
    ember_ebc_destroy(b);

    /* init_uniform: in range, reproducible, advances the stream, resets the state */
    ember_ebc_table_config t2[2] = {{.rows = 30, .dim = 7}, {.rows = 3, .dim = 2, .format = EMBER_ROW_FORMAT_F16}};
    ember_sparse_optim_config ao = {.type = EMBER_SPARSE_OPTIM_ADAGRAD, .initial_accumulator = 0.5f};
    ember_ebc *c = NULL, *d = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 2, .tables = t2, .optim = ao}, &c));
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 2, .tables = t2, .optim = ao}, &d));
    ember_rng r1 = {.seed = 9}, r2 = {.seed = 9};
    CHECK_OK(ember_ebc_write_state(c, 0, 0, 1, (float[7]){1, 2, 3, 4, 5, 6, 7}));
    CHECK_OK(ember_ebc_init_uniform(c, &r1, -0.25f, 0.5f));
    CHECK_OK(ember_ebc_init_uniform(d, &r2, -0.25f, 0.5f));
    CHECK_EQ_INT(r1.offset, 30 * 7 + 3 * 2);
    float x[210], y[210], s[210];
    ember_ebc_read_rows(c, 0, 0, 30, x);
    ember_ebc_read_rows(d, 0, 0, 30, y);
    CHECK(memcmp(x, y, sizeof x) == 0);
    int in = 1;
    for (int i = 0; i < 210; i++) in &= x[i] >= -0.25f && x[i] < 0.5f;
    CHECK(in);
    ember_ebc_read_state(c, 0, 0, 30, s);
    int init = 1;
    for (int i = 0; i < 210; i++) init &= s[i] == 0.5f;
    CHECK(init);
    /* write/read state round trip */
    CHECK_OK(ember_ebc_write_state(c, 0, 4, 1, (float[7]){1, 2, 3, 4, 5, 6, 7}));
    CHECK_OK(ember_ebc_read_state(c, 0, 4, 1, s));
    CHECK_NEAR(s[6], 7.0, 0);
    CHECK_STATUS(ember_ebc_init_uniform(c, &r1, 1.0f, 0.0f), EMBER_ERR_INVALID_ARGUMENT);
    ember_ebc_destroy(c);
    ember_ebc_destroy(d);
}

/* ---- concurrency and large batches ---- */

typedef struct {
    ember_ebc *e;
    hbatch *h;
    ember_tensor *out;
    ember_status st;
} fwd_thread_arg;

static void *fwd_thread(void *p) {
    fwd_thread_arg *a = p;
    for (int r = 0; r < 20 && a->st == EMBER_OK; r++) a->st = ember_ebc_forward(a->e, &a->h->j, a->out, NULL);
    return NULL;
}

/* Forward calls from two threads at once (the worker pool runs one job at a time; the
 * other caller runs its own) give what one thread alone gives. */
static void test_concurrent_forward(void) {
    ember_ebc_table_config tc[1] = {{.rows = 3000, .dim = 24}};
    ember_ebc *e = make(1, tc, (ember_sparse_optim_config){0}, 17);
    hbatch h[2];
    int64_t rows[1] = {3000};
    ember_tensor *o[2], *ref[2];
    for (int i = 0; i < 2; i++) {
        hb_make(&h[i], 1, 500, rows, 40, i, 0);
        o[i] = new2d(500, 24);
        ref[i] = new2d(500, 24);
        CHECK_OK(ember_ebc_forward(e, &h[i].j, ref[i], NULL));
    }
    pthread_t th[2];
    fwd_thread_arg a[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (fwd_thread_arg){.e = e, .h = &h[i], .out = o[i], .st = EMBER_OK};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, fwd_thread, &a[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_OK(a[i].st);
        CHECK(memcmp(ember_tensor_data(o[i]), ember_tensor_data(ref[i]), 500 * 24 * 4) == 0);
        ember_tensor_destroy(o[i]);
        ember_tensor_destroy(ref[i]);
        hb_free(&h[i]);
    }
    ember_ebc_destroy(e);
}

/* Validation of a batch large enough to be scanned in parallel reports the first bad
 * position, not whichever a worker found first. */
static void test_large_validation(void) {
    const int64_t B = 4000, L = 50, n = B * L;
    int64_t *off = malloc((size_t)(B + 1) * 8), *v = malloc((size_t)n * 8);
    for (int64_t b = 0; b <= B; b++) off[b] = b * L;
    for (int64_t k = 0; k < n; k++) v[k] = k % 1000;
    v[190001] = 1000;
    v[150007] = -3;
    ember_jagged_feature f = {.values = v, .offsets = off, .length = n};
    ember_jagged j = {.batch = B, .num_features = 1, .features = &f};
    CHECK_STATUS(ember_jagged_validate(&j, (int64_t[]){1000}), EMBER_ERR_INDEX);
    const char *m = ember_last_error();
    int ok = strstr(m, "sample 3000, position 150007: id -3") != NULL;
    if (!ok) fprintf(stderr, "FAIL message: %s\n", m);
    CHECK(ok);
    v[150007] = 7;
    CHECK_STATUS(ember_jagged_validate(&j, (int64_t[]){1000}), EMBER_ERR_INDEX);
    ok = strstr(ember_last_error(), "sample 3800, position 190001: id 1000 is outside [0, 1000)") != NULL;
    if (!ok) fprintf(stderr, "FAIL message: %s\n", ember_last_error());
    CHECK(ok);
    v[190001] = 0;
    CHECK_OK(ember_jagged_validate(&j, (int64_t[]){1000}));
    free(off);
    free(v);
}

/* ---- bad input: every rule, and the collection unchanged afterwards ---- */

static void check_msg(const char *a, const char *b, const char *c) {
    const char *m = ember_last_error();
    int ok = strstr(m, a) && (!b || strstr(m, b)) && (!c || strstr(m, c));
    if (!ok) fprintf(stderr, "FAIL message \"%s\" lacks \"%s\" / \"%s\" / \"%s\"\n", m, a, b ? b : "", c ? c : "");
    check__report(ok, __FILE__, __LINE__, "error message names table, sample, position");
}

static void test_bad_input(void) {
    ember_ebc_table_config tc[2] = {{.name = "user", .rows = 10, .dim = 4},
                                    {.name = "item", .rows = 6, .dim = 2, .pooling = EMBER_POOLING_MEAN}};
    ember_ebc *e = make(2, tc, (ember_sparse_optim_config){.type = EMBER_SPARSE_OPTIM_ADAGRAD}, 4);
    float before[40], after[40];
    ember_ebc_read_rows(e, 0, 0, 10, before);
    int64_t off0[4] = {0, 2, 3, 5}, off1[4] = {0, 1, 1, 3};
    int64_t v0[5] = {1, 2, 3, 4, 5}, v1[3] = {0, 5, 2};
    ember_jagged_feature f[2] = {{.values = v0, .offsets = off0, .length = 5},
                                 {.values = v1, .offsets = off1, .length = 3}};
    ember_jagged j = {.batch = 3, .num_features = 2, .features = f};
    ember_tensor *out = new2d(3, 6), *g = new2d(3, 6);
    fill_rand(g, -1, 1);
    CHECK_OK(ember_ebc_forward(e, &j, out, NULL));
    ember_ebc_call call = {.lr = 0.1f};

    /* ids */
    v1[2] = 6;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INDEX);
    check_msg("table 1 (\"item\")", "sample 2", "position 2");
    check_msg("id 6 is outside [0, 6)", NULL, NULL);
    CHECK_STATUS(ember_ebc_backward(e, &j, g, &call), EMBER_ERR_INDEX);
    v1[2] = 2;
    v0[3] = -1;
    CHECK_STATUS(ember_ebc_backward(e, &j, g, &call), EMBER_ERR_INDEX);
    check_msg("table 0 (\"user\")", "sample 2", "position 3");
    CHECK_STATUS(ember_jagged_validate(&j, (int64_t[]){10, 6}), EMBER_ERR_INDEX);
    check_msg("ember_jagged_validate: table 0", "sample 2", "position 3");
    CHECK_STATUS(ember_jagged_validate(&j, NULL), EMBER_ERR_INDEX);
    check_msg("id -1 is negative", NULL, NULL);
    v0[3] = 4;
    CHECK_OK(ember_jagged_validate(&j, (int64_t[]){10, 6}));
    CHECK_STATUS(ember_jagged_validate(&j, (int64_t[]){5, 6}), EMBER_ERR_INDEX);
    check_msg("table 0", "sample 2", "position 4");
    /* ids outside the used range are never read, so never checked */
    off1[3] = 2;
    v1[2] = 99;
    CHECK_OK(ember_ebc_forward(e, &j, out, NULL));
    off1[3] = 3;
    v1[2] = 2;

    /* offsets */
    off0[0] = -1;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INDEX);
    check_msg("table 0 (\"user\")", "sample 0", "offsets[0] is negative");
    off0[0] = 0;
    off0[2] = 1;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INDEX);
    check_msg("sample 1", "position 2", "offsets decrease");
    off0[2] = 3;
    off1[3] = 4;
    CHECK_STATUS(ember_ebc_backward(e, &j, g, &call), EMBER_ERR_INDEX);
    check_msg("table 1", "sample 2", "past the end of values (length 3)");
    off1[3] = 3;

    /* structure */
    f[0].values = NULL;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INVALID_ARGUMENT);
    f[0].values = v0;
    f[1].offsets = NULL;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INVALID_ARGUMENT);
    f[1].offsets = off1;
    f[1].length = -1;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INVALID_ARGUMENT);
    f[1].length = 3;
    j.num_features = 1;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_SHAPE);
    j.num_features = 2;
    j.batch = -1;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INVALID_ARGUMENT);
    j.batch = 3;
    CHECK_STATUS(ember_ebc_forward(e, NULL, out, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_forward(NULL, &j, out, NULL), EMBER_ERR_INVALID_ARGUMENT);
    float wts[3] = {1, 1, 1};
    f[1].weights = wts;
    CHECK_STATUS(ember_ebc_forward(e, &j, out, NULL), EMBER_ERR_INVALID_ARGUMENT);
    check_msg("table 1 (\"item\")", "sum pooling", NULL);
    f[1].weights = NULL;

    /* output and gradient tensors */
    ember_tensor *o_bad = new2d(3, 5), *o_t = NULL, *o_i = NULL, *big = new2d(6, 3);
    CHECK_STATUS(ember_ebc_forward(e, &j, o_bad, NULL), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_ebc_backward(e, &j, o_bad, &call), EMBER_ERR_SHAPE);
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_I32, .ndim = 2, .shape = {3, 6}}, &o_i));
    CHECK_STATUS(ember_ebc_forward(e, &j, o_i, NULL), EMBER_ERR_DTYPE);
    ember_tensor *t63 = new2d(6, 3);
    CHECK_OK(ember_tensor_transpose(t63, 0, 1, &o_t));
    CHECK_STATUS(ember_ebc_forward(e, &j, o_t, NULL), EMBER_ERR_STATE);
    CHECK_STATUS(ember_ebc_backward(e, &j, g, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_backward(e, &j, g, &(ember_ebc_call){.lr = -1}), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_backward(e, &j, g, &(ember_ebc_call){.lr = NAN}), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_backward(e, &j, g, &(ember_ebc_call){.lr = 1, .step = -2}), EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor_destroy(o_bad);
    ember_tensor_destroy(o_i);
    ember_tensor_destroy(o_t);
    ember_tensor_destroy(t63);
    ember_tensor_destroy(big);

    /* nothing above changed a row */
    ember_ebc_read_rows(e, 0, 0, 10, after);
    CHECK(memcmp(before, after, sizeof before) == 0);

    /* row I/O */
    float buf[40];
    CHECK_STATUS(ember_ebc_read_rows(e, 2, 0, 1, buf), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_ebc_read_rows(e, -1, 0, 1, buf), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_ebc_read_rows(e, 0, 8, 3, buf), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_ebc_write_rows(e, 0, -1, 1, buf), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_ebc_write_rows(e, 0, 0, 1, NULL), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_read_state(e, 1, 0, 7, buf), EMBER_ERR_INDEX);
    CHECK_OK(ember_ebc_read_rows(e, 0, 10, 0, buf));
    ember_ebc_table_info in;
    CHECK_STATUS(ember_ebc_get_table_info(e, 5, &in), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_ebc_get_table_info(e, 0, NULL), EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor_destroy(out);
    ember_tensor_destroy(g);
    ember_ebc_destroy(e);

    /* create */
    ember_ebc *x = NULL;
    ember_ebc_table_config ok = {.rows = 4, .dim = 2};
#define BAD_CREATE(st, ...)                                                                   \
    do {                                                                                      \
        ember_ebc_table_config t_ = ok;                                                       \
        ember_ebc_config c_ = {.num_tables = 1, .tables = &t_};                               \
        __VA_ARGS__;                                                                          \
        CHECK_STATUS(ember_ebc_create(&c_, &x), st);                                          \
        CHECK(x == NULL);                                                                     \
    } while (0)
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, t_.rows = 0);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, t_.dim = 0);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, t_.dim = -3);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, t_.format = (ember_row_format)4);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, t_.pooling = (ember_pooling)7);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.num_tables = 0);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.tables = NULL);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.tier = (ember_tier)9);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.cuda_kernel = (ember_ebc_cuda_kernel)9);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.row_align = 24);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.optim.type = (ember_sparse_optim)5);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.optim.eps = -1);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.optim.beta1 = 1.0f);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.optim.beta2 = -0.5f);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.optim.weight_decay = -0.1f);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.optim.max_grad_norm = INFINITY);
    BAD_CREATE(EMBER_ERR_INVALID_ARGUMENT, c_.optim.initial_accumulator = NAN);
    BAD_CREATE(EMBER_ERR_OVERFLOW, t_.rows = INT64_MAX / 4; t_.dim = 64);
    ember_memory *mm;
    CHECK_OK(ember_memory_create(&(ember_memory_config){.budget = {[EMBER_TIER_HOST] = 4096}}, &mm));
    BAD_CREATE(EMBER_ERR_OUT_OF_MEMORY, t_.rows = 1000; c_.mm = mm);
    ember_memory_stats ms;
    ember_memory_get_stats(mm, &ms);
    CHECK_EQ_INT(ms.live_total[EMBER_TIER_HOST], 0);
    ember_memory_destroy(mm);
    CHECK_STATUS(ember_ebc_create(NULL, &x), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_ebc_create(&(ember_ebc_config){.num_tables = 1, .tables = &ok}, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    ember_ebc_table_config named = {.name = "clicks", .rows = -5, .dim = 2};
    CHECK_STATUS(ember_ebc_create(&(ember_ebc_config){.num_tables = 1, .tables = &named}, &x),
                 EMBER_ERR_INVALID_ARGUMENT);
    check_msg("table 0 (\"clicks\")", "rows -5", NULL);
#undef BAD_CREATE
}

int main(void) {
    printf("cpu kernels: %s, threads %d\n", ember__ebc_cpu_isa(), ember_get_num_threads());
    test_layout();
    test_forward();
    test_forward_shapes();
    test_backward();
    test_determinism();
    test_rows_override();
    test_finite_differences();
    test_int8_bound();
    test_fixtures();
    test_steps_and_init();
    test_concurrent_forward();
    test_large_validation();
    test_bad_input();
    return check_summary();
}
