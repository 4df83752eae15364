/*
 * The one dispatch point of every tensor kernel: validate operands here (devices,
 * dtypes, shapes, contiguity), then call the backend of the operands' device with raw
 * pointers. Backends trust what reaches them, so every user-facing check lives here.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/internal.h"
#include "engine/tensor_internal.h"
#include "ember/rng.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

static ember_status backend_of(const char *fn, const ember_tensor *t, const ember__backend **out) {
    ember_device dev = t->storage->device;
    const ember__backend *be = ember__backend_for(dev.type);
    if (!be) {
        char d[32];
        return ember__error(EMBER_ERR_UNSUPPORTED, "%s: tensor on %s but this ember was built without it",
                            fn, ember_device_format(dev, d, sizeof d));
    }
    if (dev.type != EMBER_DEVICE_CPU) EMBER_TRY(be->activate(dev.index));
    *out = be;
    return EMBER_OK;
}

static ember_status same_device(const char *fn, const ember_tensor *a, const ember_tensor *b) {
    if (ember_device_equal(a->storage->device, b->storage->device)) return EMBER_OK;
    char x[64], y[64];
    return ember__error(EMBER_ERR_DEVICE, "%s: operands on different devices: %s and %s", fn,
                        ember_tensor_describe(a, x, sizeof x), ember_tensor_describe(b, y, sizeof y));
}

static ember_status need_contiguous(const char *fn, const char *name, const ember_tensor *t) {
    if (ember_tensor_is_contiguous(t)) return EMBER_OK;
    char d[96];
    return ember__error(EMBER_ERR_STATE,
                        "%s: %s %s is not contiguous (use ember_tensor_contiguous)", fn, name,
                        ember_tensor_describe(t, d, sizeof d));
}

static ember_status need_float(const char *fn, const ember_tensor *t) {
    if (ember_dtype_is_float(t->dtype)) return EMBER_OK;
    return ember__error(EMBER_ERR_DTYPE, "%s: dtype %s is not a float dtype (f32, f16, bf16)", fn,
                        ember_dtype_name(t->dtype));
}

static ember_status same_dtype(const char *fn, const ember_tensor *a, const ember_tensor *b) {
    if (a->dtype == b->dtype) return EMBER_OK;
    return ember__error(EMBER_ERR_DTYPE, "%s: dtypes differ: %s and %s", fn,
                        ember_dtype_name(a->dtype), ember_dtype_name(b->dtype));
}

static int same_shape(const ember_tensor *a, const ember_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static ember_status need_same_shape(const char *fn, const ember_tensor *a, const ember_tensor *b) {
    if (same_shape(a, b)) return EMBER_OK;
    char x[96], y[96];
    return ember__error(EMBER_ERR_SHAPE, "%s: shapes differ: %s vs %s", fn,
                        ember_tensor_describe(a, x, sizeof x), ember_tensor_describe(b, y, sizeof y));
}

/* ---- fill, copy, convert ---- */

ember_status ember_tensor_fill(ember_tensor *t, double value) {
    EMBER_CHECK_NULL(t, "ember_tensor_fill");
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of("ember_tensor_fill", t, &be));
    int64_t n = ember_tensor_numel(t);
    if (ember_tensor_is_contiguous(t)) return be->fill(ember__tensor_ptr(t), t->dtype, n, value);
    /* Strided: fill one contiguous element and broadcast it with a zero-stride copy. */
    if (!t->storage->mm && t->storage->device.type != EMBER_DEVICE_CPU)
        return ember__error(EMBER_ERR_UNSUPPORTED,
                            "ember_tensor_fill: strided view of wrapped GPU memory");
    int64_t zero[EMBER_MAX_DIMS] = {0};
    ember_tensor *one;
    EMBER_TRY(ember_tensor_create(
        &(ember_tensor_params){.dtype = t->dtype, .ndim = 1, .shape = {1}, .tier = t->storage->tier,
                               .mm = t->storage->mm},
        &one));
    ember_status st = be->fill(ember__tensor_ptr(one), t->dtype, 1, value);
    if (st == EMBER_OK)
        st = be->copy_strided(ember__tensor_ptr(t), t->strides, ember__tensor_ptr(one), zero,
                              t->shape, t->ndim, ember_dtype_size(t->dtype));
    if (st == EMBER_OK && t->storage->device.type != EMBER_DEVICE_CPU)
        st = be->synchronize(t->storage->device.index); /* `one` is freed next */
    ember_tensor_destroy(one);
    return st;
}

static ember_status create_like(const ember_tensor *t, ember_tier tier, ember_memory *mm,
                                ember_mem_kind kind, ember_tensor **out) {
    ember_tensor_params p = {.dtype = t->dtype, .ndim = t->ndim, .tier = tier, .kind = kind, .mm = mm};
    memcpy(p.shape, t->shape, sizeof p.shape);
    return ember_tensor_create(&p, out);
}

#ifdef EMBER_HAVE_CUDA
/* A contiguous staging tensor like t, in t's tier and manager (for cross-device copies). */
static ember_status staging_like(const ember_tensor *t, ember_tensor **out) {
    ember_memory *mm = t->storage->mm;
    if (!mm && t->storage->device.type != EMBER_DEVICE_CPU)
        return ember__error(EMBER_ERR_UNSUPPORTED,
                            "ember_tensor_copy: a strided view of wrapped GPU memory cannot be "
                            "staged across devices; make it contiguous first");
    return create_like(t, t->storage->tier, mm ? mm : ember_memory_default(), EMBER_MEM_STAGING, out);
}
#endif

ember_status ember_tensor_copy(ember_tensor *dst, const ember_tensor *src) {
    EMBER_CHECK_NULL(dst, "ember_tensor_copy");
    EMBER_CHECK_NULL(src, "ember_tensor_copy");
    EMBER_TRY(same_dtype("ember_tensor_copy", dst, src));
    EMBER_TRY(need_same_shape("ember_tensor_copy", dst, src));
    ember_device dd = dst->storage->device, sd = src->storage->device;
    size_t es = ember_dtype_size(src->dtype);
    if (ember_tensor_numel(src) == 0) return EMBER_OK;
    if (ember_device_equal(dd, sd)) {
        const ember__backend *be = NULL;
        EMBER_TRY(backend_of("ember_tensor_copy", dst, &be));
        return be->copy_strided(ember__tensor_ptr(dst), dst->strides, ember__tensor_ptr(src),
                                src->strides, src->shape, src->ndim, es);
    }
#ifndef EMBER_HAVE_CUDA
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_tensor_copy: cross-device copy without CUDA");
#else
    /* Cross-device: bring both sides to contiguous form on their own device, move the
       bytes in one transfer, then scatter into dst's layout if it is strided. */
    ember_status st = EMBER_OK;
    ember_tensor *s = NULL, *d = NULL;
    if (!ember_tensor_is_contiguous(src)) {
        st = staging_like(src, &s);
        if (st == EMBER_OK) st = ember_tensor_copy(s, src);
    }
    if (st == EMBER_OK && !ember_tensor_is_contiguous(dst)) st = staging_like(dst, &d);
    if (st == EMBER_OK) {
        const ember_tensor *from = s ? s : src;
        ember_tensor *to = d ? d : dst;
        int kind = sd.type == EMBER_DEVICE_CPU ? EMBER__H2D
                   : dd.type == EMBER_DEVICE_CPU ? EMBER__D2H
                                                 : EMBER__D2D;
        int gpu = kind == EMBER__H2D ? dd.index : sd.index;
        /* Wait when the host reads the result, or when a staging buffer is freed below. */
        int wait = kind == EMBER__D2H || s || d;
        st = ember__cuda_memcpy(gpu, ember__tensor_ptr(to), ember__tensor_ptr(from),
                                ember_tensor_nbytes(src), kind, wait);
        if (st == EMBER_OK && d) st = ember_tensor_copy(dst, d);
        if (st == EMBER_OK && d && dd.type != EMBER_DEVICE_CPU) st = ember_device_synchronize(dd);
    }
    ember_tensor_destroy(s);
    ember_tensor_destroy(d);
    return st;
#endif
}

ember_status ember_tensor_clone(const ember_tensor *t, ember_tier tier, ember_memory *mm,
                                ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_clone");
    *out = NULL;
    EMBER_CHECK_NULL(t, "ember_tensor_clone");
    if (!mm) mm = t->storage->mm ? t->storage->mm : ember_memory_default();
    ember_tensor *c;
    EMBER_TRY(create_like(t, tier, mm, EMBER_MEM_OTHER, &c));
    ember_status st = ember_tensor_copy(c, t);
    if (st != EMBER_OK) {
        ember_tensor_destroy(c);
        return st;
    }
    *out = c;
    return EMBER_OK;
}

ember_status ember_tensor_contiguous(const ember_tensor *t, ember_tensor **out) {
    EMBER_CHECK_NULL(t, "ember_tensor_contiguous");
    if (ember_tensor_is_contiguous(t)) return ember_tensor_retain(t, out);
    return ember_tensor_clone(t, t->storage->tier, NULL, out);
}

ember_status ember_tensor_convert(ember_tensor *dst, const ember_tensor *src) {
    static const char fn[] = "ember_tensor_convert";
    EMBER_CHECK_NULL(dst, fn);
    EMBER_CHECK_NULL(src, fn);
    EMBER_TRY(same_device(fn, dst, src));
    if (ember_tensor_numel(dst) != ember_tensor_numel(src)) return need_same_shape(fn, dst, src);
    EMBER_TRY(need_contiguous(fn, "dst", dst));
    EMBER_TRY(need_contiguous(fn, "src", src));
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, dst, &be));
    return be->convert(ember__tensor_ptr(dst), dst->dtype, ember__tensor_ptr(src), src->dtype,
                       ember_tensor_numel(src));
}

/* ---- element-wise ---- */

/* Common checks of an element-wise op: float dtype, one device, equal dtype, contiguous. */
static ember_status elementwise_checks(const char *fn, const ember_tensor *out, const ember_tensor *x) {
    EMBER_TRY(need_float(fn, x));
    EMBER_TRY(same_device(fn, out, x));
    EMBER_TRY(same_dtype(fn, out, x));
    EMBER_TRY(need_contiguous(fn, "output", out));
    return need_contiguous(fn, "input", x);
}

ember_status ember_unary(ember_unary_op op, ember_tensor *out, const ember_tensor *x) {
    static const char fn[] = "ember_unary";
    EMBER_CHECK_NULL(out, fn);
    EMBER_CHECK_NULL(x, fn);
    if ((unsigned)op >= EMBER_UNARY_OP_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: op %d is not a unary op", fn, (int)op);
    EMBER_TRY(elementwise_checks(fn, out, x));
    EMBER_TRY(need_same_shape(fn, out, x));
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, x, &be));
    return be->unary(op, ember__tensor_ptr(out), ember__tensor_ptr(x), x->dtype,
                     ember_tensor_numel(x));
}

ember_status ember_binary(ember_binary_op op, ember_tensor *out, const ember_tensor *a,
                          const ember_tensor *b) {
    static const char fn[] = "ember_binary";
    EMBER_CHECK_NULL(out, fn);
    EMBER_CHECK_NULL(a, fn);
    EMBER_CHECK_NULL(b, fn);
    if ((unsigned)op >= EMBER_BINARY_OP_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: op %d is not a binary op", fn, (int)op);
    EMBER_TRY(elementwise_checks(fn, out, a));
    EMBER_TRY(elementwise_checks(fn, out, b));
    EMBER_TRY(need_same_shape(fn, out, a));
    int64_t n = ember_tensor_numel(a), nb = ember_tensor_numel(b);
    /* b broadcasts when its shape is a trailing part of a's (or it is one element). */
    int ok = nb == 1 || same_shape(a, b);
    if (!ok && b->ndim <= a->ndim) {
        ok = 1;
        for (int i = 0; i < b->ndim; i++)
            if (b->shape[b->ndim - 1 - i] != a->shape[a->ndim - 1 - i]) ok = 0;
    }
    if (!ok) {
        char x[96], y[96];
        return ember__error(EMBER_ERR_SHAPE, "%s: %s does not broadcast to %s", fn,
                            ember_tensor_describe(b, y, sizeof y), ember_tensor_describe(a, x, sizeof x));
    }
    if (n == 0) return EMBER_OK;
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, a, &be));
    return be->binary(op, ember__tensor_ptr(out), ember__tensor_ptr(a), ember__tensor_ptr(b),
                      a->dtype, n, nb);
}

ember_status ember_scale(ember_tensor *out, const ember_tensor *x, double alpha, double beta) {
    static const char fn[] = "ember_scale";
    EMBER_CHECK_NULL(out, fn);
    EMBER_CHECK_NULL(x, fn);
    EMBER_TRY(elementwise_checks(fn, out, x));
    EMBER_TRY(need_same_shape(fn, out, x));
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, x, &be));
    return be->scale(ember__tensor_ptr(out), ember__tensor_ptr(x), x->dtype, ember_tensor_numel(x),
                     (float)alpha, (float)beta);
}

ember_status ember_axpy(ember_tensor *y, double alpha, const ember_tensor *x) {
    static const char fn[] = "ember_axpy";
    EMBER_CHECK_NULL(y, fn);
    EMBER_CHECK_NULL(x, fn);
    EMBER_TRY(elementwise_checks(fn, y, x));
    EMBER_TRY(need_same_shape(fn, y, x));
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, x, &be));
    return be->axpy(ember__tensor_ptr(y), ember__tensor_ptr(x), x->dtype, ember_tensor_numel(x),
                    (float)alpha);
}

/* ---- reductions ---- */

ember_status ember_reduce(ember_reduce_op op, ember_tensor *out, const ember_tensor *x, int axes) {
    static const char fn[] = "ember_reduce";
    EMBER_CHECK_NULL(out, fn);
    EMBER_CHECK_NULL(x, fn);
    if ((unsigned)op >= EMBER_REDUCE_OP_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: op %d is not a reduction", fn, (int)op);
    if (axes < 0 || axes > x->ndim)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %d axes of a %d-dim tensor", fn, axes,
                            x->ndim);
    if (axes == 0) axes = x->ndim;
    EMBER_TRY(need_float(fn, x));
    EMBER_TRY(same_device(fn, out, x));
    EMBER_TRY(need_contiguous(fn, "input", x));
    EMBER_TRY(need_contiguous(fn, "output", out));
    if (out->dtype != EMBER_DTYPE_F32)
        return ember__error(EMBER_ERR_DTYPE, "%s: output must be f32, not %s", fn,
                            ember_dtype_name(out->dtype));
    int64_t inner = 1, outer = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i >= x->ndim - axes) inner *= x->shape[i];
        else outer *= x->shape[i];
    }
    if (ember_tensor_numel(out) != outer)
        return ember__error(EMBER_ERR_SHAPE, "%s: output has %lld elements, the reduction gives %lld",
                            fn, (long long)ember_tensor_numel(out), (long long)outer);
    if (outer == 0) return EMBER_OK;
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, x, &be));
    return be->reduce(op, (float *)ember__tensor_ptr(out), ember__tensor_ptr(x), x->dtype, outer, inner);
}

ember_status ember_reduce_all(ember_reduce_op op, const ember_tensor *x, double *result) {
    static const char fn[] = "ember_reduce_all";
    EMBER_CHECK_NULL(x, fn);
    EMBER_CHECK_NULL(result, fn);
    ember_tensor *o;
    EMBER_TRY(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 0,
                                                         .tier = x->storage->tier,
                                                         .mm = x->storage->mm},
                                  &o));
    ember_status st = ember_reduce(op, o, x, 0);
    float v = 0;
    if (st == EMBER_OK) {
        ember_tensor *h;
        st = ember_tensor_wrap(&v, EMBER_DTYPE_F32, 0, NULL, NULL, EMBER_CPU, &h);
        if (st == EMBER_OK) st = ember_tensor_copy(h, o);
        ember_tensor_destroy(h);
    }
    ember_tensor_destroy(o);
    if (st == EMBER_OK) *result = v;
    return st;
}

/* ---- gemm ---- */

ember_status ember_gemm(int trans_a, int trans_b, float alpha, const ember_tensor *a,
                        const ember_tensor *b, float beta, ember_tensor *c) {
    static const char fn[] = "ember_gemm";
    EMBER_CHECK_NULL(a, fn);
    EMBER_CHECK_NULL(b, fn);
    EMBER_CHECK_NULL(c, fn);
    const ember_tensor *ops[3] = {a, b, c};
    static const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        const ember_tensor *t = ops[i];
        if (t->dtype != EMBER_DTYPE_F32)
            return ember__error(EMBER_ERR_DTYPE, "%s: %s is %s; gemm takes f32", fn, names[i],
                                ember_dtype_name(t->dtype));
        if (t->ndim != 2 && t->ndim != 3)
            return ember__error(EMBER_ERR_SHAPE, "%s: %s has %d dims; gemm takes 2 or 3", fn, names[i],
                                t->ndim);
        if (t->strides[t->ndim - 1] != 1 && t->shape[t->ndim - 1] > 1)
            return ember__error(EMBER_ERR_STATE,
                                "%s: %s's last dim is strided (stride %lld); make it contiguous", fn,
                                names[i], (long long)t->strides[t->ndim - 1]);
        if (t->strides[t->ndim - 2] < t->shape[t->ndim - 1])
            return ember__error(EMBER_ERR_STATE, "%s: %s's rows overlap (row stride %lld < %lld)", fn,
                                names[i], (long long)t->strides[t->ndim - 2],
                                (long long)t->shape[t->ndim - 1]);
    }
    EMBER_TRY(same_device(fn, a, b));
    EMBER_TRY(same_device(fn, a, c));
    int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    int64_t m = trans_a ? ac : ar, k = trans_a ? ar : ac;
    int64_t kb = trans_b ? bc : br, n = trans_b ? br : bc;
    if (k != kb || c->shape[c->ndim - 2] != m || c->shape[c->ndim - 1] != n)
        return ember__error(EMBER_ERR_SHAPE,
                            "%s: op(a) is %lldx%lld, op(b) is %lldx%lld, c is %lldx%lld "
                            "(m=%lld n=%lld k=%lld)",
                            fn, (long long)m, (long long)k, (long long)kb, (long long)n,
                            (long long)c->shape[c->ndim - 2], (long long)c->shape[c->ndim - 1],
                            (long long)m, (long long)n, (long long)k);
    int64_t batch = c->ndim == 3 ? c->shape[0] : 1;
    if ((a->ndim == 3 && a->shape[0] != batch) || (b->ndim == 3 && b->shape[0] != batch) ||
        (c->ndim == 2 && (a->ndim == 3 || b->ndim == 3)))
        return ember__error(EMBER_ERR_SHAPE, "%s: batch sizes differ (a %lld, b %lld, c %lld)", fn,
                            (long long)(a->ndim == 3 ? a->shape[0] : 1),
                            (long long)(b->ndim == 3 ? b->shape[0] : 1), (long long)batch);
    if (m == 0 || n == 0 || batch == 0) return EMBER_OK;
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, c, &be));
    int64_t lda = a->strides[a->ndim - 2], ldb = b->strides[b->ndim - 2], ldc = c->strides[c->ndim - 2];
    return be->gemm(trans_a, trans_b, m, n, k, alpha, (const float *)ember__tensor_ptr(a), lda,
                    a->ndim == 3 ? a->strides[0] : 0, (const float *)ember__tensor_ptr(b), ldb,
                    b->ndim == 3 ? b->strides[0] : 0, beta, (float *)ember__tensor_ptr(c), ldc,
                    c->ndim == 3 ? c->strides[0] : 0, batch);
}

/* ---- random numbers ---- */

static ember_status rng_fill(const char *fn, ember_rng *rng, ember_tensor *t, int kind, float a,
                             float b) {
    EMBER_CHECK_NULL(rng, fn);
    EMBER_CHECK_NULL(t, fn);
    EMBER_TRY(need_contiguous(fn, "output", t));
    if (kind != EMBER__RNG_BITS) EMBER_TRY(need_float(fn, t));
    else if (ember_dtype_is_float(t->dtype))
        return ember__error(EMBER_ERR_DTYPE, "%s: raw bits go to integer tensors, not %s", fn,
                            ember_dtype_name(t->dtype));
    int64_t n = ember_tensor_numel(t);
    uint64_t offset = rng->offset, words = (uint64_t)n;
    if (kind == EMBER__RNG_BITS && t->dtype == EMBER_DTYPE_I64) words *= 2;
    if (kind == EMBER__RNG_NORMAL) {
        offset += offset & 1;
        words += words & 1;
    }
    const ember__backend *be = NULL;
    EMBER_TRY(backend_of(fn, t, &be));
    if (n) EMBER_TRY(be->rng(kind, ember__tensor_ptr(t), t->dtype, n, rng->seed, offset, a, b));
    rng->offset = offset + words;
    return EMBER_OK;
}

ember_status ember_rng_bits(ember_rng *rng, ember_tensor *t) {
    return rng_fill("ember_rng_bits", rng, t, EMBER__RNG_BITS, 0, 0);
}
ember_status ember_rng_uniform(ember_rng *rng, ember_tensor *t, float lo, float hi) {
    return rng_fill("ember_rng_uniform", rng, t, EMBER__RNG_UNIFORM, lo, hi);
}
ember_status ember_rng_normal(ember_rng *rng, ember_tensor *t, float mean, float std) {
    return rng_fill("ember_rng_normal", rng, t, EMBER__RNG_NORMAL, mean, std);
}
