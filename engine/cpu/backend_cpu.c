/*
 * The CPU backend: OpenMP loops the compiler vectorises, OpenBLAS for GEMM.
 *
 * f32 is the fast path of every kernel. f16 and bf16 are processed in blocks of
 * BLOCK elements widened to f32 on the stack, computed by the same f32 loop and
 * narrowed back, so there is one arithmetic definition per op. Small inputs run on
 * the calling thread: waking a thread team costs more than a few thousand flops.
 * Reductions are deterministic regardless of the thread count: the input is cut
 * into fixed-size chunks whose partial sums are combined in order.
 */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef EMBER_HAVE_BLAS
#include <cblas.h>
#endif

#include "engine/backend.h"
#include "engine/half.h"
#include "engine/internal.h"
#include "engine/philox.h"

#define PAR_MIN 32768 /* elements below which loops stay on one thread */
#define BLOCK 1024    /* widening block for f16/bf16 */
#define RCHUNK 16384  /* reduction chunk: fixed so results do not depend on threads */

static ember_status cpu_activate(int dev) {
    (void)dev;
    return EMBER_OK;
}
static ember_status cpu_sync(int dev) {
    (void)dev;
    return EMBER_OK;
}

/* ---- scalar conversions ---- */

static double load_elem(const void *p, ember_dtype dt, int64_t i) {
    switch (dt) {
    case EMBER_DTYPE_F32: return ((const float *)p)[i];
    case EMBER_DTYPE_F16: return ember__f16_to_f32(((const uint16_t *)p)[i]);
    case EMBER_DTYPE_BF16: return ember__bf16_to_f32(((const uint16_t *)p)[i]);
    case EMBER_DTYPE_I8: return ((const int8_t *)p)[i];
    case EMBER_DTYPE_U8: return ((const uint8_t *)p)[i];
    case EMBER_DTYPE_I32: return ((const int32_t *)p)[i];
    case EMBER_DTYPE_I64: return (double)((const int64_t *)p)[i];
    default: return 0;
    }
}

/* Integers saturate to their range (NaN gives 0), so no input is undefined behaviour. */
static int64_t sat_int(double v, double lo, double hi) {
    if (!(v == v)) return 0;
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v; /* truncates toward zero */
}

static void store_elem(void *p, ember_dtype dt, int64_t i, double v) {
    switch (dt) {
    case EMBER_DTYPE_F32: ((float *)p)[i] = (float)v; break;
    case EMBER_DTYPE_F16: ((uint16_t *)p)[i] = ember__f32_to_f16((float)v); break;
    case EMBER_DTYPE_BF16: ((uint16_t *)p)[i] = ember__f32_to_bf16((float)v); break;
    case EMBER_DTYPE_I8: ((int8_t *)p)[i] = (int8_t)sat_int(v, -128, 127); break;
    case EMBER_DTYPE_U8: ((uint8_t *)p)[i] = (uint8_t)sat_int(v, 0, 255); break;
    case EMBER_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)sat_int(v, -2147483648.0, 2147483647.0); break;
    case EMBER_DTYPE_I64:
        /* 2^63 is not representable; the largest double below it is 2^63 - 1024. */
        ((int64_t *)p)[i] = sat_int(v, -9223372036854775808.0, 9223372036854774784.0);
        break;
    default: break;
    }
}

static void widen(float *dst, const void *src, ember_dtype dt, int64_t n) {
    const uint16_t *s = (const uint16_t *)src;
    if (dt == EMBER_DTYPE_F16)
        for (int64_t i = 0; i < n; i++) dst[i] = ember__f16_to_f32(s[i]);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = ember__bf16_to_f32(s[i]);
}

static void narrow(void *dst, const float *src, ember_dtype dt, int64_t n) {
    uint16_t *d = (uint16_t *)dst;
    if (dt == EMBER_DTYPE_F16)
        for (int64_t i = 0; i < n; i++) d[i] = ember__f32_to_f16(src[i]);
    else
        for (int64_t i = 0; i < n; i++) d[i] = ember__f32_to_bf16(src[i]);
}

/* ---- fill / convert / copy ---- */

static ember_status cpu_fill(void *dst, ember_dtype dt, int64_t n, double value) {
    size_t es = ember_dtype_size(dt);
    unsigned char pattern[8];
    store_elem(pattern, dt, 0, value);
    if (es == 1) {
        memset(dst, pattern[0], (size_t)n);
        return EMBER_OK;
    }
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) memcpy((char *)dst + (size_t)i * es, pattern, es);
    return EMBER_OK;
}

static ember_status cpu_convert(void *dst, ember_dtype ddt, const void *src, ember_dtype sdt,
                                int64_t n) {
    if (ddt == sdt) {
        memmove(dst, src, (size_t)n * ember_dtype_size(ddt));
        return EMBER_OK;
    }
    if (sdt == EMBER_DTYPE_F32 && (ddt == EMBER_DTYPE_F16 || ddt == EMBER_DTYPE_BF16)) {
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
        for (int64_t b = 0; b < n; b += BLOCK)
            narrow((uint16_t *)dst + b, (const float *)src + b, ddt, n - b < BLOCK ? n - b : BLOCK);
        return EMBER_OK;
    }
    if (ddt == EMBER_DTYPE_F32 && (sdt == EMBER_DTYPE_F16 || sdt == EMBER_DTYPE_BF16)) {
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
        for (int64_t b = 0; b < n; b += BLOCK)
            widen((float *)dst + b, (const uint16_t *)src + b, sdt, n - b < BLOCK ? n - b : BLOCK);
        return EMBER_OK;
    }
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) store_elem(dst, ddt, i, load_elem(src, sdt, i));
    return EMBER_OK;
}

static ember_status cpu_copy_strided(void *dst, const int64_t *dst_strides, const void *src,
                                     const int64_t *src_strides, const int64_t *shape, int ndim,
                                     size_t esize) {
    /* Drop size-1 dims and merge dims that are contiguous in both tensors, so the
       common cases (whole tensors, row slices) become one memcpy or a loop of them. */
    int64_t sh[EMBER_MAX_DIMS], ds[EMBER_MAX_DIMS], ss[EMBER_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) return EMBER_OK;
        if (shape[i] == 1) continue;
        if (nd > 0 && ds[nd - 1] == dst_strides[i] * shape[i] &&
            ss[nd - 1] == src_strides[i] * shape[i]) {
            sh[nd - 1] *= shape[i];
            ds[nd - 1] = dst_strides[i];
            ss[nd - 1] = src_strides[i];
            continue;
        }
        sh[nd] = shape[i];
        ds[nd] = dst_strides[i];
        ss[nd] = src_strides[i];
        nd++;
    }
    if (nd == 0) {
        memmove(dst, src, esize);
        return EMBER_OK;
    }
    int inner_contig = ds[nd - 1] == 1 && ss[nd - 1] == 1;
    int64_t inner = sh[nd - 1], outer = 1;
    for (int i = 0; i < nd - 1; i++) outer *= sh[i];
    int64_t total = outer * inner;
#pragma omp parallel for if (total >= PAR_MIN && outer > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        int64_t rem = o, doff = 0, soff = 0;
        for (int i = nd - 2; i >= 0; i--) {
            int64_t idx = rem % sh[i];
            rem /= sh[i];
            doff += idx * ds[i];
            soff += idx * ss[i];
        }
        char *d = (char *)dst + doff * (int64_t)esize;
        const char *s = (const char *)src + soff * (int64_t)esize;
        if (inner_contig) {
            memmove(d, s, (size_t)inner * esize);
        } else {
            int64_t dsi = ds[nd - 1] * (int64_t)esize, ssi = ss[nd - 1] * (int64_t)esize;
            switch (esize) {
            case 4:
                for (int64_t j = 0; j < inner; j++) memcpy(d + j * dsi, s + j * ssi, 4);
                break;
            case 2:
                for (int64_t j = 0; j < inner; j++) memcpy(d + j * dsi, s + j * ssi, 2);
                break;
            default:
                for (int64_t j = 0; j < inner; j++) memcpy(d + j * dsi, s + j * ssi, esize);
            }
        }
    }
    return EMBER_OK;
}

/* ---- element-wise, f32 kernels ---- */

static void unary_f32(ember_unary_op op, float *out, const float *x, int64_t n) {
    /* out may alias x exactly (in place), which element-wise loops allow. */
    switch (op) {
#define LOOP(expr)                                                     \
    _Pragma("omp parallel for simd if (n >= PAR_MIN) schedule(static)") \
    for (int64_t i = 0; i < n; i++) {                                  \
        float v = x[i];                                                \
        out[i] = (expr);                                               \
    }                                                                  \
    break;
    case EMBER_UNARY_NEG: LOOP(-v)
    case EMBER_UNARY_ABS: LOOP(fabsf(v))
    case EMBER_UNARY_SQUARE: LOOP(v * v)
    case EMBER_UNARY_SQRT: LOOP(sqrtf(v))
    case EMBER_UNARY_EXP: LOOP(expf(v))
    case EMBER_UNARY_LOG: LOOP(logf(v))
    case EMBER_UNARY_RELU: LOOP(v > 0.0f ? v : 0.0f)
    case EMBER_UNARY_SIGMOID: LOOP(1.0f / (1.0f + expf(-v)))
    case EMBER_UNARY_TANH: LOOP(tanhf(v))
    case EMBER_UNARY_LOG1P_RELU: LOOP(log1pf(v > 0.0f ? v : 0.0f))
#undef LOOP
    default: break;
    }
}

static float binop(ember_binary_op op, float a, float b) {
    switch (op) {
    case EMBER_BINARY_ADD: return a + b;
    case EMBER_BINARY_SUB: return a - b;
    case EMBER_BINARY_MUL: return a * b;
    case EMBER_BINARY_DIV: return a / b;
    case EMBER_BINARY_MAX: return fmaxf(a, b);
    case EMBER_BINARY_MIN: return fminf(a, b);
    default: return 0;
    }
}

/* out[i] = a[i] op b[i % nb] for i in [i0, i0 + n), b indexed from i0 % nb. */
static void binary_f32(ember_binary_op op, float *out, const float *a, const float *b, int64_t n,
                       int64_t nb, int64_t i0) {
    if (nb == 1) {
        float s = b[0];
        switch (op) {
        case EMBER_BINARY_ADD:
            for (int64_t i = 0; i < n; i++) out[i] = a[i] + s;
            return;
        case EMBER_BINARY_MUL:
            for (int64_t i = 0; i < n; i++) out[i] = a[i] * s;
            return;
        default:
            for (int64_t i = 0; i < n; i++) out[i] = binop(op, a[i], s);
            return;
        }
    }
    int64_t j = i0 % nb;
    for (int64_t i = 0; i < n;) {
        int64_t run = nb - j < n - i ? nb - j : n - i;
        const float *bb = b + j;
        switch (op) {
        case EMBER_BINARY_ADD:
            for (int64_t r = 0; r < run; r++) out[i + r] = a[i + r] + bb[r];
            break;
        case EMBER_BINARY_SUB:
            for (int64_t r = 0; r < run; r++) out[i + r] = a[i + r] - bb[r];
            break;
        case EMBER_BINARY_MUL:
            for (int64_t r = 0; r < run; r++) out[i + r] = a[i + r] * bb[r];
            break;
        case EMBER_BINARY_DIV:
            for (int64_t r = 0; r < run; r++) out[i + r] = a[i + r] / bb[r];
            break;
        default:
            for (int64_t r = 0; r < run; r++) out[i + r] = binop(op, a[i + r], bb[r]);
        }
        i += run;
        j = 0;
    }
}

static ember_status cpu_unary(ember_unary_op op, void *out, const void *x, ember_dtype dt, int64_t n) {
    if (dt == EMBER_DTYPE_F32) {
        unary_f32(op, (float *)out, (const float *)x, n);
        return EMBER_OK;
    }
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
    for (int64_t b = 0; b < n; b += BLOCK) {
        float buf[BLOCK];
        int64_t len = n - b < BLOCK ? n - b : BLOCK;
        widen(buf, (const uint16_t *)x + b, dt, len);
        unary_f32(op, buf, buf, len);
        narrow((uint16_t *)out + b, buf, dt, len);
    }
    return EMBER_OK;
}

static ember_status cpu_binary(ember_binary_op op, void *out, const void *a, const void *b,
                               ember_dtype dt, int64_t n, int64_t nb) {
    if (dt == EMBER_DTYPE_F32) {
        /* Split on chunk boundaries; each chunk knows its offset into b. */
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
        for (int64_t c = 0; c < n; c += 8 * BLOCK) {
            int64_t len = n - c < 8 * BLOCK ? n - c : 8 * BLOCK;
            binary_f32(op, (float *)out + c, (const float *)a + c, (const float *)b, len, nb, c);
        }
        return EMBER_OK;
    }
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
    for (int64_t c = 0; c < n; c += BLOCK) {
        float ba[BLOCK], bb[BLOCK];
        int64_t len = n - c < BLOCK ? n - c : BLOCK;
        widen(ba, (const uint16_t *)a + c, dt, len);
        for (int64_t i = 0; i < len; i++)
            bb[i] = nb == 1 ? (float)load_elem(b, dt, 0) : (float)load_elem(b, dt, (c + i) % nb);
        for (int64_t i = 0; i < len; i++) ba[i] = binop(op, ba[i], bb[i]);
        narrow((uint16_t *)out + c, ba, dt, len);
    }
    return EMBER_OK;
}

static ember_status cpu_scale(void *out, const void *x, ember_dtype dt, int64_t n, float alpha,
                              float beta) {
    if (dt == EMBER_DTYPE_F32) {
        float *o = (float *)out;
        const float *xi = (const float *)x;
#pragma omp parallel for simd if (n >= PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) o[i] = alpha * xi[i] + beta;
        return EMBER_OK;
    }
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
    for (int64_t c = 0; c < n; c += BLOCK) {
        float buf[BLOCK];
        int64_t len = n - c < BLOCK ? n - c : BLOCK;
        widen(buf, (const uint16_t *)x + c, dt, len);
        for (int64_t i = 0; i < len; i++) buf[i] = alpha * buf[i] + beta;
        narrow((uint16_t *)out + c, buf, dt, len);
    }
    return EMBER_OK;
}

static ember_status cpu_axpy(void *y, const void *x, ember_dtype dt, int64_t n, float alpha) {
    if (dt == EMBER_DTYPE_F32) {
        float *yy = (float *)y;
        const float *xx = (const float *)x;
#pragma omp parallel for simd if (n >= PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) yy[i] += alpha * xx[i];
        return EMBER_OK;
    }
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
    for (int64_t c = 0; c < n; c += BLOCK) {
        float bx[BLOCK], by[BLOCK];
        int64_t len = n - c < BLOCK ? n - c : BLOCK;
        widen(bx, (const uint16_t *)x + c, dt, len);
        widen(by, (const uint16_t *)y + c, dt, len);
        for (int64_t i = 0; i < len; i++) by[i] += alpha * bx[i];
        narrow((uint16_t *)y + c, by, dt, len);
    }
    return EMBER_OK;
}

/* ---- reductions ---- */

/* Reduce x[0..n) (any float dtype) in double for sums, float for max/min. */
static double reduce_span(ember_reduce_op op, const void *x, ember_dtype dt, int64_t lo, int64_t hi) {
    double acc = op == EMBER_REDUCE_MAX ? -INFINITY : op == EMBER_REDUCE_MIN ? INFINITY : 0.0;
    float buf[BLOCK];
    for (int64_t c = lo; c < hi; c += BLOCK) {
        int64_t len = hi - c < BLOCK ? hi - c : BLOCK;
        const float *v;
        if (dt == EMBER_DTYPE_F32) {
            v = (const float *)x + c;
        } else {
            widen(buf, (const uint16_t *)x + c, dt, len);
            v = buf;
        }
        switch (op) {
        case EMBER_REDUCE_SUM:
        case EMBER_REDUCE_MEAN:
            for (int64_t i = 0; i < len; i++) acc += v[i];
            break;
        case EMBER_REDUCE_SUMSQ:
            for (int64_t i = 0; i < len; i++) acc += (double)v[i] * v[i];
            break;
        case EMBER_REDUCE_MAX: {
            float m = (float)acc;
            for (int64_t i = 0; i < len; i++) m = v[i] > m || v[i] != v[i] ? v[i] : m;
            acc = m;
            break;
        }
        case EMBER_REDUCE_MIN: {
            float m = (float)acc;
            for (int64_t i = 0; i < len; i++) m = v[i] < m || v[i] != v[i] ? v[i] : m;
            acc = m;
            break;
        }
        default: break;
        }
        if (acc != acc) return acc; /* NaN propagates */
    }
    return acc;
}

static double combine(ember_reduce_op op, double a, double b) {
    if (op == EMBER_REDUCE_MAX) return b > a || b != b ? b : a;
    if (op == EMBER_REDUCE_MIN) return b < a || b != b ? b : a;
    return a + b;
}

static ember_status cpu_reduce(ember_reduce_op op, float *out, const void *x, ember_dtype dt,
                               int64_t outer, int64_t inner) {
    size_t es = ember_dtype_size(dt);
    if (outer == 1 && inner >= 2 * RCHUNK) {
        /* One long row: fixed chunks in parallel, partials combined in order. */
        int64_t nchunks = (inner + RCHUNK - 1) / RCHUNK;
        double *part;
        EMBER_TRY(ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING,
                                     (size_t)nchunks * sizeof *part, (void **)&part));
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t lo = c * RCHUNK, hi = lo + RCHUNK < inner ? lo + RCHUNK : inner;
            part[c] = reduce_span(op, x, dt, lo, hi);
        }
        double acc = part[0];
        for (int64_t c = 1; c < nchunks; c++) acc = combine(op, acc, part[c]);
        ember_memory_free(NULL, part);
        out[0] = (float)(op == EMBER_REDUCE_MEAN ? acc / (double)inner : acc);
        return EMBER_OK;
    }
#pragma omp parallel for if (outer * inner >= PAR_MIN && outer > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        const void *row = (const char *)x + (size_t)(o * inner) * es;
        double acc = reduce_span(op, row, dt, 0, inner);
        if (op == EMBER_REDUCE_MEAN) acc = inner ? acc / (double)inner : 0.0;
        out[o] = (float)acc;
    }
    return EMBER_OK;
}

/* ---- gemm ---- */

#ifndef EMBER_HAVE_BLAS
/* Without a BLAS: a cache-blocked loop (correct, and far slower than OpenBLAS). */
static void gemm_ref(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
#pragma omp parallel for if (m * n * k >= PAR_MIN * 64) schedule(static)
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        for (int64_t j = 0; j < n; j++) ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
        for (int64_t p = 0; p < k; p++) {
            float av = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);
            if (!tb) {
                const float *bp = b + p * ldb;
                for (int64_t j = 0; j < n; j++) ci[j] += av * bp[j];
            } else {
                for (int64_t j = 0; j < n; j++) ci[j] += av * b[j * ldb + p];
            }
        }
    }
}
#endif

static ember_status cpu_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                             const float *a, int64_t lda, int64_t stride_a, const float *b,
                             int64_t ldb, int64_t stride_b, float beta, float *c, int64_t ldc,
                             int64_t stride_c, int64_t batch) {
    if (k == 0) { /* C = beta * C; BLAS rejects the zero leading dims of (m, 0) operands */
        for (int64_t i = 0; i < batch; i++)
            for (int64_t r = 0; r < m; r++) {
                float *cr = c + i * stride_c + r * ldc;
                for (int64_t j = 0; j < n; j++) cr[j] = beta == 0.0f ? 0.0f : beta * cr[j];
            }
        return EMBER_OK;
    }
    if (ember__matmul_bf16_for(m, n, k)) {
        for (int64_t i = 0; i < batch; i++)
            EMBER_TRY(ember__gemm_bf16(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb,
                                       beta, c + i * stride_c, ldc));
        return EMBER_OK;
    }
    if (batch == 1 && ember__gemm_skinny(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
        return EMBER_OK;
#ifdef EMBER_HAVE_BLAS
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX ||
        ldc > INT32_MAX)
        return ember__error(EMBER_ERR_OVERFLOW, "cpu gemm: dims exceed BLAS int (m=%lld n=%lld k=%lld)",
                            (long long)m, (long long)n, (long long)k);
    for (int64_t i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha,
                    a + i * stride_a, (int)lda, b + i * stride_b, (int)ldb, beta, c + i * stride_c,
                    (int)ldc);
#else
    for (int64_t i = 0; i < batch; i++)
        gemm_ref(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb,
                 beta, c + i * stride_c, ldc);
#endif
    return EMBER_OK;
}

/* ---- random numbers ---- */

static ember_status cpu_rng(int kind, void *dst, ember_dtype dt, int64_t n, uint64_t seed,
                            uint64_t offset, float a, float b) {
    if (kind == EMBER__RNG_NORMAL) {
        int64_t pairs = (n + 1) / 2;
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
        for (int64_t j = 0; j < pairs; j++) {
            uint64_t w = offset + 2 * (uint64_t)j; /* even: both words in one block */
            ember__u32x4 r = ember__philox_block(seed, w >> 2);
            uint32_t w0 = r.v[w & 3], w1 = r.v[(w & 3) + 1];
            float u1 = (float)((w0 >> 8) + 1u) * (1.0f / 16777216.0f);
            float u2 = (float)(w1 >> 8) * (1.0f / 16777216.0f);
            float rad = sqrtf(-2.0f * logf(u1));
            float th = 6.28318530717958647692f * u2;
            store_elem(dst, dt, 2 * j, a + b * (rad * cosf(th)));
            if (2 * j + 1 < n) store_elem(dst, dt, 2 * j + 1, a + b * (rad * sinf(th)));
        }
        return EMBER_OK;
    }
    int wpe = kind == EMBER__RNG_BITS && dt == EMBER_DTYPE_I64 ? 2 : 1; /* words per element */
#pragma omp parallel for if (n >= PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t w = offset + (uint64_t)i * (uint64_t)wpe;
        ember__u32x4 r = ember__philox_block(seed, w >> 2);
        uint32_t x = r.v[w & 3];
        if (kind == EMBER__RNG_UNIFORM) {
            store_elem(dst, dt, i, a + (b - a) * ember__u32_to_unit(x));
        } else if (dt == EMBER_DTYPE_I64) {
            uint64_t w2 = w + 1;
            ember__u32x4 r2 = (w2 >> 2) == (w >> 2) ? r : ember__philox_block(seed, w2 >> 2);
            ((uint64_t *)dst)[i] = (uint64_t)x | ((uint64_t)r2.v[w2 & 3] << 32);
        } else if (dt == EMBER_DTYPE_I32) {
            ((uint32_t *)dst)[i] = x;
        } else {
            ((uint8_t *)dst)[i] = (uint8_t)x;
        }
    }
    return EMBER_OK;
}

const ember__backend ember__backend_cpu = {
    .name = "cpu",
    .activate = cpu_activate,
    .synchronize = cpu_sync,
    .fill = cpu_fill,
    .convert = cpu_convert,
    .copy_strided = cpu_copy_strided,
    .unary = cpu_unary,
    .binary = cpu_binary,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .reduce = cpu_reduce,
    .gemm = cpu_gemm,
    .rng = cpu_rng,
};
