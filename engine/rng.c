/* Philox 4x32-10 entry points; the stream kernels are backend entries (EMBER__RNG_*). */
#include "engine/philox.h"
#include "ember/rng.h"

void ember_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    ember__u32x4 r = ember__philox(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
    for (int i = 0; i < 4; i++) out[i] = r.v[i];
}

uint32_t ember_rng_word(uint64_t seed, uint64_t w) {
    return ember__philox_block(seed, w >> 2).v[w & 3];
}
