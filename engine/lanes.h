/*
 * One summation order for dot products that both the CPU and the CUDA kernels use, so
 * their results agree bit for bit and the CPU can vectorise: 16 interleaved partial
 * sums (lane l adds the products at c = l, l + 16, l + 32, ...), folded pairwise
 * (lane l += lane l + 8, then + 4, + 2, + 1). A strict left-to-right sum cannot be
 * vectorised without changing its result; this order can, at any vector width up
 * to 16 floats, and is the same on every machine. Products and sums are rounded
 * separately (no fused multiply-add: the CPU builds with -ffp-contract=off, CUDA uses
 * the _rn intrinsics).
 */
#ifndef EMBER_LANES_H
#define EMBER_LANES_H

#include <stdint.h>

#ifdef __CUDACC__
#define EMBER__HD static __host__ __device__ __forceinline__
#else
#define EMBER__HD static inline
#endif

#if defined(__CUDA_ARCH__)
#define EMBER__MUL(a, b) __fmul_rn((a), (b))
#define EMBER__ADD(a, b) __fadd_rn((a), (b))
#else
#define EMBER__MUL(a, b) ((a) * (b))
#define EMBER__ADD(a, b) ((a) + (b))
#endif

#define EMBER_LANES 16

#if defined(__CUDACC__) || !defined(__GNUC__)
/* <a, b> over d floats in the lane order above. */
EMBER__HD float ember__dot_lanes(const float *a, const float *b, int64_t d) {
    float acc[EMBER_LANES];
    for (int l = 0; l < EMBER_LANES; l++) acc[l] = 0.0f;
    int64_t c = 0;
    for (; c + EMBER_LANES <= d; c += EMBER_LANES)
        for (int l = 0; l < EMBER_LANES; l++) acc[l] = EMBER__ADD(acc[l], EMBER__MUL(a[c + l], b[c + l]));
    for (int l = 0; c + l < d; l++) acc[l] = EMBER__ADD(acc[l], EMBER__MUL(a[c + l], b[c + l]));
    for (int w = EMBER_LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++) acc[l] = EMBER__ADD(acc[l], acc[l + w]);
    return acc[0];
}
#else
/* The same arithmetic with GCC/clang vector types, so it is vectorised whatever the
   optimiser decides (one 16-wide multiply and add per step, a shuffle tree at the end). */
#include <string.h>
typedef float ember__v16 __attribute__((vector_size(64)));
typedef float ember__v8 __attribute__((vector_size(32)));
typedef float ember__v4 __attribute__((vector_size(16)));
typedef float ember__v2 __attribute__((vector_size(8)));

static inline float ember__dot_lanes(const float *a, const float *b, int64_t d) {
    ember__v16 acc = {0}, x, y;
    int64_t c = 0;
    for (; c + EMBER_LANES <= d; c += EMBER_LANES) {
        memcpy(&x, a + c, sizeof x);
        memcpy(&y, b + c, sizeof y);
        acc = acc + x * y;
    }
    if (c < d) {
        float t[EMBER_LANES];
        memcpy(t, &acc, sizeof t);
        for (int l = 0; c + l < d; l++) t[l] = t[l] + a[c + l] * b[c + l];
        memcpy(&acc, t, sizeof t);
    }
    ember__v8 h = __builtin_shufflevector(acc, acc, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(acc, acc, 8, 9, 10, 11, 12, 13, 14, 15);
    ember__v4 q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    ember__v2 p = __builtin_shufflevector(q, q, 0, 1) + __builtin_shufflevector(q, q, 2, 3);
    return p[0] + p[1];
}
#endif

#endif /* EMBER_LANES_H */
