/*
 * Embedding bags on a GPU against the CPU kernels, through the public API.
 *
 * The same collection is built twice from the same seed: in host memory and in the
 * DEVICE tier of a manager on cuda:0. The same batches (copied to the GPU) go through
 * forward and three backward steps on both, for every row format, optimizer and GPU
 * formulation (WARP; CUSPARSE, which covers f32 rows and falls back to WARP for the
 * others), with narrow (sub-warp), warp-wide and wide (> 256 columns, the gradient
 * buffer path) dims, mean pooling and per-sample weights.
 * Tolerances: both sides accumulate in f32 in the same order (ids in bag order for the
 * forward, sorted ids with positions ascending for the coalesced gradient) but the GPU
 * contracts a*b+c into fused multiply-adds where the CPU's scalar tails do not, and
 * cuSPARSE sums in its own order: 1e-5 * (1 + |x|) on f32 values, plus one unit in the
 * last place for f16/bf16 rows and one quantisation step for int8-rowwise rows (a
 * rounding boundary may fall between the two f32 results).
 * Without a GPU the binary exits 77, which ctest reports as skipped.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static ember_memory *gpu_mm;
static uint64_t rs = 0x2545F4914F6CDD1Dull;
static uint64_t xr(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static float fr(float lo, float hi) { return lo + (hi - lo) * (float)((xr() >> 40) * (1.0 / 16777216.0)); }

static ember_tensor *host_tensor(ember_dtype dt, int ndim, int64_t d0, int64_t d1) {
    ember_tensor *t = NULL;
    ember_tensor_params p = {.dtype = dt, .ndim = ndim, .shape = {d0, d1}};
    if (ember_tensor_create(&p, &t) != EMBER_OK) {
        fprintf(stderr, "host tensor: %s\n", ember_last_error());
        exit(1);
    }
    return t;
}

static ember_tensor *to_gpu(const ember_tensor *h) {
    ember_tensor *d = NULL;
    if (ember_tensor_clone(h, EMBER_TIER_DEVICE, gpu_mm, &d) != EMBER_OK) {
        fprintf(stderr, "to_gpu: %s\n", ember_last_error());
        exit(1);
    }
    return d;
}

/* One table's batch on both sides. */
typedef struct {
    ember_tensor *off, *val, *w;    /* host */
    ember_tensor *doff, *dval, *dw; /* device */
} side_batch;

static void make_batch(side_batch *s, int64_t batch, int64_t rows, int maxlen, int weights, int64_t skip) {
    int64_t n = skip;
    s->off = host_tensor(EMBER_DTYPE_I64, 1, batch + 1, 0);
    int64_t *o = ember_tensor_data(s->off);
    o[0] = skip;
    for (int64_t b = 0; b < batch; b++) {
        n += b == 1 ? 0 : (int64_t)(xr() % (uint64_t)(maxlen + 1));
        o[b + 1] = n;
    }
    int64_t len = n + 3;
    s->val = host_tensor(EMBER_DTYPE_I64, 1, len, 0);
    int64_t *v = ember_tensor_data(s->val);
    for (int64_t k = 0; k < len; k++) v[k] = (int64_t)(xr() % (uint64_t)rows);
    if (batch > 2 && o[3] - o[2] >= 2) v[o[2] + 1] = v[o[2]];
    s->w = NULL;
    if (weights) {
        s->w = host_tensor(EMBER_DTYPE_F32, 1, len, 0);
        float *w = ember_tensor_data(s->w);
        for (int64_t k = 0; k < len; k++) w[k] = fr(-0.5f, 1.5f);
    }
    s->doff = to_gpu(s->off);
    s->dval = to_gpu(s->val);
    s->dw = s->w ? to_gpu(s->w) : NULL;
}

static void free_batch(side_batch *s) {
    ember_tensor_destroy(s->off);
    ember_tensor_destroy(s->val);
    ember_tensor_destroy(s->w);
    ember_tensor_destroy(s->doff);
    ember_tensor_destroy(s->dval);
    ember_tensor_destroy(s->dw);
}

static ember_jagged_feature feature(const side_batch *s, int gpu) {
    const ember_tensor *v = gpu ? s->dval : s->val, *o = gpu ? s->doff : s->off, *w = gpu ? s->dw : s->w;
    return (ember_jagged_feature){.values = ember_tensor_data(v),
                                  .offsets = ember_tensor_data(o),
                                  .weights = w ? ember_tensor_data(w) : NULL,
                                  .length = ember_tensor_dim(v, 0)};
}

static int close_rows(const float *a, const float *b, int64_t rows, int dim, int fmt, const char *what) {
    for (int64_t r = 0; r < rows; r++) {
        float mn = a[r * dim], mx = mn;
        for (int j = 0; j < dim; j++) {
            mn = fminf(mn, a[r * dim + j]);
            mx = fmaxf(mx, a[r * dim + j]);
        }
        for (int j = 0; j < dim; j++) {
            double x = a[r * dim + j], y = b[r * dim + j];
            double tol = 1e-5 * (1 + fabs(x));
            if (fmt == EMBER_ROW_FORMAT_F16) tol += fabs(x) * 0x1p-10 + 0x1p-24;
            if (fmt == EMBER_ROW_FORMAT_BF16) tol += fabs(x) * 0x1p-7;
            if (fmt == EMBER_ROW_FORMAT_INT8_ROWWISE) tol += (mx - mn) / 255.0 * 1.01;
            if (!(fabs(x - y) <= tol)) {
                fprintf(stderr, "FAIL %s: row %lld col %d: cpu %.9g gpu %.9g (tol %.3g)\n", what, (long long)r, j, x,
                        y, tol);
                return 0;
            }
        }
    }
    return 1;
}

/* Copy every record (weights and state) of the CPU collection into the GPU one, so each
 * step is compared from the same start. */
static void sync_tables(const ember_ebc *c, ember_ebc *g) {
    for (int t = 0; t < ember_ebc_num_tables(c); t++) {
        ember_ebc_table_info ic, ig;
        CHECK_OK(ember_ebc_get_table_info(c, t, &ic));
        CHECK_OK(ember_ebc_get_table_info(g, t, &ig));
        int64_t bytes = ic.rows * (int64_t)ic.record_bytes;
        ember_tensor *hc = NULL, *dg = NULL;
        CHECK_OK(ember_tensor_wrap(ic.data, EMBER_DTYPE_U8, 1, &bytes, NULL, EMBER_CPU, &hc));
        CHECK_OK(ember_tensor_wrap(ig.data, EMBER_DTYPE_U8, 1, &bytes, NULL, EMBER_CUDA(0), &dg));
        if (hc && dg) CHECK_OK(ember_tensor_copy(dg, hc));
        ember_tensor_destroy(hc);
        ember_tensor_destroy(dg);
    }
    CHECK_OK(ember_device_synchronize(EMBER_CUDA(0)));
}

static void run_case(int fmt, ember_sparse_optim opt, ember_ebc_cuda_kernel kernel, int dim, int pooling,
                     int weights) {
    char what[160];
    snprintf(what, sizeof what, "%s %s kernel=%d dim=%d pool=%d weights=%d", ember_row_format_name(fmt),
             ember_sparse_optim_name(opt), (int)kernel, dim, pooling, weights);
    const int64_t rows[2] = {83, 7};
    ember_ebc_table_config tc[2] = {{.name = "a", .rows = rows[0], .dim = dim, .format = fmt, .pooling = pooling},
                                    {.name = "b", .rows = rows[1], .dim = 3, .format = fmt}};
    ember_sparse_optim_config o = {.type = opt, .weight_decay = 0.01f, .max_grad_norm = 2.0f};
    ember_ebc *c = NULL, *g = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 2, .tables = tc, .optim = o}, &c));
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 2, .tables = tc, .optim = o, .mm = gpu_mm,
                                                  .tier = EMBER_TIER_DEVICE, .cuda_kernel = kernel},
                              &g));
    if (!c || !g) {
        ember_ebc_destroy(c);
        ember_ebc_destroy(g);
        return;
    }
    CHECK(ember_device_equal(ember_ebc_device(g), EMBER_CUDA(0)));
    ember_rng r1 = {.seed = 77}, r2 = {.seed = 77};
    CHECK_OK(ember_ebc_init_uniform(c, &r1, -1, 1));
    CHECK_OK(ember_ebc_init_uniform(g, &r2, -1, 1));
    int64_t D = ember_ebc_output_dim(c), B = 29;
    float *a = malloc((size_t)(rows[0] * dim) * 4), *b = malloc((size_t)(rows[0] * dim) * 4);
    for (int step = 1; step <= 3; step++) {
        side_batch sb[2];
        for (int t = 0; t < 2; t++)
            make_batch(&sb[t], B, rows[t], t == 0 ? 9 : 3, weights && (t == 1 || pooling == EMBER_POOLING_SUM),
                       step - 1);
        ember_jagged_feature fc[2] = {feature(&sb[0], 0), feature(&sb[1], 0)};
        ember_jagged_feature fg[2] = {feature(&sb[0], 1), feature(&sb[1], 1)};
        ember_jagged jc = {.batch = B, .num_features = 2, .features = fc};
        ember_jagged jg = {.batch = B, .num_features = 2, .features = fg};
        ember_tensor *oc = host_tensor(EMBER_DTYPE_F32, 2, B, D), *og_h = host_tensor(EMBER_DTYPE_F32, 2, B, D);
        ember_tensor *og = to_gpu(oc);
        CHECK_OK(ember_ebc_forward(c, &jc, oc, NULL));
        CHECK_OK(ember_ebc_forward(g, &jg, og, NULL));
        CHECK_OK(ember_tensor_copy(og_h, og));
        char w2[200];
        snprintf(w2, sizeof w2, "%s forward step %d", what, step);
        check__report(close_rows(ember_tensor_data(oc), ember_tensor_data(og_h), B, (int)D, EMBER_ROW_FORMAT_F32, w2),
                      __FILE__, __LINE__, w2);
        ember_tensor *gc = host_tensor(EMBER_DTYPE_F32, 2, B, D);
        float *gp = ember_tensor_data(gc);
        for (int64_t i = 0; i < B * D; i++) gp[i] = fr(-1, 1);
        ember_tensor *gg = to_gpu(gc);
        float lr = 0.05f / (float)step;
        CHECK_OK(ember_ebc_backward(c, &jc, gc, &(ember_ebc_call){.lr = lr}));
        CHECK_OK(ember_ebc_backward(g, &jg, gg, &(ember_ebc_call){.lr = lr}));
        CHECK_OK(ember_device_synchronize(EMBER_CUDA(0)));
        CHECK_OK(ember_ebc_read_rows(c, 0, 0, rows[0], a));
        CHECK_OK(ember_ebc_read_rows(g, 0, 0, rows[0], b));
        snprintf(w2, sizeof w2, "%s backward step %d", what, step);
        check__report(close_rows(a, b, rows[0], dim, fmt, w2), __FILE__, __LINE__, w2);
        /* the GPU follows its own rounding from here, so continue from the CPU's rows */
        sync_tables(c, g);
        ember_tensor_destroy(oc);
        ember_tensor_destroy(og_h);
        ember_tensor_destroy(og);
        ember_tensor_destroy(gc);
        ember_tensor_destroy(gg);
        for (int t = 0; t < 2; t++) free_batch(&sb[t]);
    }
    free(a);
    free(b);
    ember_ebc_destroy(c);
    ember_ebc_destroy(g);
}

/* A bad id on the GPU gives the CPU's message. */
static void test_validation(void) {
    ember_ebc_table_config tc[1] = {{.name = "item", .rows = 6, .dim = 4}};
    ember_ebc *c = NULL, *g = NULL;
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 1, .tables = tc}, &c));
    CHECK_OK(ember_ebc_create(&(ember_ebc_config){.num_tables = 1, .tables = tc, .mm = gpu_mm,
                                                  .tier = EMBER_TIER_DEVICE},
                              &g));
    if (!c || !g) return;
    ember_tensor *off = host_tensor(EMBER_DTYPE_I64, 1, 4, 0), *val = host_tensor(EMBER_DTYPE_I64, 1, 4, 0);
    int64_t *o = ember_tensor_data(off), *v = ember_tensor_data(val);
    o[0] = 0, o[1] = 1, o[2] = 1, o[3] = 4;
    v[0] = 1, v[1] = 2, v[2] = 9, v[3] = 0;
    ember_tensor *doff = to_gpu(off), *dval = to_gpu(val);
    ember_jagged_feature fc = {.values = v, .offsets = o, .length = 4};
    ember_jagged_feature fg = {.values = ember_tensor_data(dval), .offsets = ember_tensor_data(doff), .length = 4};
    ember_tensor *oc = host_tensor(EMBER_DTYPE_F32, 2, 3, 4), *og = to_gpu(oc);
    CHECK_STATUS(ember_ebc_forward(c, &(ember_jagged){.batch = 3, .num_features = 1, .features = &fc}, oc, NULL),
                 EMBER_ERR_INDEX);
    char cpu_msg[512];
    snprintf(cpu_msg, sizeof cpu_msg, "%s", ember_last_error());
    CHECK_STATUS(ember_ebc_forward(g, &(ember_jagged){.batch = 3, .num_features = 1, .features = &fg}, og, NULL),
                 EMBER_ERR_INDEX);
    CHECK_STR(ember_last_error(), cpu_msg);
    ember_tensor *bad_dev = host_tensor(EMBER_DTYPE_F32, 2, 3, 4);
    CHECK_STATUS(ember_ebc_forward(g, &(ember_jagged){.batch = 3, .num_features = 1, .features = &fg}, bad_dev, NULL),
                 EMBER_ERR_DEVICE);
    ember_tensor_destroy(bad_dev);
    ember_tensor_destroy(off);
    ember_tensor_destroy(val);
    ember_tensor_destroy(doff);
    ember_tensor_destroy(dval);
    ember_tensor_destroy(oc);
    ember_tensor_destroy(og);
    ember_ebc_destroy(c);
    ember_ebc_destroy(g);
}

int main(void) {
    if (ember_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &gpu_mm));
    if (!gpu_mm) return check_summary();
    static const int dims[] = {4, 16, 64, 100, 300};
    for (int kernel = EMBER_EBC_CUDA_WARP; kernel <= EMBER_EBC_CUDA_CUSPARSE; kernel++) {
        ember_features f;
        ember_get_features(&f);
        if (kernel == EMBER_EBC_CUDA_CUSPARSE && !f.cusparse) continue;
        for (int fmt = 0; fmt < EMBER_ROW_FORMAT_COUNT; fmt++)
            for (int opt = 0; opt < EMBER_SPARSE_OPTIM_COUNT; opt++)
                for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
                    run_case(fmt, (ember_sparse_optim)opt, (ember_ebc_cuda_kernel)kernel, dims[d],
                             d % 2 ? EMBER_POOLING_MEAN : EMBER_POOLING_SUM, d % 2 == 0);
    }
    test_validation();
    ember_memory_destroy(gpu_mm);
    return check_summary();
}
