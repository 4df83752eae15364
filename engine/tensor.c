/* Tensors: creation, refcounted storage, metadata and views. Kernels are in ops.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/tensor_internal.h"

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

static int format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    int k = snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k > 0 && (size_t)k < n) k += snprintf(buf + k, n - (size_t)k, ")");
    return k;
}

/* Validates a shape and returns its element count and byte size. */
static ember_status check_shape(const char *fn, ember_dtype dtype, int ndim, const int64_t *shape,
                                int64_t *numel, size_t *bytes) {
    if (!ember_dtype_valid(dtype))
        return ember__error(EMBER_ERR_DTYPE, "%s: dtype %d is not valid", fn, (int)dtype);
    if (ndim < 0 || ndim > EMBER_MAX_DIMS)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: ndim %d outside 0..%d", fn, ndim,
                            EMBER_MAX_DIMS);
    if (ndim > 0 && !shape) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: shape is NULL", fn);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: dim %d is negative (%lld)", fn, i,
                                (long long)shape[i]);
        if (!ember__mul_size(n, (size_t)shape[i], &n) || n > (size_t)INT64_MAX) {
            char s[160];
            format_shape(s, sizeof s, ndim, shape);
            return ember__error(EMBER_ERR_OVERFLOW, "%s: shape %s has more elements than fit", fn, s);
        }
    }
    size_t b;
    if (!ember__mul_size(n, ember_dtype_size(dtype), &b)) {
        char s[160];
        format_shape(s, sizeof s, ndim, shape);
        return ember__error(EMBER_ERR_OVERFLOW, "%s: shape %s of %s is more bytes than fit", fn, s,
                            ember_dtype_name(dtype));
    }
    *numel = (int64_t)n;
    *bytes = b;
    return EMBER_OK;
}

static ember_tensor *tensor_new(ember_storage *s, ember_dtype dtype, int ndim,
                                const int64_t *shape, const int64_t *strides, int64_t offset) {
    ember_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->storage = s;
    t->dtype = dtype;
    t->ndim = ndim;
    t->offset = offset;
    if (ndim) {
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
        if (strides)
            memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
        else
            contiguous_strides(ndim, shape, t->strides);
    }
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return t;
}

ember_status ember_tensor_create(const ember_tensor_params *p, ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_create");
    *out = NULL;
    EMBER_CHECK_NULL(p, "ember_tensor_create");
    int64_t numel;
    size_t bytes;
    EMBER_TRY(check_shape("ember_tensor_create", p->dtype, p->ndim, p->shape, &numel, &bytes));
    if ((unsigned)p->tier >= EMBER_TIER_COUNT || (unsigned)p->kind >= EMBER_MEM_KIND_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_tensor_create: tier %d / kind %d invalid",
                            (int)p->tier, (int)p->kind);
    ember_memory *mm = p->mm ? p->mm : ember_memory_default();
    ember_storage *s = calloc(1, sizeof *s);
    if (!s) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_create: storage header");
    /* Empty tensors still own a (minimal) allocation so data pointers are never NULL. */
    size_t alloc = bytes ? bytes : EMBER_MEM_ALIGN;
    ember_status st = ember_memory_alloc(mm, p->tier, p->kind, alloc, &s->base);
    if (st != EMBER_OK) {
        free(s);
        return st;
    }
    s->bytes = alloc;
    s->mm = mm;
    s->tier = p->tier;
    s->device = ember_memory_tier_device(mm, p->tier);
    ember_tensor *t = tensor_new(s, p->dtype, p->ndim, p->shape, NULL, 0);
    if (!t) {
        ember_memory_free(mm, s->base);
        free(s);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_create: tensor header");
    }
    *out = t;
    return EMBER_OK;
}

ember_status ember_tensor_wrap(void *data, ember_dtype dtype, int ndim, const int64_t *shape,
                               const int64_t *strides, ember_device dev, ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_wrap");
    *out = NULL;
    EMBER_CHECK_NULL(data, "ember_tensor_wrap");
    int64_t numel;
    size_t bytes;
    EMBER_TRY(check_shape("ember_tensor_wrap", dtype, ndim, shape, &numel, &bytes));
    if (strides)
        for (int i = 0; i < ndim; i++)
            if (strides[i] < 0)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                    "ember_tensor_wrap: stride %d is negative (%lld)", i,
                                    (long long)strides[i]);
    EMBER_TRY(ember_device_check(dev));
    ember_storage *s = calloc(1, sizeof *s);
    if (!s) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_wrap: storage header");
    s->base = data;
    s->bytes = bytes;
    s->tier = dev.type == EMBER_DEVICE_CPU ? EMBER_TIER_HOST : EMBER_TIER_DEVICE;
    s->device = dev;
    ember_tensor *t = tensor_new(s, dtype, ndim, shape, strides, 0);
    if (!t) {
        free(s);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_wrap: tensor header");
    }
    *out = t;
    return EMBER_OK;
}

void ember_tensor_destroy(ember_tensor *t) {
    if (!t) return;
    ember_storage *s = t->storage;
    free(t);
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (s->mm && ember_memory_free(s->mm, s->base) != EMBER_OK)
            ember_log(EMBER_LOG_ERROR, "%s", ember_last_error());
        free(s);
    }
}

ember_dtype ember_tensor_dtype(const ember_tensor *t) { return t->dtype; }
int ember_tensor_ndim(const ember_tensor *t) { return t->ndim; }
int64_t ember_tensor_dim(const ember_tensor *t, int i) {
    if (i < 0) i += t->ndim;
    return i >= 0 && i < t->ndim ? t->shape[i] : 1;
}
int64_t ember_tensor_stride(const ember_tensor *t, int i) {
    if (i < 0) i += t->ndim;
    return i >= 0 && i < t->ndim ? t->strides[i] : 1;
}
const int64_t *ember_tensor_shape(const ember_tensor *t) { return t->shape; }
int64_t ember_tensor_numel(const ember_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
size_t ember_tensor_nbytes(const ember_tensor *t) {
    return (size_t)ember_tensor_numel(t) * ember_dtype_size(t->dtype);
}
ember_device ember_tensor_device(const ember_tensor *t) { return t->storage->device; }
ember_tier ember_tensor_tier(const ember_tensor *t) { return t->storage->tier; }
void *ember_tensor_data(const ember_tensor *t) { return ember__tensor_ptr(t); }
int ember_tensor_storage_refs(const ember_tensor *t) {
    return __atomic_load_n(&t->storage->refs, __ATOMIC_RELAXED);
}

int ember_tensor_is_contiguous(const ember_tensor *t) {
    if (ember_tensor_numel(t) == 0) return 1; /* no element, no layout */
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue; /* a size-1 dim's stride never matters */
        if (t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

const char *ember_tensor_describe(const ember_tensor *t, char *buf, size_t n) {
    if (!buf || n == 0) return buf;
    if (!t) {
        snprintf(buf, n, "(null tensor)");
        return buf;
    }
    char shape[160], dev[32];
    format_shape(shape, sizeof shape, t->ndim, t->shape);
    snprintf(buf, n, "%s%s %s%s", ember_dtype_name(t->dtype), shape,
             ember_device_format(t->storage->device, dev, sizeof dev),
             ember_tensor_is_contiguous(t) ? "" : " strided");
    return buf;
}

/* ---- views ---- */

ember_status ember_tensor_retain(const ember_tensor *t, ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_retain");
    *out = NULL;
    EMBER_CHECK_NULL(t, "ember_tensor_retain");
    ember_tensor *v = tensor_new(t->storage, t->dtype, t->ndim, t->shape, t->strides, t->offset);
    if (!v) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_retain: tensor header");
    *out = v;
    return EMBER_OK;
}

ember_status ember_tensor_reshape(const ember_tensor *t, int ndim, const int64_t *shape,
                                  ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_reshape");
    *out = NULL;
    EMBER_CHECK_NULL(t, "ember_tensor_reshape");
    if (ndim < 0 || ndim > EMBER_MAX_DIMS || (ndim > 0 && !shape))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_tensor_reshape: ndim %d invalid", ndim);
    if (!ember_tensor_is_contiguous(t))
        return ember__error(EMBER_ERR_STATE,
                            "ember_tensor_reshape: tensor is not contiguous; use "
                            "ember_tensor_contiguous first");
    int64_t s[EMBER_MAX_DIMS], known = 1, numel = ember_tensor_numel(t);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return ember__error(EMBER_ERR_SHAPE, "ember_tensor_reshape: more than one -1 dim");
            infer = i;
        } else if (shape[i] < 0) {
            return ember__error(EMBER_ERR_SHAPE, "ember_tensor_reshape: dim %d is %lld", i,
                                (long long)shape[i]);
        } else {
            if (shape[i] && known > INT64_MAX / shape[i])
                return ember__error(EMBER_ERR_OVERFLOW, "ember_tensor_reshape: shape overflows");
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel % known)
            return ember__error(EMBER_ERR_SHAPE,
                                "ember_tensor_reshape: cannot infer dim %d: %lld elements over %lld",
                                infer, (long long)numel, (long long)known);
        s[infer] = numel / known;
        known = numel;
    }
    if (known != numel) {
        char a[160], b[160];
        format_shape(a, sizeof a, t->ndim, t->shape);
        format_shape(b, sizeof b, ndim, s);
        return ember__error(EMBER_ERR_SHAPE, "ember_tensor_reshape: %s (%lld elements) to %s (%lld)",
                            a, (long long)numel, b, (long long)known);
    }
    ember_tensor *v = tensor_new(t->storage, t->dtype, ndim, s, NULL, t->offset);
    if (!v) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_reshape: tensor header");
    *out = v;
    return EMBER_OK;
}

ember_status ember_tensor_narrow(const ember_tensor *t, int dim, int64_t start, int64_t len,
                                 ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_narrow");
    *out = NULL;
    EMBER_CHECK_NULL(t, "ember_tensor_narrow");
    if (dim < 0) dim += t->ndim;
    if (dim < 0 || dim >= t->ndim)
        return ember__error(EMBER_ERR_INDEX, "ember_tensor_narrow: dim %d of a %d-dim tensor", dim,
                            t->ndim);
    if (start < 0 || len < 0 || start > t->shape[dim] || len > t->shape[dim] - start)
        return ember__error(EMBER_ERR_INDEX,
                            "ember_tensor_narrow: [%lld, %lld) outside dim %d of size %lld",
                            (long long)start, (long long)(start + len), dim,
                            (long long)t->shape[dim]);
    int64_t shape[EMBER_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[dim] = len;
    ember_tensor *v = tensor_new(t->storage, t->dtype, t->ndim, shape, t->strides,
                                 t->offset + start * t->strides[dim]);
    if (!v) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_narrow: tensor header");
    *out = v;
    return EMBER_OK;
}

ember_status ember_tensor_permute(const ember_tensor *t, const int *perm, ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_permute");
    *out = NULL;
    EMBER_CHECK_NULL(t, "ember_tensor_permute");
    EMBER_CHECK_NULL(perm, "ember_tensor_permute");
    int seen[EMBER_MAX_DIMS] = {0};
    int64_t shape[EMBER_MAX_DIMS], strides[EMBER_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i];
        if (p < 0 || p >= t->ndim || seen[p])
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "ember_tensor_permute: entry %d (%d) is not a permutation of 0..%d",
                                i, p, t->ndim - 1);
        seen[p] = 1;
        shape[i] = t->shape[p];
        strides[i] = t->strides[p];
    }
    ember_tensor *v = tensor_new(t->storage, t->dtype, t->ndim, shape, strides, t->offset);
    if (!v) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_tensor_permute: tensor header");
    *out = v;
    return EMBER_OK;
}

ember_status ember_tensor_transpose(const ember_tensor *t, int d0, int d1, ember_tensor **out) {
    EMBER_CHECK_NULL(out, "ember_tensor_transpose");
    *out = NULL;
    EMBER_CHECK_NULL(t, "ember_tensor_transpose");
    if (d0 < 0) d0 += t->ndim;
    if (d1 < 0) d1 += t->ndim;
    if (d0 < 0 || d0 >= t->ndim || d1 < 0 || d1 >= t->ndim)
        return ember__error(EMBER_ERR_INDEX, "ember_tensor_transpose: dims %d, %d of a %d-dim tensor",
                            d0, d1, t->ndim);
    int perm[EMBER_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return ember_tensor_permute(t, perm, out);
}
