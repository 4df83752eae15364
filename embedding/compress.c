/*
 * embedding/compress.c: stage 2 of frequency-aware sharding (include/ember/partition.h):
 * precision tiers of a device's rows and their compression.
 *
 * Stochastic rounding is done by neighbours, not by bit tricks: the two representable
 * values around x (from the round-to-nearest conversion of engine/half.h and one step
 * of the bit pattern) and a Philox uniform pick the upper one with probability
 * (x - lo) / (hi - lo). That one rule covers normals, subnormals and int8 codes alike,
 * and is unbiased by construction; the bits of the stored formats are those the
 * embedding kernels read (embedding/ebc_math.h).
 */
#include <math.h>
#include <string.h>

#include "ember/partition.h"
#include "embedding/ebc_math.h"
#include "engine/internal.h"
#include "engine/philox.h"

/* Expected relative error of one lookup per tier (the model of the header). */
#define ERR_F16 (1.0 / 2048.0)
#define ERR_INT8 (1.0 / 510.0)

size_t ember_row_format_bytes(ember_row_format format, int dim) {
    if (dim < 1 || (unsigned)format >= EMBER_ROW_FORMAT_COUNT) return 0;
    return ember__row_weight_bytes((int)format, dim);
}

ember_status ember_tiers_split(const ember_tier_params *p, ember_tier_split *out) {
    EMBER_CHECK_NULL(p, "ember_tiers_split");
    EMBER_CHECK_NULL(out, "ember_tiers_split");
    if (p->rows < 1 || p->dim < 1 || p->dim > (1 << 20) || p->state_bytes < 0 || p->state_bytes > (INT64_C(1) << 30))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_tiers_split: rows %lld, dim %d, state_bytes %lld",
                            (long long)p->rows, p->dim, (long long)p->state_bytes);
    const uint64_t *c = p->counts;
    for (int64_t i = 1; c && i < p->rows; i++)
        if (c[i] > c[i - 1])
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "ember_tiers_split: counts not in decreasing order at row %lld (%llu after %llu)",
                                (long long)i, (unsigned long long)c[i], (unsigned long long)c[i - 1]);
    if (p->state_bytes_f16 < 0 || p->state_bytes_int8 < 0 || p->state_bytes_f16 > (INT64_C(1) << 30) ||
        p->state_bytes_int8 > (INT64_C(1) << 30))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_tiers_split: state_bytes_f16 %lld, state_bytes_int8 %lld",
                            (long long)p->state_bytes_f16, (long long)p->state_bytes_int8);
    double s16 = (double)(p->state_bytes_f16 ? p->state_bytes_f16 : p->state_bytes),
           s8 = (double)(p->state_bytes_int8 ? p->state_bytes_int8 : p->state_bytes);
    double b32 = 4.0 * p->dim + (double)p->state_bytes, b16 = 2.0 * p->dim + s16, b8 = 8.0 + p->dim + s8;
    double budget = (double)p->budget;
    /* the base: every row int8, or f16 when that is no larger (dim <= 8) */
    int base16 = b16 <= b8;
    double base = base16 ? b16 : b8;
    if (base * (double)p->rows > budget)
        return ember__error(EMBER_ERR_OUT_OF_MEMORY,
                            "ember_tiers_split: %lld rows need %.0f bytes even as %s, the budget is %zu",
                            (long long)p->rows, base * (double)p->rows, base16 ? "f16" : "int8", p->budget);
    double left = budget - base * (double)p->rows;
    int64_t h = 0, w = base16 ? p->rows : 0; /* [0,h) f32, [h,h+w) f16 */
    /* greedy, per byte: upgrade the next int8 row to f16 or the next non-f32 row to f32 */
    for (;;) {
        double ca = c ? (double)c[h + w < p->rows ? h + w : p->rows - 1] : 1.0;
        double cb = c ? (double)c[h < p->rows ? h : p->rows - 1] : 1.0;
        int can_a = h + w < p->rows && b16 - b8 <= left;
        double cost_b = w > 0 ? b32 - b16 : b32 - b8;
        int can_b = h < p->rows && cost_b <= left;
        if (!can_a && !can_b) break;
        double gain_a = can_a ? ca * (ERR_INT8 - ERR_F16) / (b16 - b8 > 0 ? b16 - b8 : 1e-9) : -1;
        double gain_b = can_b ? cb * (w > 0 ? ERR_F16 : ERR_INT8) / cost_b : -1;
        if (gain_a >= gain_b) {
            left -= b16 - b8;
            w++;
        } else {
            left -= cost_b;
            h++;
            if (w > 0) w--;
        }
    }
    out->hot_rows = h;
    out->warm_rows = w;
    out->cold_rows = p->rows - h - w;
    out->bytes = (int64_t)(b32 * (double)h + b16 * (double)w + b8 * (double)out->cold_rows);
    double err = 0, total = 0;
    for (int64_t i = 0; i < p->rows; i++) {
        double k = c ? (double)c[i] : 1.0;
        total += k;
        err += k * (i < h ? 0.0 : i < h + w ? ERR_F16 : ERR_INT8);
    }
    out->error = total > 0 ? err / total : 0;
    return EMBER_OK;
}

/* Uniform [0, 1) from Philox word w of seed (the top 24 bits, as include/ember/rng.h). */
typedef struct words {
    uint64_t seed, block;
    ember__u32x4 v;
    int have;
} words;

static inline float uniform_at(words *s, uint64_t w) {
    if (!s->have || (w >> 2) != s->block) {
        s->block = w >> 2;
        s->v = ember__philox_block(s->seed, s->block);
        s->have = 1;
    }
    return (float)(s->v.v[w & 3] >> 8) * (1.0f / 16777216.0f);
}

/* x to f16 (bf16 when bf) rounding up with probability (|x| - lo) / (hi - lo). */
static uint16_t half_sr(float x, float u, int bf) {
    if (isnan(x)) return bf ? ember__f32_to_bf16(x) : ember__f32_to_f16(x);
    uint16_t sign = signbit(x) ? 0x8000u : 0;
    float a = fabsf(x);
    uint16_t hmax = bf ? 0x7f7fu : 0x7bffu;
    float vmax = bf ? ember__bf16_to_f32(hmax) : ember__f16_to_f32(hmax);
    if (a >= vmax) return (uint16_t)(sign | hmax); /* saturate */
    uint16_t n = bf ? ember__f32_to_bf16(a) : ember__f32_to_f16(a);
    float v = bf ? ember__bf16_to_f32(n) : ember__f16_to_f32(n);
    if (v == a) return (uint16_t)(sign | n);
    uint16_t lo = v < a ? n : (uint16_t)(n - 1), hi = (uint16_t)(lo + 1);
    float flo = bf ? ember__bf16_to_f32(lo) : ember__f16_to_f32(lo);
    float fhi = bf ? ember__bf16_to_f32(hi) : ember__f16_to_f32(hi);
    double p = ((double)a - flo) / ((double)fhi - flo);
    return (uint16_t)(sign | ((double)u < p ? hi : lo));
}

static ember_status check(const ember_compress_params *p, const void *a, const void *b, int64_t rows, const char *fn) {
    EMBER_CHECK_NULL(p, fn);
    if ((unsigned)p->format >= EMBER_ROW_FORMAT_COUNT || p->dim < 1 || p->dim > (1 << 20) || rows < 0 ||
        (rows > 0 && (!a || !b)))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: format %d, dim %d, %lld rows (arrays %s)", fn,
                            (int)p->format, p->dim, (long long)rows, a && b ? "set" : "NULL");
    return EMBER_OK;
}

ember_status ember_rows_compress(const ember_compress_params *p, const float *src, int64_t rows, void *dst) {
    EMBER_TRY(check(p, src, dst, rows, "ember_rows_compress"));
    int dim = p->dim;
    size_t rb = ember__row_weight_bytes((int)p->format, dim);
    if (p->format == EMBER_ROW_FORMAT_F32 || !p->stochastic) {
        int half = p->format == EMBER_ROW_FORMAT_F16 || p->format == EMBER_ROW_FORMAT_BF16;
        uint16_t inf = p->format == EMBER_ROW_FORMAT_F16 ? 0x7c00u : 0x7f80u;
        for (int64_t r = 0; r < rows; r++) {
            char *rec = (char *)dst + (size_t)r * rb;
            const float *x = src + (size_t)r * (size_t)dim;
            ember__row_store(rec, (int)p->format, dim, x);
            /* finite values past the largest finite one saturate there, as stochastic rounding does */
            for (int j = 0; half && j < dim; j++) {
                uint16_t h;
                memcpy(&h, rec + 2 * (size_t)j, 2);
                if ((h & 0x7fffu) == inf && isfinite(x[j])) {
                    h = (uint16_t)((h & 0x8000u) | (inf - 1u));
                    memcpy(rec + 2 * (size_t)j, &h, 2);
                }
            }
        }
        return EMBER_OK;
    }
    words s = {.seed = p->seed};
    for (int64_t r = 0; r < rows; r++) {
        const float *x = src + (size_t)r * (size_t)dim;
        char *rec = (char *)dst + (size_t)r * rb;
        uint64_t w0 = p->offset + (uint64_t)r * (uint64_t)dim;
        if (p->format == EMBER_ROW_FORMAT_INT8_ROWWISE) {
            float mn = x[0], mx = x[0];
            for (int j = 1; j < dim; j++) {
                mn = x[j] < mn ? x[j] : mn;
                mx = x[j] > mx ? x[j] : mx;
            }
            float scale, bias;
            ember__q8_params(mn, mx, &scale, &bias);
            memcpy(rec, &scale, 4);
            memcpy(rec + 4, &bias, 4);
            for (int j = 0; j < dim; j++) {
                float u = uniform_at(&s, w0 + (uint64_t)j);
                int q = 0;
                if (scale > 0.0f && !isnan(x[j])) {
                    double t = ((double)x[j] - bias) / scale, f = floor(t);
                    q = (int)f + ((double)u < t - f);
                    q = q < 0 ? 0 : q > 255 ? 255 : q;
                }
                rec[EMBER__Q8_HEADER + j] = (char)(uint8_t)q;
            }
        } else {
            int bf = p->format == EMBER_ROW_FORMAT_BF16;
            for (int j = 0; j < dim; j++) {
                uint16_t h = half_sr(x[j], uniform_at(&s, w0 + (uint64_t)j), bf);
                memcpy(rec + 2 * (size_t)j, &h, 2);
            }
        }
    }
    return EMBER_OK;
}

ember_status ember_rows_decompress(const ember_compress_params *p, const void *src, int64_t rows, float *dst) {
    EMBER_TRY(check(p, src, dst, rows, "ember_rows_decompress"));
    size_t rb = ember__row_weight_bytes((int)p->format, p->dim);
    for (int64_t r = 0; r < rows; r++)
        ember__row_load((const char *)src + (size_t)r * rb, (int)p->format, p->dim, dst + (size_t)r * (size_t)p->dim);
    return EMBER_OK;
}
