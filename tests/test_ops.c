/* Kernels on the CPU backend against plain scalar references. */
#include "check.h"

static ember_tensor *make(ember_dtype dt, int ndim, const int64_t *shape) {
    ember_tensor_params p = {.dtype = dt, .ndim = ndim};
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    ember_tensor *t = NULL;
    CHECK_OK(ember_tensor_create(&p, &t));
    return t;
}

static ember_tensor *uniform(ember_dtype dt, int ndim, const int64_t *shape, uint64_t seed, float lo, float hi) {
    ember_tensor *t = make(dt, ndim, shape);
    ember_rng rng = {.seed = seed};
    CHECK_OK(ember_rng_uniform(&rng, t, lo, hi));
    return t;
}

static double ref_unary(ember_unary_op op, double v) {
    switch (op) {
    case EMBER_UNARY_NEG: return -v;
    case EMBER_UNARY_ABS: return fabs(v);
    case EMBER_UNARY_SQUARE: return v * v;
    case EMBER_UNARY_SQRT: return sqrt(v);
    case EMBER_UNARY_EXP: return exp(v);
    case EMBER_UNARY_LOG: return log(v);
    case EMBER_UNARY_RELU: return v > 0 ? v : 0;
    case EMBER_UNARY_SIGMOID: return 1 / (1 + exp(-v));
    case EMBER_UNARY_TANH: return tanh(v);
    case EMBER_UNARY_LOG1P_RELU: return log1p(v > 0 ? v : 0);
    default: return NAN;
    }
}

static double ref_binary(ember_binary_op op, double a, double b) {
    switch (op) {
    case EMBER_BINARY_ADD: return a + b;
    case EMBER_BINARY_SUB: return a - b;
    case EMBER_BINARY_MUL: return a * b;
    case EMBER_BINARY_DIV: return a / b;
    case EMBER_BINARY_MAX: return a > b ? a : b;
    case EMBER_BINARY_MIN: return a < b ? a : b;
    default: return NAN;
    }
}

/* Element i of a host tensor as double. */
static double at(const ember_tensor *t, int64_t i) {
    return check_elem(ember_tensor_data(t), ember_tensor_dtype(t), i);
}

static double dtype_tol(ember_dtype dt) {
    return dt == EMBER_DTYPE_F32 ? 2e-6 : dt == EMBER_DTYPE_F16 ? 1e-3 : 8e-3; /* relative */
}

static void test_elementwise(void) {
    const ember_dtype dts[3] = {EMBER_DTYPE_F32, EMBER_DTYPE_F16, EMBER_DTYPE_BF16};
    int64_t n = 70000; /* above the threading threshold, not a multiple of the block */
    for (int d = 0; d < 3; d++) {
        ember_dtype dt = dts[d];
        double tol = dtype_tol(dt);
        ember_tensor *x = uniform(dt, 1, (int64_t[]){n}, 11, -3, 3);
        ember_tensor *pos = uniform(dt, 1, (int64_t[]){n}, 12, 0.1f, 4);
        ember_tensor *out = make(dt, 1, (int64_t[]){n});
        for (int op = 0; op < EMBER_UNARY_OP_COUNT; op++) {
            const ember_tensor *in = (op == EMBER_UNARY_SQRT || op == EMBER_UNARY_LOG) ? pos : x;
            CHECK_OK(ember_unary((ember_unary_op)op, out, in));
            int64_t bad = -1;
            for (int64_t i = 0; i < n && bad < 0; i++) {
                double want = ref_unary((ember_unary_op)op, at(in, i));
                /* result rounding in the dtype: relative tolerance plus a floor near 0 */
                if (fabs(at(out, i) - want) > tol * fabs(want) + tol * 1e-2) bad = i;
            }
            if (bad >= 0)
                fprintf(stderr, "unary op %d dtype %s index %lld: %g vs %g\n", op, ember_dtype_name(dt),
                        (long long)bad, at(out, bad), ref_unary((ember_unary_op)op, at(in, bad)));
            CHECK(bad < 0);
        }
        /* in place */
        ember_tensor *y = make(dt, 1, (int64_t[]){n});
        CHECK_OK(ember_tensor_copy(y, x));
        CHECK_OK(ember_unary(EMBER_UNARY_NEG, y, y));
        CHECK_NEAR(at(y, 5), -at(x, 5), 0);

        for (int op = 0; op < EMBER_BINARY_OP_COUNT; op++) {
            CHECK_OK(ember_binary((ember_binary_op)op, out, x, pos));
            int64_t bad = -1;
            for (int64_t i = 0; i < n && bad < 0; i++) {
                double want = ref_binary((ember_binary_op)op, at(x, i), at(pos, i));
                /* add/sub may cancel: the rounding error scales with the operands */
                if (fabs(at(out, i) - want) > tol * (fabs(want) + fabs(at(x, i)) + fabs(at(pos, i)))) bad = i;
            }
            if (bad >= 0)
                fprintf(stderr, "binary op %d dtype %s index %lld: %g op %g = %g\n", op, ember_dtype_name(dt),
                        (long long)bad, at(x, bad), at(pos, bad), at(out, bad));
            CHECK(bad < 0);
        }
        /* broadcast a row over (rows, cols), and a scalar */
        int64_t cols = 700, nrows = n / cols;
        ember_tensor *x2 = NULL, *o2 = NULL;
        CHECK_OK(ember_tensor_reshape(x, 2, (int64_t[]){nrows, cols}, &x2));
        CHECK_OK(ember_tensor_reshape(out, 2, (int64_t[]){nrows, cols}, &o2));
        ember_tensor *bias = uniform(dt, 1, (int64_t[]){cols}, 13, -1, 1);
        CHECK_OK(ember_binary(EMBER_BINARY_ADD, o2, x2, bias));
        int64_t bad = -1;
        for (int64_t i = 0; i < n && bad < 0; i++) {
            double want = at(x, i) + at(bias, i % cols);
            if (fabs(at(out, i) - want) > tol * fabs(want) + 1e-6) bad = i;
        }
        CHECK(bad < 0);
        ember_tensor *sc = make(dt, 0, NULL);
        CHECK_OK(ember_tensor_fill(sc, 0.5));
        CHECK_OK(ember_binary(EMBER_BINARY_MUL, out, x, sc));
        CHECK_NEAR(at(out, 99), 0.5 * at(x, 99), tol * fabs(at(x, 99)));
        ember_tensor *wrong = make(dt, 1, (int64_t[]){cols + 1});
        CHECK_STATUS(ember_binary(EMBER_BINARY_ADD, o2, x2, wrong), EMBER_ERR_SHAPE);

        /* scale and axpy */
        CHECK_OK(ember_scale(out, x, 2.0, 1.0));
        CHECK_NEAR(at(out, 17), 2 * at(x, 17) + 1, tol * fabs(2 * at(x, 17) + 1) + 1e-6);
        CHECK_OK(ember_tensor_copy(y, x));
        CHECK_OK(ember_axpy(y, -1.0, x));
        CHECK_NEAR(at(y, 1234), 0.0, 0);

        ember_tensor *all[] = {x, pos, out, y, x2, o2, bias, sc, wrong};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ember_tensor_destroy(all[i]);
    }
}

static void test_fill_convert(void) {
    for (int d = 0; d < EMBER_DTYPE_COUNT; d++) {
        ember_tensor *t = make((ember_dtype)d, 1, (int64_t[]){40000});
        CHECK_OK(ember_tensor_fill(t, 3.0));
        CHECK_NEAR(at(t, 39999), 3.0, 0);
        CHECK_OK(ember_tensor_fill(t, -7.75));
        double want = d <= EMBER_DTYPE_BF16 ? -7.75 : d == EMBER_DTYPE_U8 ? 0 : -7;
        CHECK_NEAR(at(t, 123), want, 0);
        ember_tensor_destroy(t);
    }
    /* saturation, not undefined behaviour */
    ember_tensor *i8 = make(EMBER_DTYPE_I8, 1, (int64_t[]){3});
    CHECK_OK(ember_tensor_fill(i8, 1000.0));
    CHECK_NEAR(at(i8, 0), 127, 0);
    ember_tensor *i64 = make(EMBER_DTYPE_I64, 1, (int64_t[]){3});
    CHECK_OK(ember_tensor_fill(i64, 1e300));
    CHECK(((int64_t *)ember_tensor_data(i64))[0] > INT64_C(9223372036854770000));
    CHECK_OK(ember_tensor_fill(i64, NAN));
    CHECK_EQ_INT(((int64_t *)ember_tensor_data(i64))[2], 0);

    /* convert between every pair of dtypes keeps small integers exact */
    for (int a = 0; a < EMBER_DTYPE_COUNT; a++)
        for (int b = 0; b < EMBER_DTYPE_COUNT; b++) {
            ember_tensor *src = make((ember_dtype)a, 1, (int64_t[]){50}), *dst = make((ember_dtype)b, 1, (int64_t[]){50});
            ember_tensor *f = make(EMBER_DTYPE_F32, 1, (int64_t[]){50});
            float *fd = ember_tensor_data(f);
            for (int i = 0; i < 50; i++) fd[i] = (float)(i * 2);
            CHECK_OK(ember_tensor_convert(src, f));
            CHECK_OK(ember_tensor_convert(dst, src));
            int bad = 0;
            for (int i = 0; i < 50; i++) bad += at(dst, i) != (double)(i * 2);
            if (bad) fprintf(stderr, "convert %s -> %s\n", ember_dtype_name((ember_dtype)a), ember_dtype_name((ember_dtype)b));
            CHECK_EQ_INT(bad, 0);
            ember_tensor_destroy(src);
            ember_tensor_destroy(dst);
            ember_tensor_destroy(f);
        }
    ember_tensor_destroy(i8);
    ember_tensor_destroy(i64);
}

static void test_reduce(void) {
    int64_t outer = 37, inner = 1001;
    ember_tensor *x = uniform(EMBER_DTYPE_F32, 3, (int64_t[]){outer, 7, 143}, 21, -1, 1);
    ember_tensor *out = make(EMBER_DTYPE_F32, 1, (int64_t[]){outer});
    const float *xd = ember_tensor_data(x);
    for (int op = 0; op < EMBER_REDUCE_OP_COUNT; op++) {
        CHECK_OK(ember_reduce((ember_reduce_op)op, out, x, 2));
        int bad = 0;
        for (int64_t o = 0; o < outer; o++) {
            double acc = op == EMBER_REDUCE_MAX ? -INFINITY : op == EMBER_REDUCE_MIN ? INFINITY : 0;
            for (int64_t j = 0; j < inner; j++) {
                double v = xd[o * inner + j];
                if (op == EMBER_REDUCE_MAX) acc = v > acc ? v : acc;
                else if (op == EMBER_REDUCE_MIN) acc = v < acc ? v : acc;
                else if (op == EMBER_REDUCE_SUMSQ) acc += v * v;
                else acc += v;
            }
            if (op == EMBER_REDUCE_MEAN) acc /= (double)inner;
            if (fabs(((float *)ember_tensor_data(out))[o] - acc) > 1e-5 * (1 + fabs(acc))) bad++;
        }
        CHECK_EQ_INT(bad, 0);
    }
    /* one long row: chunked in parallel, same bits for any thread count */
    int64_t n = 1000003;
    ember_tensor *big = uniform(EMBER_DTYPE_F32, 1, (int64_t[]){n}, 22, 0, 1);
    double s1 = 0, s2 = 0, want = 0;
    const float *bd = ember_tensor_data(big);
    for (int64_t i = 0; i < n; i++) want += bd[i];
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, big, &s1));
    int threads = ember_get_num_threads();
    ember_set_num_threads(1);
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_SUM, big, &s2));
    ember_set_num_threads(threads);
    CHECK(s1 == s2);
    CHECK_NEAR(s1, want, 1e-6 * want);
    double mx = 0;
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_MAX, big, &mx));
    CHECK(mx < 1.0 && mx > 0.999);
    /* bf16 input */
    ember_tensor *hb = make(EMBER_DTYPE_BF16, 1, (int64_t[]){1000});
    CHECK_OK(ember_tensor_fill(hb, 0.5));
    double hs = 0;
    CHECK_OK(ember_reduce_all(EMBER_REDUCE_MEAN, hb, &hs));
    CHECK_NEAR(hs, 0.5, 0);
    /* empty rows */
    ember_tensor *empty = make(EMBER_DTYPE_F32, 2, (int64_t[]){3, 0}), *o3 = make(EMBER_DTYPE_F32, 1, (int64_t[]){3});
    CHECK_OK(ember_reduce(EMBER_REDUCE_SUM, o3, empty, 1));
    CHECK_NEAR(((float *)ember_tensor_data(o3))[2], 0.0, 0);
    /* errors */
    CHECK_STATUS(ember_reduce(EMBER_REDUCE_SUM, out, x, 1), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_reduce(EMBER_REDUCE_SUM, out, x, 4), EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor *ints = make(EMBER_DTYPE_I32, 1, (int64_t[]){4});
    CHECK_STATUS(ember_reduce_all(EMBER_REDUCE_SUM, ints, &hs), EMBER_ERR_DTYPE);
    ember_tensor *all[] = {x, out, big, hb, empty, o3, ints};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ember_tensor_destroy(all[i]);
}

/* C = alpha op(A) op(B) + beta C in double, for checking. */
static void ref_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t p = 0; p < k; p++)
                acc += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            c[i * ldc + j] = (float)(alpha * acc + beta * c[i * ldc + j]);
        }
}

static void test_gemm(void) {
    int64_t m = 67, n = 45, k = 129;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            ember_tensor *a = uniform(EMBER_DTYPE_F32, 2, ta ? (int64_t[]){k, m} : (int64_t[]){m, k}, 31, -1, 1);
            ember_tensor *b = uniform(EMBER_DTYPE_F32, 2, tb ? (int64_t[]){n, k} : (int64_t[]){k, n}, 32, -1, 1);
            ember_tensor *c = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){m, n}, 33, -1, 1);
            float *want = malloc((size_t)(m * n) * sizeof *want);
            memcpy(want, ember_tensor_data(c), (size_t)(m * n) * sizeof *want);
            ref_gemm(ta, tb, m, n, k, 0.5f, ember_tensor_data(a), ember_tensor_dim(a, 1), ember_tensor_data(b),
                     ember_tensor_dim(b, 1), 2.0f, want, n);
            CHECK_OK(ember_gemm(ta, tb, 0.5f, a, b, 2.0f, c));
            CHECK_NEAR_ARRAY((const float *)ember_tensor_data(c), want, m * n, 1e-4);
            free(want);
            ember_tensor_destroy(a);
            ember_tensor_destroy(b);
            ember_tensor_destroy(c);
        }
    /* batched 3-D with a shared 2-D operand, and a column-sliced view as A */
    int64_t batch = 3;
    ember_tensor *a3 = uniform(EMBER_DTYPE_F32, 3, (int64_t[]){batch, m, k + 5}, 34, -1, 1);
    ember_tensor *av = NULL;
    CHECK_OK(ember_tensor_narrow(a3, 2, 5, k, &av)); /* (batch, m, k), row stride k + 5 */
    ember_tensor *b2 = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){k, n}, 35, -1, 1);
    ember_tensor *c3 = make(EMBER_DTYPE_F32, 3, (int64_t[]){batch, m, n});
    CHECK_OK(ember_gemm(0, 0, 1.0f, av, b2, 0.0f, c3));
    float *want = calloc((size_t)(batch * m * n), sizeof *want);
    for (int64_t i = 0; i < batch; i++)
        ref_gemm(0, 0, m, n, k, 1.0f, (const float *)ember_tensor_data(a3) + i * m * (k + 5) + 5, k + 5,
                 ember_tensor_data(b2), n, 0.0f, want + i * m * n, n);
    CHECK_NEAR_ARRAY((const float *)ember_tensor_data(c3), want, batch * m * n, 1e-4);
    free(want);
    /* shape errors name the dims */
    ember_tensor *bad_b = make(EMBER_DTYPE_F32, 2, (int64_t[]){k + 1, n});
    ember_tensor *c2 = make(EMBER_DTYPE_F32, 2, (int64_t[]){m, n});
    ember_tensor *a2 = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){m, k}, 36, -1, 1);
    CHECK_STATUS(ember_gemm(0, 0, 1.0f, a2, bad_b, 0.0f, c2), EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), "k=129") != NULL);
    CHECK_STATUS(ember_gemm(0, 0, 1.0f, a3, b2, 0.0f, c2), EMBER_ERR_SHAPE);
    ember_tensor *half = make(EMBER_DTYPE_F16, 2, (int64_t[]){m, k});
    CHECK_STATUS(ember_gemm(0, 0, 1.0f, half, b2, 0.0f, c2), EMBER_ERR_DTYPE);
    ember_tensor *at2 = NULL;
    CHECK_OK(ember_tensor_transpose(a2, 0, 1, &at2));
    CHECK_STATUS(ember_gemm(0, 0, 1.0f, at2, b2, 0.0f, c2), EMBER_ERR_STATE);
    CHECK_STATUS(ember_gemm(0, 0, 1.0f, NULL, b2, 0.0f, c2), EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor *all[] = {a3, av, b2, c3, bad_b, c2, a2, half, at2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ember_tensor_destroy(all[i]);
}

/* Products with a short side (a small batch: engine/cpu/gemm_skinny.c on AVX-512 CPUs):
   each of its cases (NN and NT with m short, TN with k short) at short sides across its
   8-row blocks and long sides across its 48-column tiles and 16-lane tails, with
   alpha/beta and operands whose rows are longer than their columns (views); and the
   same bits at 1 and 2 threads. */
static void test_gemm_short(void) {
    const int64_t shorts[] = {1, 7, 8, 13, 32, 64}, longs[][2] = {{128, 128}, {130, 257}, {1000, 131}};
    int prev = ember_get_num_threads(), cases = 0;
    for (int kind = 0; kind < 3; kind++) /* 0: NN, 1: NT (m short), 2: TN (k short) */
        for (size_t si = 0; si < sizeof shorts / sizeof shorts[0]; si++)
            for (size_t li = 0; li < sizeof longs / sizeof longs[0]; li++) {
                int ta = kind == 2, tb = kind == 1;
                int64_t s = shorts[si], l1 = longs[li][0], l2 = longs[li][1];
                int64_t m = kind == 2 ? l1 : s, n = kind == 2 ? l2 : l1, k = kind == 2 ? s : l2;
                float alpha = si % 2 ? 0.5f : 1.0f, beta = li == 1 ? -0.75f : 0.0f;
                /* A and B as column views of wider matrices: leading dims past their widths */
                int64_t ar = ta ? k : m, acols = ta ? m : k, br = tb ? n : k, bcols = tb ? k : n;
                ember_tensor *aw = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){ar, acols + 3}, 51 + kind, -1, 1);
                ember_tensor *bw = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){br, bcols + 5}, 61 + kind, -1, 1);
                ember_tensor *a = NULL, *b = NULL;
                CHECK_OK(ember_tensor_narrow(aw, 1, 3, acols, &a));
                CHECK_OK(ember_tensor_narrow(bw, 1, 5, bcols, &b));
                ember_tensor *c1 = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){m, n}, 71, -1, 1), *c2 = NULL;
                CHECK_OK(ember_tensor_clone(c1, EMBER_TIER_HOST, NULL, &c2));
                float *want = malloc((size_t)(m * n) * sizeof *want);
                memcpy(want, ember_tensor_data(c1), (size_t)(m * n) * sizeof *want);
                ref_gemm(ta, tb, m, n, k, alpha, (const float *)ember_tensor_data(aw) + 3, acols + 3,
                         (const float *)ember_tensor_data(bw) + 5, bcols + 5, beta, want, n);
                ember_set_num_threads(1);
                CHECK_OK(ember_gemm(ta, tb, alpha, a, b, beta, c1));
                ember_set_num_threads(2);
                CHECK_OK(ember_gemm(ta, tb, alpha, a, b, beta, c2));
                CHECK_NEAR_ARRAY((const float *)ember_tensor_data(c1), want, m * n, 1e-4);
                if (memcmp(ember_tensor_data(c1), ember_tensor_data(c2), (size_t)(m * n) * sizeof(float)) != 0) {
                    fprintf(stderr, "FAIL short gemm %s m=%lld n=%lld k=%lld: 1 and 2 threads differ\n",
                            kind == 0 ? "NN" : kind == 1 ? "NT" : "TN", (long long)m, (long long)n, (long long)k);
                    CHECK(0);
                }
                free(want);
                ember_tensor *all[] = {aw, bw, a, b, c1, c2};
                for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ember_tensor_destroy(all[i]);
                cases++;
            }
    ember_set_num_threads(prev);
    printf("short gemm: %d products against the reference, the same bits at 1 and 2 threads\n", cases);
}

/* bf16 matmul precision: the product of the bf16-rounded operands, accumulated in f32
   (so within k * 2^-23 of the exact product of the rounded values, and far from the
   f32 product for these sizes); small products stay f32 bit for bit. */
static void test_gemm_bf16(void) {
    ember_features f;
    ember_get_features(&f);
    CHECK(ember_get_matmul_precision() == EMBER_MATMUL_F32);
    ember_matmul_precision p;
    CHECK_OK(ember_matmul_precision_parse("bf16", &p));
    CHECK(p == EMBER_MATMUL_BF16);
    CHECK_STATUS(ember_matmul_precision_parse("fp8", &p), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_set_matmul_precision((ember_matmul_precision)7), EMBER_ERR_INVALID_ARGUMENT);
    if (!f.bf16_matmul) {
        CHECK_STATUS(ember_set_matmul_precision(EMBER_MATMUL_BF16), EMBER_ERR_UNSUPPORTED);
        CHECK(strstr(ember_last_error(), "bf16") != NULL);
        CHECK(ember_get_matmul_precision() == EMBER_MATMUL_F32);
        printf("bf16 matmul: not available here (%s), refusal checked\n", f.dnnl ? "CPU" : "no oneDNN");
        return;
    }
    const int64_t m = 96, n = 80, k = 1000; /* 7.7M multiply-adds: over the bf16 threshold */
    const float alphas[] = {1.0f, 0.5f}, betas[] = {0.0f, 1.0f, -0.25f};
    double worst_f32 = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int ab = 0; ab < 2; ab++)
                for (int bb = 0; bb < 3; bb++) {
                    float alpha = alphas[ab], beta = betas[bb];
                    ember_tensor *a = uniform(EMBER_DTYPE_F32, 2, ta ? (int64_t[]){k, m} : (int64_t[]){m, k}, 41, -1, 1);
                    ember_tensor *b = uniform(EMBER_DTYPE_F32, 2, tb ? (int64_t[]){n, k} : (int64_t[]){k, n}, 42, -1, 1);
                    ember_tensor *c = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){m, n}, 43, -1, 1);
                    ember_tensor *c0 = NULL;
                    CHECK_OK(ember_tensor_clone(c, EMBER_TIER_HOST, NULL, &c0));
                    const float *A = ember_tensor_data(a), *B = ember_tensor_data(b), *C0 = ember_tensor_data(c0);
                    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_BF16));
                    CHECK_OK(ember_gemm(ta, tb, alpha, a, b, beta, c));
                    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_F32));
                    const float *C = ember_tensor_data(c);
                    int bad = 0;
                    for (int64_t i = 0; i < m && !bad; i++)
                        for (int64_t j = 0; j < n && !bad; j++) {
                            double r, r32, mag;
                            check_bf16_dot(A, B, ta, tb, m, n, k, i, j, &r, &r32, &mag);
                            double want = alpha * r + beta * C0[i * n + j];
                            double tol = (double)k * 0x1p-23 * mag * fabs(alpha) + 1e-6 * (1 + fabs(want));
                            if (fabs(C[i * n + j] - want) > tol) {
                                fprintf(stderr, "FAIL bf16 gemm ta=%d tb=%d alpha=%g beta=%g (%lld,%lld): %.9g vs %.9g\n",
                                        ta, tb, alpha, beta, (long long)i, (long long)j, C[i * n + j], want);
                                bad = 1;
                            }
                            double d32 = fabs(alpha * (r32 - r));
                            if (d32 > worst_f32) worst_f32 = d32;
                        }
                    CHECK(!bad);
                    ember_tensor_destroy(a);
                    ember_tensor_destroy(b);
                    ember_tensor_destroy(c);
                    ember_tensor_destroy(c0);
                }
    /* the rounding is really bf16: the f32 products differ from the rounded ones */
    CHECK(worst_f32 > 1e-3);
    /* a transposed A (a weight gradient's activations: a transposing conversion) gives
       the bits of its explicit transpose (a plain one), odd sizes included */
    {
        const int64_t tm = 203, tk = 517, tn = 96;
        ember_tensor *at = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){tk, tm}, 46, -1, 1); /* stored (k, m) */
        ember_tensor *ap = make(EMBER_DTYPE_F32, 2, (int64_t[]){tm, tk});
        const float *src = ember_tensor_data(at);
        float *dst = ember_tensor_data(ap);
        for (int64_t i = 0; i < tm; i++)
            for (int64_t q = 0; q < tk; q++) dst[i * tk + q] = src[q * tm + i];
        ember_tensor *bt = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){tk, tn}, 47, -1, 1);
        ember_tensor *c1 = make(EMBER_DTYPE_F32, 2, (int64_t[]){tm, tn}), *c2 = make(EMBER_DTYPE_F32, 2, (int64_t[]){tm, tn});
        CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_BF16));
        CHECK_OK(ember_gemm(1, 0, 1.0f, at, bt, 0.0f, c1));
        CHECK_OK(ember_gemm(0, 0, 1.0f, ap, bt, 0.0f, c2));
        CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_F32));
        CHECK(memcmp(ember_tensor_data(c1), ember_tensor_data(c2), (size_t)(tm * tn) * sizeof(float)) == 0);
        ember_tensor *all[] = {at, ap, bt, c1, c2};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ember_tensor_destroy(all[i]);
    }
    /* under the threshold the product stays f32, bit for bit */
    ember_tensor *a = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){32, 64}, 44, -1, 1);
    ember_tensor *b = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){64, 48}, 45, -1, 1);
    ember_tensor *c1 = make(EMBER_DTYPE_F32, 2, (int64_t[]){32, 48}), *c2 = make(EMBER_DTYPE_F32, 2, (int64_t[]){32, 48});
    CHECK_OK(ember_gemm(0, 0, 1.0f, a, b, 0.0f, c1));
    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_BF16));
    CHECK(ember_get_matmul_precision() == EMBER_MATMUL_BF16);
    CHECK_OK(ember_gemm(0, 0, 1.0f, a, b, 0.0f, c2));
    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_F32));
    CHECK(memcmp(ember_tensor_data(c1), ember_tensor_data(c2), 32 * 48 * 4) == 0);
    ember_tensor_destroy(a);
    ember_tensor_destroy(b);
    ember_tensor_destroy(c1);
    ember_tensor_destroy(c2);
    /* so does a large product whose sum is shorter than an AMX tile (k < 32): a DLRM's
       first layer over its 13 dense features */
    a = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){2048, 13}, 48, -1, 1);
    b = uniform(EMBER_DTYPE_F32, 2, (int64_t[]){13, 512}, 49, -1, 1);
    c1 = make(EMBER_DTYPE_F32, 2, (int64_t[]){2048, 512});
    c2 = make(EMBER_DTYPE_F32, 2, (int64_t[]){2048, 512});
    CHECK_OK(ember_gemm(0, 0, 1.0f, a, b, 0.0f, c1));
    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_BF16));
    CHECK_OK(ember_gemm(0, 0, 1.0f, a, b, 0.0f, c2));
    CHECK_OK(ember_set_matmul_precision(EMBER_MATMUL_F32));
    CHECK(memcmp(ember_tensor_data(c1), ember_tensor_data(c2), (size_t)2048 * 512 * 4) == 0);
    ember_tensor_destroy(a);
    ember_tensor_destroy(b);
    ember_tensor_destroy(c1);
    ember_tensor_destroy(c2);
    printf("bf16 matmul: 24 products within f32 accumulation of the bf16-rounded product (f32 differs by up to %.3g)\n",
           worst_f32);
}

static void test_bad_operands(void) {
    ember_tensor *f = make(EMBER_DTYPE_F32, 1, (int64_t[]){8}), *g = make(EMBER_DTYPE_F32, 1, (int64_t[]){9});
    ember_tensor *i = make(EMBER_DTYPE_I32, 1, (int64_t[]){8}), *h = make(EMBER_DTYPE_F16, 1, (int64_t[]){8});
    CHECK_STATUS(ember_unary(EMBER_UNARY_EXP, f, g), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_unary(EMBER_UNARY_EXP, i, i), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_unary(EMBER_UNARY_EXP, f, h), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_unary((ember_unary_op)99, f, f), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_unary(EMBER_UNARY_EXP, NULL, f), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_binary((ember_binary_op)-1, f, f, f), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_axpy(f, 1.0, g), EMBER_ERR_SHAPE);
    CHECK_STATUS(ember_scale(i, i, 1.0, 0.0), EMBER_ERR_DTYPE);
    ember_tensor *m = make(EMBER_DTYPE_F32, 2, (int64_t[]){4, 4}), *col = NULL;
    CHECK_OK(ember_tensor_narrow(m, 1, 1, 2, &col));
    ember_tensor *o = make(EMBER_DTYPE_F32, 2, (int64_t[]){4, 2});
    CHECK_STATUS(ember_unary(EMBER_UNARY_RELU, o, col), EMBER_ERR_STATE);
    CHECK(strstr(ember_last_error(), "not contiguous") != NULL);
    ember_tensor *all[] = {f, g, i, h, m, col, o};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) ember_tensor_destroy(all[k]);
}

int main(void) {
    test_fill_convert();
    test_elementwise();
    test_reduce();
    test_gemm();
    test_gemm_short();
    test_gemm_bf16();
    test_bad_operands();
    return check_summary();
}
