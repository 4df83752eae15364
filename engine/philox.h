/*
 * engine/philox.h: Philox 4x32-10 and the stream-to-number mapping, written once for
 * both the CPU and CUDA (EMBER_HD marks host+device code), so the two backends cannot
 * drift: the same (seed, word) gives the same bits everywhere. Not installed.
 */
#ifndef EMBER_PHILOX_H
#define EMBER_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define EMBER_HD __host__ __device__ __forceinline__
#else
#define EMBER_HD static inline
#endif

#define EMBER_PHILOX_M0 0xD2511F53u
#define EMBER_PHILOX_M1 0xCD9E8D57u
#define EMBER_PHILOX_W0 0x9E3779B9u
#define EMBER_PHILOX_W1 0xBB67AE85u

typedef struct ember__u32x4 {
    uint32_t v[4];
} ember__u32x4;

EMBER_HD ember__u32x4 ember__philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                    uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += EMBER_PHILOX_W0;
            k1 += EMBER_PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)EMBER_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)EMBER_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    ember__u32x4 out = {{c0, c1, c2, c3}};
    return out;
}

/* Block b of the stream for seed: counter (lo(b), hi(b), 0, 0), key (lo(seed), hi(seed)). */
EMBER_HD ember__u32x4 ember__philox_block(uint64_t seed, uint64_t b) {
    return ember__philox((uint32_t)b, (uint32_t)(b >> 32), 0u, 0u, (uint32_t)seed,
                         (uint32_t)(seed >> 32));
}

/* Top 24 bits to [0, 1): exact in f32, identical on every device. */
EMBER_HD float ember__u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

#endif /* EMBER_PHILOX_H */
