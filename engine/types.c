/* dtypes, half conversions and device names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/half.h"
#include "engine/internal.h"
#include "ember/types.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

static const struct {
    const char *name;
    size_t size;
} dtype_info[EMBER_DTYPE_COUNT] = {
    [EMBER_DTYPE_F32] = {"f32", 4}, [EMBER_DTYPE_F16] = {"f16", 2},
    [EMBER_DTYPE_BF16] = {"bf16", 2}, [EMBER_DTYPE_I8] = {"i8", 1},
    [EMBER_DTYPE_U8] = {"u8", 1},   [EMBER_DTYPE_I32] = {"i32", 4},
    [EMBER_DTYPE_I64] = {"i64", 8},
};

int ember_dtype_valid(ember_dtype dt) { return (unsigned)dt < EMBER_DTYPE_COUNT; }
size_t ember_dtype_size(ember_dtype dt) { return ember_dtype_valid(dt) ? dtype_info[dt].size : 0; }
const char *ember_dtype_name(ember_dtype dt) {
    return ember_dtype_valid(dt) ? dtype_info[dt].name : "invalid";
}
int ember_dtype_is_float(ember_dtype dt) {
    return dt == EMBER_DTYPE_F32 || dt == EMBER_DTYPE_F16 || dt == EMBER_DTYPE_BF16;
}

ember_status ember_dtype_parse(const char *name, ember_dtype *out) {
    EMBER_CHECK_NULL(name, "ember_dtype_parse");
    EMBER_CHECK_NULL(out, "ember_dtype_parse");
    for (int i = 0; i < EMBER_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (ember_dtype)i;
            return EMBER_OK;
        }
    return ember__error(EMBER_ERR_DTYPE,
                        "ember_dtype_parse: \"%s\" is not a dtype (f32 f16 bf16 i8 u8 i32 i64)",
                        name);
}

uint16_t ember_f32_to_f16(float x) { return ember__f32_to_f16(x); }
float ember_f16_to_f32(uint16_t h) { return ember__f16_to_f32(h); }
uint16_t ember_f32_to_bf16(float x) { return ember__f32_to_bf16(x); }
float ember_bf16_to_f32(uint16_t b) { return ember__bf16_to_f32(b); }

ember_status ember_device_parse(const char *s, ember_device *out) {
    EMBER_CHECK_NULL(s, "ember_device_parse");
    EMBER_CHECK_NULL(out, "ember_device_parse");
    if (strcmp(s, "cpu") == 0) {
        *out = EMBER_CPU;
        return EMBER_OK;
    }
    if (strncmp(s, "cuda", 4) == 0) {
        if (s[4] == '\0') {
            *out = EMBER_CUDA(0);
            return EMBER_OK;
        }
        if (s[4] == ':' && s[5] >= '0' && s[5] <= '9') {
            char *end;
            long i = strtol(s + 5, &end, 10);
            if (*end == '\0' && i >= 0 && i < 4096) {
                *out = EMBER_CUDA((int)i);
                return EMBER_OK;
            }
        }
    }
    return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                        "ember_device_parse: \"%s\" is not a device (cpu, cuda, cuda:N)", s);
}

const char *ember_device_format(ember_device dev, char *buf, size_t n) {
    if (!buf || n == 0) return buf;
    if (dev.type == EMBER_DEVICE_CPU)
        snprintf(buf, n, "cpu");
    else if (dev.type == EMBER_DEVICE_CUDA)
        snprintf(buf, n, "cuda:%d", dev.index);
    else
        snprintf(buf, n, "invalid-device");
    return buf;
}

int ember_device_equal(ember_device a, ember_device b) {
    return a.type == b.type && (a.type == EMBER_DEVICE_CPU || a.index == b.index);
}

int ember_cuda_device_count(void) {
#ifdef EMBER_HAVE_CUDA
    return ember__cuda_device_count();
#else
    return 0;
#endif
}

ember_status ember_device_check(ember_device dev) {
    if (dev.type == EMBER_DEVICE_CPU) return EMBER_OK;
    if (dev.type != EMBER_DEVICE_CUDA)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "device type %d is not valid",
                            (int)dev.type);
#ifndef EMBER_HAVE_CUDA
    return ember__error(EMBER_ERR_UNSUPPORTED,
                        "cuda:%d requested but this ember was built without CUDA", dev.index);
#else
    int n = ember__cuda_device_count();
    if (dev.index < 0 || dev.index >= n)
        return ember__error(EMBER_ERR_DEVICE, "cuda:%d requested but %d CUDA device%s found",
                            dev.index, n, n == 1 ? " is" : "s are");
    return EMBER_OK;
#endif
}

ember_status ember_device_synchronize(ember_device dev) {
    EMBER_TRY(ember_device_check(dev));
    const ember__backend *be = ember__backend_for(dev.type);
    return be->synchronize(dev.index);
}

const ember__backend *ember__backend_for(ember_device_type type) {
    switch (type) {
    case EMBER_DEVICE_CPU: return &ember__backend_cpu;
#ifdef EMBER_HAVE_CUDA
    case EMBER_DEVICE_CUDA: return &ember__backend_cuda;
#endif
    default: return NULL;
    }
}
