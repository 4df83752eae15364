/*
 * tests/check.h: the assert helpers of ember's test binaries.
 *
 * Checks do not stop the test: each failure prints the expression, both values and
 * the position, and the binary's last line is "N passed, N failed" (exit 1 on any
 * failure). A test that needs something absent (a GPU) exits 77, which ctest counts
 * as skipped.
 *
 *     int main(void) {
 *         CHECK_OK(ember_tensor_create(&p, &t));
 *         CHECK_EQ_INT(ember_tensor_ndim(t), 2);
 *         CHECK_NEAR(x, 1.0, 1e-6);
 *         return check_summary();
 *     }
 */
#ifndef EMBER_TESTS_CHECK_H
#define EMBER_TESTS_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/ember.h"

static int check__passed, check__failed;

static inline void check__report(int ok, const char *file, int line, const char *what) {
    if (ok) {
        check__passed++;
    } else {
        check__failed++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
    }
}

#define CHECK(cond) check__report(!!(cond), __FILE__, __LINE__, #cond)

#define CHECK_EQ_INT(a, b)                                                                  \
    do {                                                                                    \
        long long check__a = (long long)(a), check__b = (long long)(b);                    \
        if (check__a == check__b) {                                                         \
            check__passed++;                                                                \
        } else {                                                                            \
            check__failed++;                                                                \
            fprintf(stderr, "FAIL %s:%d: %s == %s: %lld vs %lld\n", __FILE__, __LINE__, #a, \
                    #b, check__a, check__b);                                                \
        }                                                                                   \
    } while (0)

#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *check__a = (a), *check__b = (b);                                       \
        if (check__a && check__b && strcmp(check__a, check__b) == 0) {                     \
            check__passed++;                                                               \
        } else {                                                                           \
            check__failed++;                                                               \
            fprintf(stderr, "FAIL %s:%d: %s == %s: \"%s\" vs \"%s\"\n", __FILE__, __LINE__, \
                    #a, #b, check__a ? check__a : "(null)", check__b ? check__b : "(null)"); \
        }                                                                                  \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                 \
    do {                                                                                      \
        double check__a = (double)(a), check__b = (double)(b), check__t = (double)(tol);     \
        if (fabs(check__a - check__b) <= check__t ||                                          \
            (isnan(check__a) && isnan(check__b))) {                                           \
            check__passed++;                                                                  \
        } else {                                                                              \
            check__failed++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s ~ %s: %.9g vs %.9g (tol %.3g)\n", __FILE__,     \
                    __LINE__, #a, #b, check__a, check__b, check__t);                          \
        }                                                                                     \
    } while (0)

/* Element-wise comparison of two float arrays; reports the first bad index only. */
#define CHECK_NEAR_ARRAY(a, b, n, tol)                                                       \
    do {                                                                                     \
        long long check__n = (long long)(n), check__bad = -1;                                \
        for (long long check__i = 0; check__i < check__n; check__i++) {                     \
            double check__x = (double)(a)[check__i], check__y = (double)(b)[check__i];      \
            if (!(fabs(check__x - check__y) <= (double)(tol))) {                             \
                check__bad = check__i;                                                       \
                break;                                                                       \
            }                                                                                \
        }                                                                                    \
        if (check__bad < 0) {                                                                \
            check__passed++;                                                                 \
        } else {                                                                             \
            check__failed++;                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s ~ %s at index %lld: %.9g vs %.9g (tol %.3g)\n", \
                    __FILE__, __LINE__, #a, #b, check__bad, (double)(a)[check__bad],         \
                    (double)(b)[check__bad], (double)(tol));                                 \
        }                                                                                    \
    } while (0)

#define CHECK_OK(expr)                                                                   \
    do {                                                                                 \
        ember_status check__st = (expr);                                                 \
        if (check__st == EMBER_OK) {                                                     \
            check__passed++;                                                             \
        } else {                                                                         \
            check__failed++;                                                             \
            fprintf(stderr, "FAIL %s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr, \
                    ember_status_name(check__st), ember_last_error());                   \
        }                                                                                \
    } while (0)

#define CHECK_STATUS(expr, expected)                                                         \
    do {                                                                                     \
        ember_status check__st = (expr), check__ex = (expected);                             \
        if (check__st == check__ex) {                                                        \
            check__passed++;                                                                 \
        } else {                                                                             \
            check__failed++;                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s returned %s, expected %s (%s)\n", __FILE__,     \
                    __LINE__, #expr, ember_status_name(check__st),                          \
                    ember_status_name(check__ex), ember_last_error());                      \
        }                                                                                    \
    } while (0)

/* Element i of a host array of any ember dtype, as a double (NaN for a bad dtype). */
static inline double check_elem(const void *p, ember_dtype dt, int64_t i) {
    switch (dt) {
    case EMBER_DTYPE_F32: return ((const float *)p)[i];
    case EMBER_DTYPE_F16: return ember_f16_to_f32(((const uint16_t *)p)[i]);
    case EMBER_DTYPE_BF16: return ember_bf16_to_f32(((const uint16_t *)p)[i]);
    case EMBER_DTYPE_I8: return ((const int8_t *)p)[i];
    case EMBER_DTYPE_U8: return ((const uint8_t *)p)[i];
    case EMBER_DTYPE_I32: return ((const int32_t *)p)[i];
    case EMBER_DTYPE_I64: return (double)((const int64_t *)p)[i];
    default: return NAN;
    }
}

/* Element i of a buffer of any dtype set from v (integers through int64, so negative
   values wrap into unsigned types instead of being undefined); check_elem reads it. */
static inline void check_put_elem(void *p, ember_dtype dt, int64_t i, double v) {
    switch (dt) {
    case EMBER_DTYPE_F32: ((float *)p)[i] = (float)v; break;
    case EMBER_DTYPE_F16: ((uint16_t *)p)[i] = ember_f32_to_f16((float)v); break;
    case EMBER_DTYPE_BF16: ((uint16_t *)p)[i] = ember_f32_to_bf16((float)v); break;
    case EMBER_DTYPE_I8: ((int8_t *)p)[i] = (int8_t)(int64_t)v; break;
    case EMBER_DTYPE_U8: ((uint8_t *)p)[i] = (uint8_t)(int64_t)v; break;
    case EMBER_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)(int64_t)v; break;
    case EMBER_DTYPE_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    default: break;
    }
}

/* Skip the whole binary (ctest SKIP_RETURN_CODE 77). */
#define CHECK_SKIP(why)                         \
    do {                                        \
        printf("SKIP: %s\n", (why));            \
        exit(77);                               \
    } while (0)

static inline int check_summary(void) {
    printf("%d passed, %d failed\n", check__passed, check__failed);
    return check__failed ? 1 : 0;
}

/* x rounded to bfloat16 (nearest, ties to even; x finite): the reference of the bf16
   matmul precision's operands. */
static inline double check_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    float r;
    memcpy(&r, &u, 4);
    return r;
}

/* Element (i, j) of op(A) op(B) in double three ways: of the bf16-rounded operands
   (*rounded, the bf16 precision's reference), of the f32 operands (*exact), and the sum
   of the rounded products' magnitudes (*mag, for the f32-accumulation tolerance).
   A is (m, k), stored (k, m) when ta; B is (k, n), stored (n, k) when tb. */
static inline void check_bf16_dot(const float *A, const float *B, int ta, int tb, int64_t m, int64_t n, int64_t k,
                                  int64_t i, int64_t j, double *rounded, double *exact, double *mag) {
    double r = 0, e = 0, g = 0;
    for (int64_t p = 0; p < k; p++) {
        float x = ta ? A[p * m + i] : A[i * k + p], y = tb ? B[j * k + p] : B[p * n + j];
        double t = check_bf16_round(x) * check_bf16_round(y);
        r += t;
        e += (double)x * y;
        g += fabs(t);
    }
    *rounded = r;
    *exact = e;
    *mag = g;
}

#endif /* EMBER_TESTS_CHECK_H */
