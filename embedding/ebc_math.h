/*
 * embedding/ebc_math.h: row formats and optimizer formulas, written once for the CPU
 * and CUDA kernels (EMBER_HD marks host+device code) so both backends store the same
 * bits and update with the same expressions. Not installed.
 *
 * The optimizer expressions follow torch.optim's own evaluation order (for example
 * torch's sparse Adagrad computes w + (-lr) * (g / std), its Adam w + (-step_size * m)
 * / denom), so that ember and PyTorch differ by accumulation order only, not by
 * algebra. The vectorised CPU paths evaluate the same expressions lane-wise.
 */
#ifndef EMBER_EBC_MATH_H
#define EMBER_EBC_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "embedding/ebc_internal.h"
#include "engine/half.h" /* defines EMBER_HD */

/* int8-rowwise: [scale f32 | bias f32 | q u8 x dim] */
#define EMBER__Q8_HEADER 8
/* torch.nn.utils.clip_grad_norm_'s guard against a zero norm */
#define EMBER__CLIP_EPS 1e-6f

EMBER_HD size_t ember__row_weight_bytes(int format, int dim) {
    switch (format) {
    case EMBER_ROW_FORMAT_F32: return (size_t)dim * 4;
    case EMBER_ROW_FORMAT_F16:
    case EMBER_ROW_FORMAT_BF16: return (size_t)dim * 2;
    case EMBER_ROW_FORMAT_INT8_ROWWISE: return EMBER__Q8_HEADER + (size_t)dim;
    default: return 0;
    }
}

EMBER_HD void ember__q8_header(const char *rec, float *scale, float *bias) {
    memcpy(scale, rec, 4);
    memcpy(bias, rec + 4, 4);
}

/* Element j of a row's weights as f32 (scale/bias only used by int8-rowwise). */
EMBER_HD float ember__elem_load(const char *rec, int format, int j, float scale, float bias) {
    switch (format) {
    case EMBER_ROW_FORMAT_F32: {
        float v;
        memcpy(&v, rec + 4 * (size_t)j, 4);
        return v;
    }
    case EMBER_ROW_FORMAT_F16: {
        uint16_t h;
        memcpy(&h, rec + 2 * (size_t)j, 2);
        return ember__f16_to_f32(h);
    }
    case EMBER_ROW_FORMAT_BF16: {
        uint16_t h;
        memcpy(&h, rec + 2 * (size_t)j, 2);
        return ember__bf16_to_f32(h);
    }
    default: {
        uint8_t q = (uint8_t)rec[EMBER__Q8_HEADER + j];
        return (float)q * scale + bias;
    }
    }
}

/* Quantisation parameters of a row whose values lie in [mn, mx]: codes 0..255 map to
 * mn + q * (mx - mn) / 255, so the round-trip error is at most half a step. */
EMBER_HD void ember__q8_params(float mn, float mx, float *scale, float *bias) {
    float range = mx - mn;
    *scale = range > 0.0f ? range / 255.0f : 0.0f;
    *bias = mn;
}

EMBER_HD uint8_t ember__q8_code(float x, float scale, float bias) {
    if (!(scale > 0.0f)) return 0;
    float q = rintf((x - bias) / scale); /* round half to even, as the GPU's rint */
    if (!(q >= 0.0f)) return 0;         /* NaN too */
    if (q > 255.0f) return 255;
    return (uint8_t)q;
}

/* Write a row's weights from f32 values (int8: re-quantised over their range). */
EMBER_HD void ember__row_store(char *rec, int format, int dim, const float *w) {
    switch (format) {
    case EMBER_ROW_FORMAT_F32: memcpy(rec, w, (size_t)dim * 4); return;
    case EMBER_ROW_FORMAT_F16:
        for (int j = 0; j < dim; j++) {
            uint16_t h = ember__f32_to_f16(w[j]);
            memcpy(rec + 2 * (size_t)j, &h, 2);
        }
        return;
    case EMBER_ROW_FORMAT_BF16:
        for (int j = 0; j < dim; j++) {
            uint16_t h = ember__f32_to_bf16(w[j]);
            memcpy(rec + 2 * (size_t)j, &h, 2);
        }
        return;
    default: {
        float mn = w[0], mx = w[0];
        for (int j = 1; j < dim; j++) {
            mn = w[j] < mn ? w[j] : mn;
            mx = w[j] > mx ? w[j] : mx;
        }
        float scale, bias;
        ember__q8_params(mn, mx, &scale, &bias);
        memcpy(rec, &scale, 4);
        memcpy(rec + 4, &bias, 4);
        for (int j = 0; j < dim; j++) rec[EMBER__Q8_HEADER + j] = (char)ember__q8_code(w[j], scale, bias);
        return;
    }
    }
}

EMBER_HD void ember__row_load(const char *rec, int format, int dim, float *w) {
    float scale = 0.0f, bias = 0.0f;
    if (format == EMBER_ROW_FORMAT_INT8_ROWWISE) ember__q8_header(rec, &scale, &bias);
    for (int j = 0; j < dim; j++) w[j] = ember__elem_load(rec, format, j, scale, bias);
}

/* ---- optimizer steps on one element (g already clipped and with L2 added) ---- */

EMBER_HD float ember__opt_sgd(float w, float g, float lr) { return w + (-lr) * g; }

EMBER_HD float ember__opt_adagrad(float w, float g, float *s, float lr, float eps) {
    float ns = *s + g * g;
    *s = ns;
    float std_ = sqrtf(ns) + eps;
    return w + (-lr) * (g / std_);
}

/* rowwise Adagrad: mul = lr / (sqrt(s) + eps) for the row, computed once */
EMBER_HD float ember__opt_rowwise(float w, float g, float mul) { return w + (-mul) * g; }

EMBER_HD float ember__opt_adam(float w, float g, float *m, float *v, const ember__ebc_optim *o) {
    float nm = *m * o->beta1 + o->one_minus_beta1 * g;
    float nv = *v * o->beta2 + (o->one_minus_beta2 * g) * g;
    *m = nm;
    *v = nv;
    float denom = sqrtf(nv) / o->sqrt_bc2 + o->eps;
    return w + (-o->step_size * nm) / denom;
}

/* The clip factor for a row gradient with squared norm ss (1 when no clipping). */
EMBER_HD float ember__clip_coef(float ss, float max_norm) {
    if (!(max_norm > 0.0f)) return 1.0f;
    float c = max_norm / (sqrtf(ss) + EMBER__CLIP_EPS);
    return c < 1.0f ? c : 1.0f;
}

#endif /* EMBER_EBC_MATH_H */
