/*
 * engine/checkpoint_internal.h: test hooks of engine/checkpoint.c. Not installed.
 */
#ifndef EMBER_CHECKPOINT_INTERNAL_H
#define EMBER_CHECKPOINT_INTERNAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Fault injection for the atomic-write tests: when >= 0, ember_safetensors_write fails
 * with EMBER_ERR_IO once this many data bytes have been written (as a full disk or a
 * crash would), exercising the clean-up path. -1 (the default) disables it. Not
 * thread-safe; tests only.
 */
extern int64_t ember__safetensors_fail_after;

#ifdef __cplusplus
}
#endif
#endif /* EMBER_CHECKPOINT_INTERNAL_H */
