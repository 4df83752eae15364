/*
 * CPU vs CUDA, kernel by kernel, through the public API.
 *
 * Every case builds its input on the host (HOST tier of the default manager), copies
 * it into the DEVICE tier of a manager on cuda:0, runs the same call on both tensors,
 * brings the GPU result back and compares. The two backends share engine/half.h and
 * engine/philox.h and round the same way, so most kernels must agree bit for bit:
 *   bit-exact: fill, convert, copies, unary NEG/ABS/SQUARE/SQRT/RELU, binary, scale,
 *              axpy, reduce MAX/MIN, rng bits and uniform.
 *   tolerant:  transcendental unary ops (CUDA's expf/logf/tanhf/log1pf are within
 *              2 ulp, glibc's within 1: a few f32 ulp apart, which can flip one f16 or
 *              bf16 rounding), sums (double accumulation in different orders, then one
 *              f32 rounding: 1 ulp), gemm (cuBLAS vs OpenBLAS summation order, 1e-4
 *              relative), normals (logf/cosf/sinf, 1e-5).
 * Without a GPU the binary exits 77, which ctest reports as skipped.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

static ember_memory *gpu_mm; /* DEVICE tier on cuda:0, no budgets */

static const ember_dtype all_dtypes[] = {EMBER_DTYPE_F32, EMBER_DTYPE_F16, EMBER_DTYPE_BF16,
                                         EMBER_DTYPE_I8,  EMBER_DTYPE_U8,  EMBER_DTYPE_I32,
                                         EMBER_DTYPE_I64};
static const ember_dtype float_dtypes[] = {EMBER_DTYPE_F32, EMBER_DTYPE_F16, EMBER_DTYPE_BF16};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- tensors on both sides ---- */

static ember_tensor *new_tensor(ember_dtype dt, int ndim, const int64_t *shape, ember_tier tier,
                                ember_memory *mm) {
    ember_tensor_params p = {.dtype = dt, .ndim = ndim, .tier = tier, .mm = mm};
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    ember_tensor *t = NULL;
    CHECK_OK(ember_tensor_create(&p, &t));
    return t;
}

static ember_tensor *host_new(ember_dtype dt, int ndim, const int64_t *shape) {
    return new_tensor(dt, ndim, shape, EMBER_TIER_HOST, ember_memory_default());
}

static ember_tensor *dev_new(ember_dtype dt, int ndim, const int64_t *shape) {
    return new_tensor(dt, ndim, shape, EMBER_TIER_DEVICE, gpu_mm);
}

/* Contiguous device copy of any tensor. */
static ember_tensor *to_dev(const ember_tensor *t) {
    ember_tensor *d = NULL;
    CHECK_OK(ember_tensor_clone(t, EMBER_TIER_DEVICE, gpu_mm, &d));
    return d;
}

/* Contiguous host copy of any tensor (waits for the GPU). */
static ember_tensor *to_host(const ember_tensor *t) {
    ember_tensor *h = NULL;
    CHECK_OK(ember_tensor_clone(t, EMBER_TIER_HOST, ember_memory_default(), &h));
    return h;
}

/* Deterministic test data (xorshift64*), independent of the library's RNG. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rand_unit(void) { /* [0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* Host tensor of dtype dt holding f32 values v[i] converted by the CPU backend. */
static ember_tensor *host_from(ember_dtype dt, int ndim, const int64_t *shape, const float *v) {
    ember_tensor *f = host_new(EMBER_DTYPE_F32, ndim, shape);
    memcpy(ember_tensor_data(f), v, ember_tensor_nbytes(f));
    if (dt == EMBER_DTYPE_F32) return f;
    ember_tensor *t = host_new(dt, ndim, shape);
    CHECK_OK(ember_tensor_convert(t, f));
    ember_tensor_destroy(f);
    return t;
}

/* Host tensor with uniform values in [lo, hi). */
static ember_tensor *host_uniform(ember_dtype dt, int ndim, const int64_t *shape, double lo,
                                  double hi) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * rand_unit());
    ember_tensor *t = host_from(dt, ndim, shape, v);
    free(v);
    return t;
}

/* Values of either sign in [0.5, 3) in magnitude, so a division by them is well
 * conditioned. */
static ember_tensor *host_away_from_zero(ember_dtype dt, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        double mag = 0.5 + 2.5 * rand_unit();
        v[i] = (float)(rand_unit() < 0.5 ? -mag : mag);
    }
    ember_tensor *t = host_from(dt, ndim, shape, v);
    free(v);
    return t;
}

/* Element i of a contiguous host tensor, as a double. */
static double elem(const ember_tensor *t, int64_t i) {
    return check_elem(ember_tensor_data(t), ember_tensor_dtype(t), i);
}

/* ---- comparisons (ref: CPU result on the host; got: GPU result, any tier) ---- */

/*
 * Same dtype, shape and bytes; reports the first differing element. NaNs match any NaN:
 * the payload of a NaN an operation creates (sqrt(-1)) is the hardware's choice (x86
 * gives 0xffc00000, CUDA 0x7fffffff), and IEEE 754 leaves it open.
 */
static void check_bits(const char *what, const ember_tensor *ref, const ember_tensor *got) {
    ember_tensor *g = to_host(got);
    CHECK_EQ_INT(ember_tensor_dtype(g), ember_tensor_dtype(ref));
    CHECK_EQ_INT(ember_tensor_numel(g), ember_tensor_numel(ref));
    ember_dtype dt = ember_tensor_dtype(ref);
    size_t es = ember_dtype_size(dt);
    int64_t n = ember_tensor_numel(ref), bad = -1;
    const unsigned char *a = ember_tensor_data(ref), *b = ember_tensor_data(g);
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (memcmp(a + (size_t)i * es, b + (size_t)i * es, es) != 0 &&
            !(ember_dtype_is_float(dt) && isnan(elem(ref, i)) && isnan(elem(g, i))))
            bad = i;
    if (bad >= 0)
        fprintf(stderr, "  %s: element %lld differs: cpu %.9g, cuda %.9g\n", what, (long long)bad,
                elem(ref, bad), elem(g, bad));
    CHECK(bad < 0);
    ember_tensor_destroy(g);
}

/* |got - ref| <= atol + rtol * |ref| element-wise; NaN must match NaN. */
static void check_close(const char *what, const ember_tensor *ref, const ember_tensor *got,
                        double rtol, double atol) {
    ember_tensor *g = to_host(got);
    CHECK_EQ_INT(ember_tensor_numel(g), ember_tensor_numel(ref));
    int64_t n = ember_tensor_numel(ref), bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        double r = elem(ref, i), x = elem(g, i);
        if (isnan(r) || isnan(x)) {
            if (!(isnan(r) && isnan(x))) bad = i;
        } else if (isinf(r) || isinf(x)) {
            if (r != x) bad = i;
        } else if (!(fabs(x - r) <= atol + rtol * fabs(r))) {
            bad = i;
        }
    }
    if (bad >= 0)
        fprintf(stderr, "  %s: element %lld: cpu %.9g, cuda %.9g (rtol %.2g, atol %.2g)\n", what,
                (long long)bad, elem(ref, bad), elem(g, bad), rtol, atol);
    CHECK(bad < 0);
    ember_tensor_destroy(g);
}

/* One storage rounding of each float dtype, as a relative tolerance. */
static double storage_rtol(ember_dtype dt) {
    switch (dt) {
    case EMBER_DTYPE_F16: return 1.0 / 1024;
    case EMBER_DTYPE_BF16: return 1.0 / 128;
    default: return 2e-6; /* f32: a few ulp */
    }
}

/* ---- the kernels ---- */

static void test_devices(void) {
    CHECK_OK(ember_device_check(EMBER_CUDA(0)));
    CHECK_STATUS(ember_device_check(EMBER_CUDA(ember_cuda_device_count())), EMBER_ERR_DEVICE);
    CHECK_OK(ember_device_synchronize(EMBER_CUDA(0)));
#ifdef EMBER_HAVE_CUDA
    ember__cuda_device_info info;
    CHECK_OK(ember__cuda_get_device_info(0, &info));
    CHECK(info.name[0] != '\0');
    CHECK(info.total_mem > 0 && info.free_mem <= info.total_mem);
    CHECK(info.cc_major >= 5 && info.sm_count > 0);
    CHECK_STATUS(ember__cuda_get_device_info(ember_cuda_device_count(), &info), EMBER_ERR_DEVICE);
    int rt = 0, drv = 0, blas = 0;
    ember__cuda_versions(&rt, &drv, &blas);
    CHECK(rt > 0 && drv > 0 && blas > 0);

    /* An allocation the GPU cannot hold maps to OUT_OF_MEMORY naming the call, and the
     * failure does not linger to be blamed on the next kernel. */
    void *p = NULL;
    CHECK_STATUS(ember__cuda_malloc(0, (size_t)1 << 52, &p), EMBER_ERR_OUT_OF_MEMORY);
    CHECK(p == NULL);
    CHECK(strstr(ember_last_error(), "cudaMalloc(") != NULL);
    CHECK(strstr(ember_last_error(), "on cuda:0") != NULL);
    ember_tensor *t = dev_new(EMBER_DTYPE_F32, 1, (int64_t[]){1000});
    CHECK_OK(ember_tensor_fill(t, 3.0));
    ember_tensor_destroy(t);
#endif
}

static void test_fill(void) {
    /* In-range, fractional, negative (saturates for u8), out of every int range,
     * overflowing f16, NaN and infinities: each converted the same way on both sides. */
    static const double values[] = {0.0,  1.5,  -2.75, 100.9,    0.1,      -1e9,
                                    1e30, 7e4,  -0.0,  NAN,      INFINITY, -INFINITY,
                                    255.5, -128.5, 2147483648.0, 9.3e18};
    const int64_t n = 100003; /* not a multiple of any block size */
    for (int d = 0; d < COUNT(all_dtypes); d++) {
        for (int v = 0; v < COUNT(values); v++) {
            ember_tensor *h = host_new(all_dtypes[d], 1, &n), *g = dev_new(all_dtypes[d], 1, &n);
            CHECK_OK(ember_tensor_fill(h, values[v]));
            CHECK_OK(ember_tensor_fill(g, values[v]));
            char what[64];
            snprintf(what, sizeof what, "fill %s %g", ember_dtype_name(all_dtypes[d]), values[v]);
            check_bits(what, h, g);
            ember_tensor_destroy(h);
            ember_tensor_destroy(g);
        }
    }
    /* A fill of a strided view (the zero-stride broadcast copy). */
    ember_tensor *h = host_new(EMBER_DTYPE_F32, 2, (int64_t[]){6, 10});
    CHECK_OK(ember_tensor_fill(h, -1.0));
    ember_tensor *g = to_dev(h), *hv = NULL, *gv = NULL;
    CHECK_OK(ember_tensor_narrow(h, 1, 2, 5, &hv));
    CHECK_OK(ember_tensor_narrow(g, 1, 2, 5, &gv));
    CHECK_OK(ember_tensor_fill(hv, 4.25));
    CHECK_OK(ember_tensor_fill(gv, 4.25));
    check_bits("fill of a narrowed view", h, g);
    ember_tensor_destroy(hv);
    ember_tensor_destroy(gv);
    ember_tensor_destroy(h);
    ember_tensor_destroy(g);

    /* More elements than the grid has threads: the grid-stride loops must cover them. */
    const int64_t big = ((int64_t)1 << 24) + 4099;
    h = host_new(EMBER_DTYPE_F16, 1, &big);
    g = dev_new(EMBER_DTYPE_F16, 1, &big);
    CHECK_OK(ember_tensor_fill(h, 0.3));
    CHECK_OK(ember_tensor_fill(g, 0.3));
    check_bits("fill f16 beyond one grid", h, g);
    CHECK_OK(ember_scale(h, h, 2.0, 1.0));
    CHECK_OK(ember_scale(g, g, 2.0, 1.0));
    check_bits("scale f16 beyond one grid", h, g);
    ember_tensor_destroy(h);
    ember_tensor_destroy(g);
}

static void test_convert(void) {
    /* Values that exercise truncation, saturation of every integer type, f16 overflow,
     * signed zero, NaN and the infinities. */
    static const float specials[] = {-300.7f, -128.5f, -1.5f,  -0.0f,     0.3f,      1.9f,
                                     127.6f,  255.5f,  300.2f, 65504.0f,  70000.0f,  1e10f,
                                     -1e10f,  3e38f,   NAN,    INFINITY,  -INFINITY, 4.6e18f,
                                     1e19f,   -1e19f,  33.3f,  0.0001f,   -7.0f,     16777217.0f};
    const int64_t n = 4099;
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = i < COUNT(specials) ? specials[i] : (float)(-400.0 + 800.0 * rand_unit());
    for (int s = 0; s < COUNT(all_dtypes); s++) {
        /* The source holds v as the CPU converts it, so both sides start from one tensor. */
        ember_tensor *hs = host_from(all_dtypes[s], 1, &n, v), *gs = to_dev(hs);
        for (int d = 0; d < COUNT(all_dtypes); d++) {
            ember_tensor *hd = host_new(all_dtypes[d], 1, &n), *gd = dev_new(all_dtypes[d], 1, &n);
            CHECK_OK(ember_tensor_convert(hd, hs));
            CHECK_OK(ember_tensor_convert(gd, gs));
            char what[64];
            snprintf(what, sizeof what, "convert %s -> %s", ember_dtype_name(all_dtypes[s]),
                     ember_dtype_name(all_dtypes[d]));
            check_bits(what, hd, gd);
            ember_tensor_destroy(hd);
            ember_tensor_destroy(gd);
        }
        ember_tensor_destroy(hs);
        ember_tensor_destroy(gs);
    }
    free(v);
}

static void test_copy_strided(void) {
    static const ember_dtype dts[] = {EMBER_DTYPE_F32, EMBER_DTYPE_F16, EMBER_DTYPE_U8,
                                      EMBER_DTYPE_I64};
    for (int d = 0; d < COUNT(dts); d++) {
        const char *dn = ember_dtype_name(dts[d]);
        char what[96];
        /* transpose of a (3, 4, 5) tensor, made contiguous on each side */
        ember_tensor *h = host_uniform(dts[d], 3, (int64_t[]){3, 4, 5}, 0, 100), *g = to_dev(h);
        ember_tensor *ht = NULL, *gt = NULL, *hc = NULL, *gc = NULL;
        CHECK_OK(ember_tensor_transpose(h, 0, 2, &ht));
        CHECK_OK(ember_tensor_transpose(g, 0, 2, &gt));
        CHECK_OK(ember_tensor_contiguous(ht, &hc));
        CHECK_OK(ember_tensor_contiguous(gt, &gc));
        CHECK_EQ_INT(ember_tensor_tier(gc), EMBER_TIER_DEVICE);
        snprintf(what, sizeof what, "contiguous(transpose) %s", dn);
        check_bits(what, hc, gc);

        /* strided destination: write a contiguous (5, 4, 3) into a transposed view */
        ember_tensor *h2 = host_new(dts[d], 3, (int64_t[]){3, 4, 5}), *g2 = dev_new(dts[d], 3,
                                                                             (int64_t[]){3, 4, 5});
        CHECK_OK(ember_tensor_fill(h2, 0));
        CHECK_OK(ember_tensor_fill(g2, 0));
        ember_tensor *h2t = NULL, *g2t = NULL;
        CHECK_OK(ember_tensor_transpose(h2, 0, 2, &h2t));
        CHECK_OK(ember_tensor_transpose(g2, 0, 2, &g2t));
        CHECK_OK(ember_tensor_copy(h2t, hc));
        CHECK_OK(ember_tensor_copy(g2t, gc));
        snprintf(what, sizeof what, "copy into transposed view %s", dn);
        check_bits(what, h2, g2);
        check_bits("transpose round trip", h, g2);

        /* 4-D permute of a narrowed view: strided on both sides, nothing merges */
        ember_tensor *h4 = host_uniform(dts[d], 4, (int64_t[]){4, 3, 6, 5}, 0, 100), *g4 = to_dev(h4);
        ember_tensor *hn = NULL, *gn = NULL, *hp = NULL, *gp = NULL, *hpc = NULL, *gpc = NULL;
        CHECK_OK(ember_tensor_narrow(h4, 2, 1, 4, &hn));
        CHECK_OK(ember_tensor_narrow(g4, 2, 1, 4, &gn));
        CHECK_OK(ember_tensor_permute(hn, (int[]){3, 1, 0, 2}, &hp));
        CHECK_OK(ember_tensor_permute(gn, (int[]){3, 1, 0, 2}, &gp));
        CHECK_OK(ember_tensor_contiguous(hp, &hpc));
        CHECK_OK(ember_tensor_contiguous(gp, &gpc));
        snprintf(what, sizeof what, "contiguous(permute(narrow)) %s", dn);
        check_bits(what, hpc, gpc);
        /* and straight to the host from the strided device view */
        ember_tensor *back = host_new(dts[d], 4, ember_tensor_shape(gp));
        CHECK_OK(ember_tensor_copy(back, gp));
        check_bits("strided device view -> host", hpc, back);

        ember_tensor *views[] = {ht, gt, hc, gc, h2t, g2t, h2, g2, h, g, hn, gn, hp, gp,
                                 hpc, gpc, back, h4, g4};
        for (int i = 0; i < COUNT(views); i++) ember_tensor_destroy(views[i]);
    }
    /* A large transpose: many blocks, 32-bit index path. */
    ember_tensor *h = host_uniform(EMBER_DTYPE_F32, 2, (int64_t[]){257, 1031}, -1, 1), *g = to_dev(h);
    ember_tensor *ht = NULL, *gt = NULL, *hc = NULL, *gc = NULL;
    CHECK_OK(ember_tensor_transpose(h, 0, 1, &ht));
    CHECK_OK(ember_tensor_transpose(g, 0, 1, &gt));
    CHECK_OK(ember_tensor_contiguous(ht, &hc));
    CHECK_OK(ember_tensor_contiguous(gt, &gc));
    check_bits("large transpose", hc, gc);
    ember_tensor *all[] = {h, g, ht, gt, hc, gc};
    for (int i = 0; i < COUNT(all); i++) ember_tensor_destroy(all[i]);
}

static const char *unary_names[EMBER_UNARY_OP_COUNT] = {
    "neg", "abs", "square", "sqrt", "exp", "log", "relu", "sigmoid", "tanh", "log1p_relu"};

static void test_unary(void) {
    const int64_t n = 10007;
    for (int op = 0; op < EMBER_UNARY_OP_COUNT; op++) {
        int positive = op == EMBER_UNARY_SQRT || op == EMBER_UNARY_LOG;
        int exact = op == EMBER_UNARY_NEG || op == EMBER_UNARY_ABS || op == EMBER_UNARY_SQUARE ||
                    op == EMBER_UNARY_SQRT || op == EMBER_UNARY_RELU;
        for (int d = 0; d < COUNT(float_dtypes); d++) {
            ember_dtype dt = float_dtypes[d];
            ember_tensor *hx = positive ? host_uniform(dt, 1, &n, 0.01, 8.0)
                                        : host_uniform(dt, 1, &n, -6.0, 6.0);
            ember_tensor *gx = to_dev(hx);
            ember_tensor *hy = host_new(dt, 1, &n), *gy = dev_new(dt, 1, &n);
            CHECK_OK(ember_unary((ember_unary_op)op, hy, hx));
            CHECK_OK(ember_unary((ember_unary_op)op, gy, gx));
            char what[64];
            snprintf(what, sizeof what, "unary %s %s", unary_names[op], ember_dtype_name(dt));
            if (exact)
                check_bits(what, hy, gy);
            else
                check_close(what, hy, gy, storage_rtol(dt), 1e-7);
            /* in place (out == x) gives the bits of the out-of-place call */
            ember_tensor *gyh = to_host(gy);
            CHECK_OK(ember_unary((ember_unary_op)op, gx, gx));
            snprintf(what, sizeof what, "unary %s %s in place", unary_names[op], ember_dtype_name(dt));
            check_bits(what, gyh, gx);
            ember_tensor *all[] = {hx, gx, hy, gy, gyh};
            for (int i = 0; i < COUNT(all); i++) ember_tensor_destroy(all[i]);
        }
    }
    /* Special inputs: NaN, infinities, signed zeros, a subnormal. The ops that round
     * once (or not at all) agree bit for bit; the others must still agree on which
     * results are NaN or infinite. */
    static const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f, -1.0f, 1e-40f, -1e-40f};
    const int64_t ns = COUNT(sp);
    for (int op = 0; op < EMBER_UNARY_OP_COUNT; op++) {
        int exact = op == EMBER_UNARY_NEG || op == EMBER_UNARY_ABS || op == EMBER_UNARY_SQUARE ||
                    op == EMBER_UNARY_SQRT || op == EMBER_UNARY_RELU;
        ember_tensor *hx = host_from(EMBER_DTYPE_F32, 1, &ns, sp), *gx = to_dev(hx);
        ember_tensor *hy = host_new(EMBER_DTYPE_F32, 1, &ns), *gy = dev_new(EMBER_DTYPE_F32, 1, &ns);
        CHECK_OK(ember_unary((ember_unary_op)op, hy, hx));
        CHECK_OK(ember_unary((ember_unary_op)op, gy, gx));
        char what[64];
        snprintf(what, sizeof what, "unary %s on special values", unary_names[op]);
        if (exact)
            check_bits(what, hy, gy);
        else
            check_close(what, hy, gy, 2e-6, 1e-38);
        ember_tensor *all[] = {hx, gx, hy, gy};
        for (int k = 0; k < COUNT(all); k++) ember_tensor_destroy(all[k]);
    }
}

static const char *binary_names[EMBER_BINARY_OP_COUNT] = {"add", "sub", "mul", "div", "max", "min"};

static void test_binary(void) {
    const int64_t ashape[2] = {37, 64};
    /* b: same shape, a trailing row (bias), one element (scalar) */
    const int64_t bshapes[3][2] = {{37, 64}, {64, 0}, {1, 0}};
    const int bndims[3] = {2, 1, 1};
    for (int op = 0; op < EMBER_BINARY_OP_COUNT; op++) {
        for (int d = 0; d < COUNT(float_dtypes); d++) {
            ember_dtype dt = float_dtypes[d];
            for (int bs = 0; bs < 3; bs++) {
                ember_tensor *ha = host_uniform(dt, 2, ashape, -4, 4), *ga = to_dev(ha);
                ember_tensor *hb = host_away_from_zero(dt, bndims[bs], bshapes[bs]);
                ember_tensor *gb = to_dev(hb);
                ember_tensor *ho = host_new(dt, 2, ashape), *go = dev_new(dt, 2, ashape);
                CHECK_OK(ember_binary((ember_binary_op)op, ho, ha, hb));
                CHECK_OK(ember_binary((ember_binary_op)op, go, ga, gb));
                char what[80];
                snprintf(what, sizeof what, "binary %s %s (b %s)", binary_names[op],
                         ember_dtype_name(dt), bs == 0 ? "same" : bs == 1 ? "row" : "scalar");
                check_bits(what, ho, go);
                /* out aliases a */
                CHECK_OK(ember_binary((ember_binary_op)op, ga, ga, gb));
                check_bits("binary in place", ho, ga);
                ember_tensor *all[] = {ha, ga, hb, gb, ho, go};
                for (int i = 0; i < COUNT(all); i++) ember_tensor_destroy(all[i]);
            }
        }
    }
}

static void test_scale_axpy(void) {
    const int64_t n = 70001;
    for (int d = 0; d < COUNT(float_dtypes); d++) {
        ember_dtype dt = float_dtypes[d];
        ember_tensor *hx = host_uniform(dt, 1, &n, -3, 3), *gx = to_dev(hx);
        ember_tensor *hy = host_uniform(dt, 1, &n, -3, 3), *gy = to_dev(hy);
        ember_tensor *ho = host_new(dt, 1, &n), *go = dev_new(dt, 1, &n);
        CHECK_OK(ember_scale(ho, hx, 1.7, -0.3));
        CHECK_OK(ember_scale(go, gx, 1.7, -0.3));
        char what[48];
        snprintf(what, sizeof what, "scale %s", ember_dtype_name(dt));
        check_bits(what, ho, go);
        CHECK_OK(ember_axpy(hy, -0.45, hx));
        CHECK_OK(ember_axpy(gy, -0.45, gx));
        snprintf(what, sizeof what, "axpy %s", ember_dtype_name(dt));
        check_bits(what, hy, gy);
        ember_tensor *all[] = {hx, gx, hy, gy, ho, go};
        for (int i = 0; i < COUNT(all); i++) ember_tensor_destroy(all[i]);
    }
}

static const char *reduce_names[EMBER_REDUCE_OP_COUNT] = {"sum", "mean", "max", "min", "sumsq"};

static void test_reduce(void) {
    /* (outer, inner): short rows, rows longer than a block's stride, one long row */
    static const int64_t shapes[][2] = {{7, 1000}, {3, 100003}, {1, 300001}, {1000, 3}};
    for (int op = 0; op < EMBER_REDUCE_OP_COUNT; op++) {
        int exact = op == EMBER_REDUCE_MAX || op == EMBER_REDUCE_MIN;
        for (int d = 0; d < COUNT(float_dtypes); d++) {
            ember_dtype dt = float_dtypes[d];
            for (int s = 0; s < COUNT(shapes); s++) {
                int64_t outer = shapes[s][0];
                ember_tensor *hx = host_uniform(dt, 2, shapes[s], -1, 1), *gx = to_dev(hx);
                ember_tensor *ho = host_new(EMBER_DTYPE_F32, 1, &outer);
                ember_tensor *go = dev_new(EMBER_DTYPE_F32, 1, &outer);
                ember_tensor *go2 = dev_new(EMBER_DTYPE_F32, 1, &outer);
                CHECK_OK(ember_reduce((ember_reduce_op)op, ho, hx, 1));
                CHECK_OK(ember_reduce((ember_reduce_op)op, go, gx, 1));
                CHECK_OK(ember_reduce((ember_reduce_op)op, go2, gx, 1));
                char what[80];
                snprintf(what, sizeof what, "reduce %s %s (%lld, %lld)", reduce_names[op],
                         ember_dtype_name(dt), (long long)outer, (long long)shapes[s][1]);
                if (exact)
                    check_bits(what, ho, go);
                else /* both sum in double; the orders differ, then one f32 rounding */
                    check_close(what, ho, go, 1e-6, 1e-9);
                ember_tensor *first = to_host(go);
                snprintf(what, sizeof what, "reduce %s %s repeatable", reduce_names[op],
                         ember_dtype_name(dt));
                check_bits(what, first, go2); /* deterministic: same bits every call */
                ember_tensor *all[] = {hx, gx, ho, go, go2, first};
                for (int i = 0; i < COUNT(all); i++) ember_tensor_destroy(all[i]);
            }
        }
    }
    /* All dims (axes = 0) into a scalar, and reduce_all through the host. */
    ember_tensor *hx = host_uniform(EMBER_DTYPE_F32, 3, (int64_t[]){4, 5, 600}, 0, 1), *gx = to_dev(hx);
    double hs = 0, gs = 0;
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, hx, &hs));
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, gx, &gs));
    CHECK_NEAR(gs, hs, 1e-6 * fabs(hs));
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_MAX, hx, &hs));
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_MAX, gx, &gs));
    CHECK(gs == hs);
    /* reduce over the last two dims: (4, 5, 600) -> (4) */
    ember_tensor *ho = host_new(EMBER_DTYPE_F32, 1, (int64_t[]){4});
    ember_tensor *go = dev_new(EMBER_DTYPE_F32, 1, (int64_t[]){4});
    CHECK_OK(ember_reduce(EMBER_REDUCE_MEAN, ho, hx, 2));
    CHECK_OK(ember_reduce(EMBER_REDUCE_MEAN, go, gx, 2));
    check_close("reduce mean over two axes", ho, go, 1e-6, 1e-9);
    ember_tensor_destroy(ho);
    ember_tensor_destroy(go);

    ember_tensor_destroy(hx);
    ember_tensor_destroy(gx);

    /* NaN propagates through MAX and MIN on both sides, in short rows (one block per
     * row) and in long ones (chunked). */
    static const int64_t nan_shapes[][2] = {{20, 600}, {2, 100000}};
    for (int s = 0; s < COUNT(nan_shapes); s++) {
        int64_t outer = nan_shapes[s][0], inner = nan_shapes[s][1];
        hx = host_uniform(EMBER_DTYPE_F32, 2, nan_shapes[s], -1, 1);
        ((float *)ember_tensor_data(hx))[inner + inner / 2 + 7] = NAN; /* in row 1 */
        gx = to_dev(hx);
        ho = host_new(EMBER_DTYPE_F32, 1, &outer);
        go = dev_new(EMBER_DTYPE_F32, 1, &outer);
        CHECK_OK(ember_reduce(EMBER_REDUCE_MAX, ho, hx, 1));
        CHECK_OK(ember_reduce(EMBER_REDUCE_MAX, go, gx, 1));
        check_bits("reduce max with a NaN", ho, go);
        CHECK(isnan(((const float *)ember_tensor_data(ho))[1]));
        CHECK_OK(ember_reduce(EMBER_REDUCE_MIN, ho, hx, 1));
        CHECK_OK(ember_reduce(EMBER_REDUCE_MIN, go, gx, 1));
        check_bits("reduce min with a NaN", ho, go);
        ember_tensor *all[] = {hx, gx, ho, go};
        for (int i = 0; i < COUNT(all); i++) ember_tensor_destroy(all[i]);
    }

    /* inner == 0: the identities (0, 0, -inf, +inf, 0). */
    ember_tensor *ge = dev_new(EMBER_DTYPE_F32, 2, (int64_t[]){3, 0});
    ember_tensor *gr = dev_new(EMBER_DTYPE_F32, 1, (int64_t[]){3});
    static const float expect[EMBER_REDUCE_OP_COUNT] = {0.0f, 0.0f, -INFINITY, INFINITY, 0.0f};
    for (int op = 0; op < EMBER_REDUCE_OP_COUNT; op++) {
        CHECK_OK(ember_tensor_fill(gr, 42.0));
        CHECK_OK(ember_reduce((ember_reduce_op)op, gr, ge, 1));
        ember_tensor *h = to_host(gr);
        const float *r = ember_tensor_data(h);
        for (int i = 0; i < 3; i++) CHECK(r[i] == expect[op]);
        ember_tensor_destroy(h);
    }
    ember_tensor_destroy(ge);
    ember_tensor_destroy(gr);
}

/* c = alpha op(a) op(b) + beta c on both sides; a, b, c given as host tensors. */
static void gemm_case(const char *what, int ta, int tb, float alpha, const ember_tensor *ha,
                      const ember_tensor *hb, float beta, ember_tensor *hc) {
    ember_tensor *ga = to_dev(ha), *gb = to_dev(hb), *gc = to_dev(hc);
    CHECK_OK(ember_gemm(ta, tb, alpha, ha, hb, beta, hc));
    CHECK_OK(ember_gemm(ta, tb, alpha, ga, gb, beta, gc));
    /* f32 on both (no TF32): only the summation order differs */
    check_close(what, hc, gc, 1e-4, 1e-4);
    ember_tensor_destroy(ga);
    ember_tensor_destroy(gb);
    ember_tensor_destroy(gc);
}

/* matmul precision bf16 on the GPU (cuBLAS 32F_FAST_16BF): the product of the
   bf16-rounded operands within f32 accumulation, plain and batched. */
static void test_gemm_bf16(void) {
    if (ember_set_matmul_precision(EMBER_MATMUL_BF16) != EMBER_OK) {
        printf("gemm bf16: skipped (%s)\n", ember_last_error());
        return;
    }
    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_F32));
    const int64_t m = 96, n = 80, k = 1000, batch = 2;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t as[3] = {batch, ta ? k : m, ta ? m : k}, bs[3] = {batch, tb ? n : k, tb ? k : n};
            ember_tensor *ha = host_uniform(EMBER_DTYPE_F32, 3, as, -1, 1);
            ember_tensor *hb = host_uniform(EMBER_DTYPE_F32, 3, bs, -1, 1);
            ember_tensor *hc = host_uniform(EMBER_DTYPE_F32, 3, (int64_t[]){batch, m, n}, -1, 1);
            ember_tensor *ga = to_dev(ha), *gb = to_dev(hb), *gc = to_dev(hc);
            CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_BF16));
            CHECK_OK(ember_gemm(ta, tb, 0.5f, ga, gb, 0.25f, gc));
            CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_F32));
            ember_tensor *r = to_host(gc);
            const float *A = ember_tensor_data(ha), *B = ember_tensor_data(hb), *C0 = ember_tensor_data(hc);
            const float *C = ember_tensor_data(r);
            int bad = 0;
            double worst32 = 0;
            for (int64_t q = 0; q < batch && !bad; q++)
                for (int64_t i = 0; i < m && !bad; i++)
                    for (int64_t j = 0; j < n && !bad; j++) {
                        double ref, ref32, mag;
                        check_bf16_dot(A + q * m * k, B + q * k * n, ta, tb, m, n, k, i, j, &ref, &ref32, &mag);
                        double want = 0.5 * ref + 0.25 * C0[(q * m + i) * n + j];
                        double got = C[(q * m + i) * n + j];
                        if (fabs(got - want) > (double)k * 0x1p-22 * mag + 1e-6 * (1 + fabs(want))) {
                            fprintf(stderr, "FAIL gemm bf16 ta=%d tb=%d [%lld,%lld,%lld]: %.9g vs %.9g\n", ta, tb,
                                    (long long)q, (long long)i, (long long)j, got, want);
                            bad = 1;
                        }
                        if (fabs(0.5 * (ref32 - ref)) > worst32) worst32 = fabs(0.5 * (ref32 - ref));
                    }
            CHECK(!bad);
            CHECK(worst32 > 1e-3); /* the operands really were rounded */
            ember_tensor *all[] = {ha, hb, hc, ga, gb, gc, r};
            for (size_t i = 0; i < sizeof all / sizeof *all; i++) ember_tensor_destroy(all[i]);
        }
    printf("gemm bf16: 4 batched products within f32 accumulation of the bf16-rounded product\n");
}

static void test_gemm(void) {
    const int64_t m = 37, n = 29, k = 53, batch = 3;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            int64_t as[2] = {ta ? k : m, ta ? m : k}, bs[2] = {tb ? n : k, tb ? k : n};
            char what[80];
            for (int withc = 0; withc < 2; withc++) {
                ember_tensor *ha = host_uniform(EMBER_DTYPE_F32, 2, as, -1, 1);
                ember_tensor *hb = host_uniform(EMBER_DTYPE_F32, 2, bs, -1, 1);
                ember_tensor *hc = host_uniform(EMBER_DTYPE_F32, 2, (int64_t[]){m, n}, -1, 1);
                snprintf(what, sizeof what, "gemm ta=%d tb=%d beta=%s", ta, tb, withc ? "0.5" : "0");
                gemm_case(what, ta, tb, 1.25f, ha, hb, withc ? 0.5f : 0.0f, hc);
                ember_tensor_destroy(ha);
                ember_tensor_destroy(hb);
                ember_tensor_destroy(hc);
            }
            /* batched (3-D a, b, c) */
            ember_tensor *ha = host_uniform(EMBER_DTYPE_F32, 3, (int64_t[]){batch, as[0], as[1]}, -1, 1);
            ember_tensor *hb = host_uniform(EMBER_DTYPE_F32, 3, (int64_t[]){batch, bs[0], bs[1]}, -1, 1);
            ember_tensor *hc = host_uniform(EMBER_DTYPE_F32, 3, (int64_t[]){batch, m, n}, -1, 1);
            snprintf(what, sizeof what, "gemm batched ta=%d tb=%d", ta, tb);
            gemm_case(what, ta, tb, 0.75f, ha, hb, 0.25f, hc);
            /* batched with a 2-D b shared across the batch (stride 0) */
            ember_tensor *hb2 = host_uniform(EMBER_DTYPE_F32, 2, bs, -1, 1);
            snprintf(what, sizeof what, "gemm batched, shared b, ta=%d tb=%d", ta, tb);
            gemm_case(what, ta, tb, 1.0f, ha, hb2, 0.0f, hc);
            ember_tensor_destroy(ha);
            ember_tensor_destroy(hb);
            ember_tensor_destroy(hb2);
            ember_tensor_destroy(hc);
        }
    }
    /* a as a narrowed view: its leading dim (k + 7) is the parent's row stride */
    ember_tensor *wide = host_uniform(EMBER_DTYPE_F32, 2, (int64_t[]){m, k + 7}, -1, 1), *ha = NULL;
    CHECK_OK(ember_tensor_narrow(wide, 1, 3, k, &ha));
    ember_tensor *hb = host_uniform(EMBER_DTYPE_F32, 2, (int64_t[]){k, n}, -1, 1);
    ember_tensor *hc = host_new(EMBER_DTYPE_F32, 2, (int64_t[]){m, n});
    ember_tensor *gwide = to_dev(wide), *ga = NULL, *gb = to_dev(hb);
    ember_tensor *gc = dev_new(EMBER_DTYPE_F32, 2, (int64_t[]){m, n});
    CHECK_OK(ember_tensor_narrow(gwide, 1, 3, k, &ga));
    CHECK_OK(ember_gemm(0, 0, 1.0f, ha, hb, 0.0f, hc));
    CHECK_OK(ember_gemm(0, 0, 1.0f, ga, gb, 0.0f, gc));
    check_close("gemm with lda > k", hc, gc, 1e-4, 1e-4);
    ember_tensor *all[] = {wide, ha, hb, hc, gwide, ga, gb, gc};
    for (int i = 0; i < COUNT(all); i++) ember_tensor_destroy(all[i]);

    /* k == 0: an empty sum, so c = beta c (beta 0 writes zeros, even over NaN). */
    ember_tensor *ea = dev_new(EMBER_DTYPE_F32, 2, (int64_t[]){4, 0});
    ember_tensor *eb = dev_new(EMBER_DTYPE_F32, 2, (int64_t[]){0, 5});
    ember_tensor *ec = dev_new(EMBER_DTYPE_F32, 2, (int64_t[]){4, 5});
    CHECK_OK(ember_tensor_fill(ec, 2.0));
    CHECK_OK(ember_gemm(0, 0, 1.0f, ea, eb, 0.5f, ec));
    ember_tensor *hr = to_host(ec);
    int bad = 0;
    for (int i = 0; i < 20; i++) bad += ((const float *)ember_tensor_data(hr))[i] != 1.0f;
    CHECK_EQ_INT(bad, 0);
    ember_tensor_destroy(hr);
    CHECK_OK(ember_tensor_fill(ec, NAN));
    CHECK_OK(ember_gemm(0, 0, 1.0f, ea, eb, 0.0f, ec));
    hr = to_host(ec);
    bad = 0;
    for (int i = 0; i < 20; i++) bad += ((const float *)ember_tensor_data(hr))[i] != 0.0f;
    CHECK_EQ_INT(bad, 0);
    ember_tensor_destroy(hr);
    ember_tensor_destroy(ea);
    ember_tensor_destroy(eb);
    ember_tensor_destroy(ec);
}

static void test_rng(void) {
    static const uint64_t offsets[] = {0, 5, ((uint64_t)1 << 40) + 3};
    const int64_t n = 1001;
    for (int o = 0; o < COUNT(offsets); o++) {
        /* raw bits: i32 one word, i64 two, u8/i8 the low byte */
        static const ember_dtype bit_dts[] = {EMBER_DTYPE_I32, EMBER_DTYPE_I64, EMBER_DTYPE_U8,
                                              EMBER_DTYPE_I8};
        for (int d = 0; d < COUNT(bit_dts); d++) {
            ember_rng hr = {.seed = 1234, .offset = offsets[o]}, gr = hr;
            ember_tensor *h = host_new(bit_dts[d], 1, &n), *g = dev_new(bit_dts[d], 1, &n);
            CHECK_OK(ember_rng_bits(&hr, h));
            CHECK_OK(ember_rng_bits(&gr, g));
            char what[64];
            snprintf(what, sizeof what, "rng bits %s offset %llu", ember_dtype_name(bit_dts[d]),
                     (unsigned long long)offsets[o]);
            check_bits(what, h, g);
            CHECK(hr.offset == gr.offset);
            if (bit_dts[d] == EMBER_DTYPE_I32) { /* against the stream definition itself */
                ember_tensor *b = to_host(g);
                const uint32_t *w = ember_tensor_data(b);
                int bad = 0;
                for (int64_t i = 0; i < n; i++) bad += w[i] != ember_rng_word(1234, offsets[o] + (uint64_t)i);
                CHECK_EQ_INT(bad, 0);
                ember_tensor_destroy(b);
            }
            ember_tensor_destroy(h);
            ember_tensor_destroy(g);
        }
        for (int d = 0; d < COUNT(float_dtypes); d++) {
            ember_dtype dt = float_dtypes[d];
            char what[64];
            /* uniform: bit-exact */
            ember_rng hr = {.seed = 99, .offset = offsets[o]}, gr = hr;
            ember_tensor *h = host_new(dt, 1, &n), *g = dev_new(dt, 1, &n);
            CHECK_OK(ember_rng_uniform(&hr, h, -0.5f, 2.0f));
            CHECK_OK(ember_rng_uniform(&gr, g, -0.5f, 2.0f));
            snprintf(what, sizeof what, "rng uniform %s offset %llu", ember_dtype_name(dt),
                     (unsigned long long)offsets[o]);
            check_bits(what, h, g);
            CHECK(hr.offset == gr.offset);
            /* normal: logf/cosf/sinf differ by an ulp or two between libm and CUDA */
            CHECK_OK(ember_rng_normal(&hr, h, 1.0f, 2.0f));
            CHECK_OK(ember_rng_normal(&gr, g, 1.0f, 2.0f));
            snprintf(what, sizeof what, "rng normal %s offset %llu", ember_dtype_name(dt),
                     (unsigned long long)offsets[o]);
            check_close(what, h, g, dt == EMBER_DTYPE_F32 ? 1e-5 : storage_rtol(dt), 1e-5);
            CHECK(hr.offset == gr.offset);
            ember_tensor_destroy(h);
            ember_tensor_destroy(g);
        }
    }
}

static void test_philox_kat(void) {
    /* Known-answer vectors of Philox 4x32-10 (Random123's kat_vectors). */
    static const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                       {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                                       {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
    static const uint32_t key[3][2] = {{0, 0}, {0xffffffffu, 0xffffffffu}, {0xa4093822u, 0x299f31d0u}};
    static const uint32_t want[3][4] = {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
                                        {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu},
                                        {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}};
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        ember_philox4x32_10(ctr[v], key[v], out);
        for (int i = 0; i < 4; i++) CHECK_EQ_INT(out[i], want[v][i]);
    }
    /* Seed 0, words 0..3 = block 0 = counter (0, 0, 0, 0), key (0, 0): vector 0, on the GPU. */
    ember_rng r = {.seed = 0, .offset = 0};
    ember_tensor *g = dev_new(EMBER_DTYPE_I32, 1, (int64_t[]){4});
    CHECK_OK(ember_rng_bits(&r, g));
    ember_tensor *h = to_host(g);
    const uint32_t *w = ember_tensor_data(h);
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(w[i], want[0][i]);
    ember_tensor_destroy(h);
    ember_tensor_destroy(g);
}

static void test_streams(void) {
    const int64_t n = (int64_t)1 << 20;
    /* pinned source, so the copy is truly asynchronous */
    ember_tensor *src = new_tensor(EMBER_DTYPE_F32, 1, &n, EMBER_TIER_PINNED, ember_memory_default());
    CHECK_EQ_INT(ember_tensor_tier(src), EMBER_TIER_PINNED);
    float *s = ember_tensor_data(src);
    for (int64_t i = 0; i < n; i++) s[i] = (float)(i % 1000) * 0.5f;
    ember_tensor *dst = dev_new(EMBER_DTYPE_F32, 1, &n), *dbl = dev_new(EMBER_DTYPE_F32, 1, &n);

    ember_stream *side = NULL;
    ember_event *start = NULL, *done = NULL;
    CHECK_OK(ember_stream_create(EMBER_CUDA(0), &side));
    CHECK_OK(ember_event_create(EMBER_CUDA(0), &start));
    CHECK_OK(ember_event_create(EMBER_CUDA(0), &done));

    /* copy on the side stream, bracketed by events */
    ember_stream *prev = ember_stream_set_current(side);
    CHECK(prev == ember_stream_default(EMBER_CUDA(0)));
    CHECK(ember_stream_get_current(EMBER_CUDA(0)) == side);
    CHECK_OK(ember_event_record(start, NULL));
    CHECK_OK(ember_tensor_copy(dst, src));
    CHECK_OK(ember_event_record(done, side));
    ember_stream_set_current(prev);

    /* the default stream waits for the copy on the device, then computes */
    CHECK_OK(ember_stream_wait_event(NULL, done));
    CHECK_OK(ember_scale(dbl, dst, 2.0, 0.0));
    ember_tensor *back = to_host(dbl);
    const float *b = ember_tensor_data(back);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += b[i] != s[i] * 2.0f;
    CHECK_EQ_INT(bad, 0);

    CHECK_OK(ember_event_synchronize(done));
    CHECK_EQ_INT(ember_event_query(done), 1);
    float ms = -1.0f;
    CHECK_OK(ember_event_elapsed_ms(start, done, &ms));
    CHECK(ms >= 0.0f);
    CHECK_OK(ember_stream_synchronize(side));

    ember_tensor_destroy(back);
    ember_tensor_destroy(src);
    ember_tensor_destroy(dst);
    ember_tensor_destroy(dbl);
    ember_event_destroy(start);
    ember_event_destroy(done);
    ember_stream_destroy(side);
    CHECK(ember_stream_get_current(EMBER_CUDA(0)) == ember_stream_default(EMBER_CUDA(0)));
}

static void test_memory_tiers(void) {
    /* device-tier budget: refused before cudaMalloc is ever called */
    ember_memory *mm = NULL;
    CHECK_OK(ember_memory_create(
        &(ember_memory_config){.device = EMBER_CUDA(0), .budget = {[EMBER_TIER_DEVICE] = 1u << 20}},
        &mm));
    CHECK(ember_device_equal(ember_memory_tier_device(mm, EMBER_TIER_DEVICE), EMBER_CUDA(0)));
    void *p = NULL;
    CHECK_STATUS(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_ACTIVATION, 2u << 20, &p),
                 EMBER_ERR_OUT_OF_MEMORY);
    ember_memory_stats st;
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.failed, 1);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_DEVICE], 0);
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_DEVICE, EMBER_MEM_ACTIVATION, 512u << 10, &p));
    ember_tier tier;
    ember_mem_kind kind;
    size_t bytes = 0;
    CHECK_OK(ember_memory_query(mm, p, &tier, &kind, &bytes));
    CHECK_EQ_INT(tier, EMBER_TIER_DEVICE);
    CHECK_EQ_INT(bytes, 512u << 10);
    CHECK_EQ_INT((uintptr_t)p % EMBER_MEM_ALIGN, 0);
    CHECK_OK(ember_memory_free(mm, p));
    ember_tensor *t = NULL;
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1,
                                                            .shape = {1 << 20},
                                                            .tier = EMBER_TIER_DEVICE, .mm = mm},
                                     &t),
                 EMBER_ERR_OUT_OF_MEMORY);
    CHECK(t == NULL);

    /* pinned tier: page-locked host memory, readable and writable by the host */
    CHECK_OK(ember_memory_alloc(mm, EMBER_TIER_PINNED, EMBER_MEM_STAGING, 1u << 20, &p));
    memset(p, 0xab, 1u << 20);
    CHECK_EQ_INT(((unsigned char *)p)[(1u << 20) - 1], 0xab);
    CHECK_OK(ember_memory_query(mm, p, &tier, &kind, &bytes));
    CHECK_EQ_INT(tier, EMBER_TIER_PINNED);
    CHECK_EQ_INT(kind, EMBER_MEM_STAGING);
    CHECK_OK(ember_memory_free(mm, p));
    ember_memory_get_stats(mm, &st);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_PINNED], 0);
    ember_memory_destroy(mm);
}

int main(void) {
    if (ember_cuda_device_count() == 0) CHECK_SKIP("no CUDA device (test_cuda needs a GPU)");
    CHECK_OK(ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &gpu_mm));
    if (!gpu_mm) return check_summary();

    test_devices();
    test_fill();
    test_convert();
    test_copy_strided();
    test_unary();
    test_binary();
    test_scale_axpy();
    test_reduce();
    test_gemm();
    test_gemm_bf16();
    test_rng();
    test_philox_kat();
    test_streams();
    test_memory_tiers();

    ember_memory_stats st;
    ember_memory_get_stats(gpu_mm, &st);
    CHECK_EQ_INT(st.live_total[EMBER_TIER_DEVICE], 0); /* every test tensor was destroyed */
    ember_memory_destroy(gpu_mm);
    return check_summary();
}
