/*
 * engine/internal.h: helpers shared by ember's own source files. Not installed.
 */
#ifndef EMBER_INTERNAL_H
#define EMBER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Record a failure for this thread and return st. The message becomes
 * "<STATUS_NAME>: <formatted text>", so callers write what and where only:
 *     return ember__error(EMBER_ERR_SHAPE, "ember_gemm: inner dims differ (k=%lld vs %lld)", ...);
 */
ember_status ember__error(ember_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Returns EMBER_ERR_INVALID_ARGUMENT naming the function and argument when p is NULL. */
#define EMBER_CHECK_NULL(p, fn)                                                         \
    do {                                                                                \
        if ((p) == NULL)                                                                \
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: argument '%s' is NULL", \
                                (fn), #p);                                              \
    } while (0)

/* Propagate a failing status unchanged (its detail message is already set). */
/* Hot loops outside OpenMP regions (OpenMP's outlined bodies are not cloned): one copy
   per vector unit, picked at load time. Results do not depend on the copy as long as
   the loop's order of operations is fixed (no reassociation: -ffp-contract=off, no
   -ffast-math). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define EMBER_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EMBER_VECTOR_CLONES
#endif

/* FNV-1a 64 of n bytes continuing from h (start with EMBER__FNV_INIT): the checksum of
   the frequency-count and sharding-plan files. */
#define EMBER__FNV_INIT UINT64_C(0xCBF29CE484222325)
static inline uint64_t ember__fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001B3);
    }
    return h;
}

#define EMBER_TRY(expr)                         \
    do {                                        \
        ember_status ember__st = (expr);        \
        if (ember__st != EMBER_OK) return ember__st; \
    } while (0)

/* a * b into *out; returns 0 on overflow. */
static inline int ember__mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* Monotonic clock in seconds. */
double ember__now(void);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_INTERNAL_H */
