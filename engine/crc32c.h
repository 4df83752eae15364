/*
 * engine/crc32c.h: the two CRC32C implementations behind ember_crc32c, so tests can
 * check that they agree. Not installed.
 */
#ifndef EMBER_CRC32C_H
#define EMBER_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Portable slicing-by-8 table version. Same contract as ember_crc32c. */
uint32_t ember__crc32c_sw(uint32_t crc, const void *data, size_t n);
/* 1 when ember_crc32c uses the CPU's CRC32 instruction (x86-64 SSE4.2). */
int ember__crc32c_hw(void);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_CRC32C_H */
