/*
 * engine/half.h: f16 and bf16 <-> f32 conversions, round to nearest even, written once
 * for CPU and CUDA code so stored bits agree between backends. Not installed.
 */
#ifndef EMBER_HALF_H
#define EMBER_HALF_H

#include <stdint.h>
#include <string.h>

#ifndef EMBER_HD
#ifdef __CUDACC__
#define EMBER_HD __host__ __device__ __forceinline__
#else
#define EMBER_HD static inline
#endif
#endif

EMBER_HD uint32_t ember__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
EMBER_HD float ember__bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

EMBER_HD uint16_t ember__f32_to_bf16(float f) {
    uint32_t u = ember__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
EMBER_HD float ember__bf16_to_f32(uint16_t b) { return ember__bits_f32((uint32_t)b << 16); }

EMBER_HD uint16_t ember__f32_to_f16(float f) {
    uint32_t x = ember__f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: Inf */
    if (ax < 0x38800000u) {                                   /* f16 subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;          /* < 2^-25: rounds to 0 */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        /* value = m * 2^(e-150) and an f16 subnormal is h * 2^-24, so h = m >> (126 - e) */
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((ax - 0x38000000u) >> 13); /* rebias exponent 127 -> 15 */
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

EMBER_HD float ember__f16_to_f32(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = ((uint32_t)h >> 10) & 0x1fu;
    uint32_t m = (uint32_t)h & 0x3ffu;
    if (e == 0x1fu) return ember__bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return ember__bits_f32(sign);
        /* subnormal: m * 2^-24 */
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return ember__bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

#endif /* EMBER_HALF_H */
