/*
 * ember/types.h: element types and devices.
 *
 * A dtype names how one element is stored; arithmetic on f16 and bf16 accumulates
 * in f32. A device names where compute runs: the CPU, or CUDA GPU N. Parse and print
 * devices as "cpu", "cuda" (= "cuda:0"), "cuda:1".
 *
 *     ember_device dev;
 *     if (ember_device_parse("cuda:1", &dev) != EMBER_OK) ...
 *
 * All functions are pure and thread-safe.
 */
#ifndef EMBER_TYPES_H
#define EMBER_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ember_dtype {
    EMBER_DTYPE_F32,
    EMBER_DTYPE_F16,
    EMBER_DTYPE_BF16,
    EMBER_DTYPE_I8,
    EMBER_DTYPE_U8,
    EMBER_DTYPE_I32,
    EMBER_DTYPE_I64,
    EMBER_DTYPE_COUNT
} ember_dtype;

/** Bytes per element; 0 for an invalid dtype. */
size_t ember_dtype_size(ember_dtype dt);
/** "f32", "f16", "bf16", "i8", "u8", "i32", "i64"; "invalid" otherwise. */
const char *ember_dtype_name(ember_dtype dt);
/** Inverse of ember_dtype_name. @return EMBER_OK or EMBER_ERR_DTYPE. */
ember_status ember_dtype_parse(const char *name, ember_dtype *out);
/** Non-zero for a valid dtype value. */
int ember_dtype_valid(ember_dtype dt);
/** Non-zero for f32, f16, bf16. */
int ember_dtype_is_float(ember_dtype dt);

/* IEEE half and bfloat16 conversions, round to nearest even; NaN and Inf preserved. */
uint16_t ember_f32_to_f16(float x);
float ember_f16_to_f32(uint16_t h);
uint16_t ember_f32_to_bf16(float x);
float ember_bf16_to_f32(uint16_t b);

typedef enum ember_device_type {
    EMBER_DEVICE_CPU,
    EMBER_DEVICE_CUDA,
    EMBER_DEVICE_TYPE_COUNT
} ember_device_type;

typedef struct ember_device {
    ember_device_type type;
    int index; /* 0 for the CPU; GPU ordinal for CUDA */
} ember_device;

#define EMBER_CPU ((ember_device){EMBER_DEVICE_CPU, 0})
#define EMBER_CUDA(i) ((ember_device){EMBER_DEVICE_CUDA, (i)})

/** Parse "cpu", "cuda", "cuda:N". @return EMBER_OK or EMBER_ERR_INVALID_ARGUMENT. */
ember_status ember_device_parse(const char *s, ember_device *out);
/** Print a device into buf ("cpu", "cuda:0"); returns buf. */
const char *ember_device_format(ember_device dev, char *buf, size_t n);
int ember_device_equal(ember_device a, ember_device b);

/** Number of usable CUDA devices (0 when ember was built without CUDA or none is present). */
int ember_cuda_device_count(void);
/**
 * Check that a device exists and can run work.
 * @return EMBER_OK, EMBER_ERR_UNSUPPORTED (CUDA not built), EMBER_ERR_DEVICE (no such GPU).
 */
ember_status ember_device_check(ember_device dev);
/** Wait until all work queued on the device (any stream) has finished. */
ember_status ember_device_synchronize(ember_device dev);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_TYPES_H */
