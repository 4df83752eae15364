/*
 * Fuzz target: the npy header parser. Any bytes must give a status, never a crash;
 * an accepted header must describe itself consistently (sizes within the input,
 * data size = product of the shape times the element size).
 */
#include <stdint.h>
#include <stdlib.h>

#include "ember/datasets.h"
#include "ember/types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ember_npy_info info;
    ember_status st = ember_npy_parse_header(data, size, &info);
    if (st != EMBER_OK) {
        if (st != EMBER_ERR_FORMAT && st != EMBER_ERR_DTYPE && st != EMBER_ERR_UNSUPPORTED && st != EMBER_ERR_OVERFLOW)
            abort();
        return 0;
    }
    if (info.header_bytes > size || info.ndim < 0 || info.ndim > EMBER_NPY_MAX_DIMS) abort();
    unsigned __int128 bytes = ember_dtype_size(info.dtype);
    for (int i = 0; i < info.ndim; i++) {
        if (info.shape[i] < 0) abort();
        bytes *= (uint64_t)info.shape[i];
    }
    if (bytes != info.data_bytes) abort();
    return 0;
}
