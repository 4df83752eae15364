/*
 * ember/rng.h: counter-based random numbers (Philox 4x32-10, Salmon et al., SC'11).
 *
 * A counter-based generator has no hidden state: the bits for element i of a stream
 * are a pure function of (seed, offset + i). So the CPU, any GPU and any rank produce
 * the same numbers for the same seed and offset, in any order and any thread split.
 *
 * Layout: the stream's 32-bit word number w = offset + i comes from Philox block
 * w / 4, word w % 4, with counter (lo32(w/4), hi32(w/4), 0, 0) and key
 * (lo32(seed), hi32(seed)). Uniform floats use the top 24 bits: (x >> 8) * 2^-24, in
 * [0, 1). Normals use Box-Muller on words (w, w+1) of the same block, so offsets of
 * normal fills should be even.
 *
 *     ember_rng rng = {.seed = 42};
 *     ember_rng_uniform(&rng, t, -0.1f, 0.1f);   // advances rng.offset by numel(t)
 *
 * Thread safety: ember_rng is a plain value; share it only with external locking.
 */
#ifndef EMBER_RNG_H
#define EMBER_RNG_H

#include <stdint.h>

#include "ember/status.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One Philox 4x32-10 block: out = philox(ctr, key). */
void ember_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

typedef struct ember_rng {
    uint64_t seed;
    uint64_t offset; /* next 32-bit word of the stream */
} ember_rng;

/** 32-bit word number w of the stream for seed. */
uint32_t ember_rng_word(uint64_t seed, uint64_t w);

/** Fill an i32 or u8... tensor with raw stream words (i32: the word; i64: two words). */
ember_status ember_rng_bits(ember_rng *rng, ember_tensor *t);
/** Uniform in [lo, hi) for float tensors. Advances rng->offset by numel. */
ember_status ember_rng_uniform(ember_rng *rng, ember_tensor *t, float lo, float hi);
/**
 * Normal(mean, std) for float tensors. Uses 2 words per pair of elements; advances
 * rng->offset by numel rounded up to even (the offset is first rounded up to even).
 */
ember_status ember_rng_normal(ember_rng *rng, ember_tensor *t, float mean, float std);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_RNG_H */
