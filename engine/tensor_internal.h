/*
 * engine/tensor_internal.h: the tensor and storage structs, for engine code. Not installed.
 */
#ifndef EMBER_TENSOR_INTERNAL_H
#define EMBER_TENSOR_INTERNAL_H

#include "ember/tensor.h"

typedef struct ember_storage {
    int refs; /* atomic */
    void *base;
    size_t bytes;
    ember_memory *mm; /* NULL: wrapped caller memory, not freed */
    ember_tier tier;
    ember_device device;
} ember_storage;

struct ember_tensor {
    ember_storage *storage;
    int64_t offset; /* in elements */
    ember_dtype dtype;
    int ndim;
    int64_t shape[EMBER_MAX_DIMS];
    int64_t strides[EMBER_MAX_DIMS]; /* in elements */
};

static inline char *ember__tensor_ptr(const ember_tensor *t) {
    return (char *)t->storage->base + t->offset * (int64_t)ember_dtype_size(t->dtype);
}

#endif /* EMBER_TENSOR_INTERNAL_H */
