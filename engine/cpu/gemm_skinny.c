/*
 * engine/cpu/gemm_skinny.c: f32 products with one short side (at most
 * EMBER__SKINNY_MAX), the shape of every product of a small-batch training step or a
 * serving batch: Y = X W (m short), dX = dY W^T (m short), dW = X^T dY (k short).
 *
 * BLAS packs both operands into its blocked layout before its kernel runs. With a
 * batch of 32 the product does 32 multiply-adds per weight, so packing the weight
 * matrix costs about as much as the arithmetic, and OpenBLAS 0.3.21 runs these
 * shapes at a third to a half of its large-GEMM rate (bench/RESULTS.md, section
 * "gemm: short products"). Here the long operand is read once, in place or through
 * a strip small enough for L1, and only the short one is packed:
 *  - NN (C = A B, m short): a tile of 8 rows x 48 columns of C is 24 AVX-512
 *    accumulators (with 3 B vectors and a broadcast, inside the 32 registers). B's
 *    48-column strip is copied KC rows at a time into a contiguous buffer (each row of
 *    the strip lies in its own page, beyond the hardware prefetchers, so the copy
 *    prefetches in software) and then serves every 8 rows of A from L1.
 *  - NT (C = A B^T, m short): the same tile, over a strip of B^T: 48 rows of B are read
 *    16 x 16 at a time along their length (contiguous) and transposed in registers
 *    into the strip. (Dot products of A's and B's rows, summed across lanes at the
 *    end, ran at half this rate.)
 *  - TN (C = A^T B, k short): a tile of 8 x 48 of C, k outer products of a row of A
 *    (8 broadcasts) and a row of B's packed strip (3 vectors); C is written once.
 * Each element of C is summed by one thread in a fixed order, so results do not depend
 * on the thread count (they differ from BLAS's in rounding). Edges are masked: rows
 * past m are computed on row 0 and not stored, columns past n load zeros.
 * The kernels need AVX-512F (checked at run time); elsewhere the caller uses BLAS.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/backend.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define MR 8  /* rows of C per tile */
#define NV 3  /* vectors of 16 columns per tile (8 x 3 accumulators + 3 + 1 fit the 32 registers) */
#define PF_ROWS 8 /* NN: rows of B prefetched ahead while packing */

#if defined(__clang__) /* clang ignores GCC target pragmas */
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif

static inline __mmask16 lane_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* c[0 .. 16) under mask = alpha * acc + beta * c */
static inline void put(float *c, __mmask16 mk, __m512 acc, float alpha, float beta) {
    __m512 v = _mm512_mul_ps(acc, _mm512_set1_ps(alpha));
    if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, c), _mm512_set1_ps(beta), v);
    _mm512_mask_storeu_ps(c, mk, v);
}

/* NN: rows [0, rows) x 48 columns of C += the packed A block (ap[p][r], 8 per p) times
   the packed B strip (bp[p][c], 48 per p), p in [0, kc). acc holds the running sums of
   the whole tile (first: start them at 0; last: write C = alpha acc + beta C). */
static void nn_tile(int rows, int64_t cols, int64_t kc, const float *ap, const float *bp, float *part, int first,
                    int last, float alpha, float beta, float *c, int64_t ldc) {
    __mmask16 mk[NV];
    for (int v = 0; v < NV; v++) mk[v] = lane_mask(cols - 16 * v);
    __m512 acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(part + (r * NV + v) * 16);
    for (int64_t p = 0; p < kc; p++) {
        const float *bq = bp + p * 16 * NV, *aq = ap + p * MR;
        __m512 bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(bq + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(aq[r]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    if (!last) {
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++) _mm512_store_ps(part + (r * NV + v) * 16, acc[r][v]);
        return;
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < NV; v++)
            if (mk[v]) put(c + r * ldc + 16 * v, mk[v], acc[r][v], alpha, beta);
}

/* TN: C rows [0, rows) x 48 columns = alpha sum_p A[p][r] B[p][c] + beta C, with the B
   strip packed as bp[p][48]. */
static void tn_tile(int rows, int64_t cols, int64_t k, float alpha, const float *a, int64_t lda, const float *bp,
                    float beta, float *c, int64_t ldc) {
    __mmask16 mk[NV];
    for (int v = 0; v < NV; v++) mk[v] = lane_mask(cols - 16 * v);
    __m512 acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
        const float *ar = a + p * lda, *bq = bp + p * 16 * NV;
        __m512 bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(bq + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ar[r < rows ? r : 0]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < NV; v++)
            if (mk[v]) put(c + r * ldc + 16 * v, mk[v], acc[r][v], alpha, beta);
}

/* The 48-column strip of rows [p0, p0 + kc) of B (row-major, ld) from column j0, cols
   of them real, into dst[p][48] (zeros past cols). */
static void pack_strip(float *dst, const float *b, int64_t ld, int64_t p0, int64_t kc, int64_t j0, int64_t cols) {
    __mmask16 mk[NV];
    for (int v = 0; v < NV; v++) mk[v] = lane_mask(cols - 16 * v);
    for (int64_t p = 0; p < kc; p++) {
        const float *src = b + (p0 + p) * ld + j0;
        /* each row of the strip is in its own page, out of the hardware prefetchers' reach */
        if (p + PF_ROWS < kc)
            for (int v = 0; v < NV; v++) _mm_prefetch((const char *)(src + PF_ROWS * ld + 16 * v), _MM_HINT_T0);
        for (int v = 0; v < NV; v++) _mm512_store_ps(dst + p * 16 * NV + 16 * v, _mm512_maskz_loadu_ps(mk[v], src + 16 * v));
    }
}

static inline __m512 pd_lo(__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
static inline __m512 pd_hi(__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

/* The same strip of op(B) = B^T for B stored (n x k) with leading dim ld: dst[p][c] =
   B[j0 + c][p0 + p], read 16 x 16 at a time along B's rows (contiguous, in the
   prefetchers' reach) and transposed in registers (unpacks, then 128-bit lane
   shuffles), so NT runs through the NN tile. */
static void pack_strip_t(float *dst, const float *b, int64_t ld, int64_t p0, int64_t kc, int64_t j0, int64_t cols) {
    for (int g = 0; g < NV; g++) {
        int64_t c0 = 16 * g;
        for (int64_t q0 = 0; q0 < kc; q0 += 16) {
            __mmask16 mq = lane_mask(kc - q0);
            __m512 r[16], t[16], u[16];
            for (int q = 0; q < 16; q++)
                r[q] = c0 + q < cols ? _mm512_maskz_loadu_ps(mq, b + (j0 + c0 + q) * ld + p0 + q0) : _mm512_setzero_ps();
            for (int q = 0; q < 16; q += 2) {
                t[q] = _mm512_unpacklo_ps(r[q], r[q + 1]);
                t[q + 1] = _mm512_unpackhi_ps(r[q], r[q + 1]);
            }
            for (int q = 0; q < 16; q += 4) {
                u[q] = pd_lo(t[q], t[q + 2]);
                u[q + 1] = pd_hi(t[q], t[q + 2]);
                u[q + 2] = pd_lo(t[q + 1], t[q + 3]);
                u[q + 3] = pd_hi(t[q + 1], t[q + 3]);
            }
            /* u[4h + c] holds B rows 4h .. 4h + 3 at columns c, c + 4, c + 8, c + 12 */
            for (int c = 0; c < 4; c++) {
                __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
                __m512 v2 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd), v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
                __m512 col[4] = {_mm512_shuffle_f32x4(v0, v1, 0x88), _mm512_shuffle_f32x4(v2, v3, 0x88),
                                 _mm512_shuffle_f32x4(v0, v1, 0xdd), _mm512_shuffle_f32x4(v2, v3, 0xdd)};
                for (int h = 0; h < 4; h++) {
                    int64_t q = c + 4 * h; /* row q0 + q of the strip */
                    if (q0 + q < kc) _mm512_store_ps(dst + (q0 + q) * 16 * NV + c0, col[h]);
                }
            }
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#define TILE_N (16 * NV)
#define KC 128                          /* NN: rows of B per packed strip (24 KiB) */
#define PAR_MIN_MACS ((int64_t)1 << 18) /* below: one thread */

static int have_avx512(void) {
    static atomic_int known = -1; /* products may start on several threads at once */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        k = __builtin_cpu_supports("avx512f") ? 1 : 0;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* floats, 64-byte aligned (aligned_alloc wants a multiple of the alignment) */
static float *alloc_floats(int64_t n) { return aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64); }

/* The short operand A (m x k, rows of ld), in blocks of 8 rows (zeros past m):
   ap[b][p][r]. */
static float *pack_a(const float *a, int64_t ld, int64_t m, int64_t k) {
    int64_t nb = (m + MR - 1) / MR;
    float *ap = alloc_floats(nb * k * MR);
    if (!ap) return NULL;
    for (int64_t b = 0; b < nb; b++) {
        float *blk = ap + b * k * MR;
        for (int r = 0; r < MR; r++) {
            int64_t i = b * MR + r;
            for (int64_t p = 0; p < k; p++) blk[p * MR + r] = i < m ? a[i * ld + p] : 0.0f;
        }
    }
    return ap;
}

int ember__gemm_skinny(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const int64_t S = EMBER__SKINNY_MAX, L = 2 * EMBER__SKINNY_MAX;
    int par = m * n * k >= PAR_MIN_MACS;
    if (!have_avx512()) return 0;
    if (!ta && m <= S && n >= L && k >= L) {
        float *ap = pack_a(a, lda, m, k);
        if (!ap) return 0;
        int64_t nb = (m + MR - 1) / MR, tiles = (n + TILE_N - 1) / TILE_N;
#pragma omp parallel if (par)
        {
            _Alignas(64) float bp[KC * TILE_N];
            _Alignas(64) float part[(EMBER__SKINNY_MAX / MR) * MR * TILE_N];
#pragma omp for schedule(static)
            for (int64_t t = 0; t < tiles; t++) {
                int64_t j = t * TILE_N, cols = min64(TILE_N, n - j);
                for (int64_t p0 = 0; p0 < k; p0 += KC) {
                    int64_t kc = min64(KC, k - p0);
                    if (tb) pack_strip_t(bp, b, ldb, p0, kc, j, cols);
                    else pack_strip(bp, b, ldb, p0, kc, j, cols);
                    for (int64_t ib = 0; ib < nb; ib++)
                        nn_tile((int)min64(MR, m - ib * MR), cols, kc, ap + ib * k * MR + p0 * MR, bp,
                                part + ib * MR * TILE_N, p0 == 0, p0 + kc >= k, alpha, beta, c + ib * MR * ldc + j,
                                ldc);
                }
            }
        }
        free(ap);
        return 1;
    }
    if (ta && !tb && k <= S && m >= L && n >= L) {
        int64_t tiles = (n + TILE_N - 1) / TILE_N;
        float *bp = alloc_floats(tiles * k * TILE_N);
        if (!bp) return 0;
        for (int64_t t = 0; t < tiles; t++) pack_strip(bp + t * k * TILE_N, b, ldb, 0, k, t * TILE_N, min64(TILE_N, n - t * TILE_N));
        int64_t blocks = (m + MR - 1) / MR;
#pragma omp parallel for if (par) schedule(static)
        for (int64_t ib = 0; ib < blocks; ib++) {
            int64_t i = ib * MR;
            for (int64_t t = 0; t < tiles; t++)
                tn_tile((int)min64(MR, m - i), min64(TILE_N, n - t * TILE_N), k, alpha, a + i, lda,
                        bp + t * k * TILE_N, beta, c + i * ldc + t * TILE_N, ldc);
        }
        free(bp);
        return 1;
    }
    return 0;
}

#else

int ember__gemm_skinny(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)c, (void)ldc;
    return 0;
}

#endif
