/*
 * engine/backend.h: the kernel table every compute backend fills in. Not installed.
 *
 * The dispatcher (engine/ops.c) validates tensors (device, dtype, shape, contiguity)
 * and calls exactly one backend entry with raw device pointers and element counts,
 * so a backend never sees a tensor and never re-validates. Both backends implement
 * the same arithmetic: float dtypes (f32, f16, bf16) load into f32, compute, and
 * store back rounding to nearest even. CUDA entries are queued on the calling
 * thread's current stream of the active device (ember__cuda_current_stream) and do
 * not wait; CPU entries run to completion (OpenMP).
 */
#ifndef EMBER_BACKEND_H
#define EMBER_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ember/status.h"
#include "ember/tensor.h"
#include "ember/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Kinds for the rng entry. */
enum {
    EMBER__RNG_BITS,    /* raw words: i32 one word per element, i64 two (lo, hi), u8/i8 low byte */
    EMBER__RNG_UNIFORM, /* a + (b - a) * u, u = (word >> 8) * 2^-24 */
    EMBER__RNG_NORMAL   /* a + b * z, Box-Muller on words (2j, 2j+1) relative to an even offset */
};

typedef struct ember__backend {
    const char *name;
    /* Make device index current for this thread (CPU: no-op). */
    ember_status (*activate)(int device_index);
    /* Wait for all queued work on the device. */
    ember_status (*synchronize)(int device_index);

    ember_status (*fill)(void *dst, ember_dtype dt, int64_t n, double value);
    /* dst[i] = (ddt) src[i]; any pair of dtypes; floats to ints truncate toward zero. */
    ember_status (*convert)(void *dst, ember_dtype ddt, const void *src, ember_dtype sdt,
                            int64_t n);
    /* Strided copy on this device: dst and src strides in elements, esize bytes each. */
    ember_status (*copy_strided)(void *dst, const int64_t *dst_strides, const void *src,
                                 const int64_t *src_strides, const int64_t *shape, int ndim,
                                 size_t esize);

    /* Float dtypes only (f32, f16, bf16). out may equal x. */
    ember_status (*unary)(ember_unary_op op, void *out, const void *x, ember_dtype dt, int64_t n);
    /* out[i] = a[i] op b[i % nb]; nb divides n (nb == n: same shape; nb == 1: scalar). */
    ember_status (*binary)(ember_binary_op op, void *out, const void *a, const void *b,
                           ember_dtype dt, int64_t n, int64_t nb);
    /* out[i] = alpha * x[i] + beta. */
    ember_status (*scale)(void *out, const void *x, ember_dtype dt, int64_t n, float alpha,
                          float beta);
    /* y[i] += alpha * x[i]. */
    ember_status (*axpy)(void *y, const void *x, ember_dtype dt, int64_t n, float alpha);
    /*
     * out[o] = reduce(x[o * inner + j], j < inner) for o < outer; out is f32.
     * MEAN divides by inner; inner == 0 gives 0 for SUM/MEAN/SUMSQ, -inf/+inf for MAX/MIN.
     * Deterministic: the same inputs give the same bits on every call.
     */
    ember_status (*reduce)(ember_reduce_op op, float *out, const void *x, ember_dtype dt,
                           int64_t outer, int64_t inner);
    /*
     * Row-major f32 GEMM, batched: for b < batch,
     *   C_b = alpha * op(A_b) @ op(B_b) + beta * C_b,
     * A_b = a + b * stride_a (stride 0 shares one matrix), leading dims lda/ldb/ldc in
     * elements as for row-major cblas (op(A) is m x k, op(B) is k x n, C is m x n).
     */
    ember_status (*gemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, int64_t stride_a, const float *b,
                         int64_t ldb, int64_t stride_b, float beta, float *c, int64_t ldc,
                         int64_t stride_c, int64_t batch);
    /* Philox stream (see ember/rng.h) for elements 0..n-1 at word offset `offset`. */
    ember_status (*rng)(int kind, void *dst, ember_dtype dt, int64_t n, uint64_t seed,
                        uint64_t offset, float a, float b);
} ember__backend;

/* The matmul precision (ember_set_matmul_precision) is bf16: the backends' gemm
   rounds the operands of products of at least EMBER__BF16_MIN_MACS multiply-adds. */
#define EMBER__BF16_MIN_MACS ((int64_t)1 << 22)
/* ... and sums over at least EMBER__BF16_MIN_K terms: AMX multiplies bf16 in tiles of 32
   along k, so a shorter sum (a DLRM's 13 dense features) pays a padded tile and two
   conversions for no gain (measured: 0.8 ms against 0.4 in f32 for 2048 x 13 x 512). */
#define EMBER__BF16_MIN_K 32
int ember__matmul_bf16(void);
/* Whether a product of these sizes runs in bf16 now (the precision and the two bounds). */
static inline int ember__matmul_bf16_for(int64_t m, int64_t n, int64_t k) {
    return k >= EMBER__BF16_MIN_K && m * n * k >= EMBER__BF16_MIN_MACS && ember__matmul_bf16();
}
/* This build and CPU can (ember_set_matmul_precision would accept bf16). */
int ember__matmul_bf16_supported(void);
/* Why this build and CPU cannot do bf16 products natively, or NULL when they can. */
const char *ember__matmul_bf16_refusal(void);
/* One bf16 product on the CPU (engine/cpu/gemm_bf16.c), the gemm entry's semantics. */
ember_status ember__gemm_bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* Products with a side of at most EMBER__SKINNY_MAX (engine/cpu/gemm_skinny.c): the
   gemm entry's semantics for f32 C = alpha op(A) op(B) + beta C when m or k is that
   short and the other sides at least twice as long (NN and NT with m short, TN with k
   short). Returns 1 when it did the product, 0 when the shape or
   the CPU is not one of its cases (nothing was touched). */
#define EMBER__SKINNY_MAX 64
int ember__gemm_skinny(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

extern const ember__backend ember__backend_cpu;
#ifdef EMBER_HAVE_CUDA
extern const ember__backend ember__backend_cuda;
#endif

/* The backend for a device type, or NULL when not built. */
const ember__backend *ember__backend_for(ember_device_type type);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_BACKEND_H */
