/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of ember's file
 * formats. It was chosen over CRC32 (zlib) because x86-64 (SSE4.2) and ARMv8 compute
 * it in hardware, at several GB/s, so verifying a checkpoint costs about as much as
 * reading it; the portable fallback is slicing-by-8 (one table lookup per byte, eight
 * bytes per step).
 *
 * Convention (the iSCSI / RFC 3720 one): the register starts at ~0 and the result is
 * inverted, so ember_crc32c(0, "123456789", 9) == 0xE3069283 and a CRC can be extended
 * by passing the previous result back in.
 */
#include <pthread.h>
#include <string.h>

#include "ember/checkpoint.h"
#include "engine/crc32c.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_CRC 1
#include <nmmintrin.h>
#endif

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void make_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
}

uint32_t ember__crc32c_sw(uint32_t crc, const void *data, size_t n) {
    pthread_once(&table_once, make_table);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
            table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
            table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
    return ~c;
}

#ifdef HAVE_X86_CRC
__attribute__((target("sse4.2"))) static uint32_t crc32c_x86(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t c = (uint32_t)~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    /* Three independent streams would hide the instruction's 3-cycle latency; one
       stream already runs at several GB/s, faster than the storage it checks. */
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

static int hw_ok;
static pthread_once_t hw_once = PTHREAD_ONCE_INIT;
static void detect_hw(void) {
    __builtin_cpu_init();
    hw_ok = __builtin_cpu_supports("sse4.2") ? 1 : 0;
}
#endif

int ember__crc32c_hw(void) {
#ifdef HAVE_X86_CRC
    pthread_once(&hw_once, detect_hw);
    return hw_ok;
#else
    return 0;
#endif
}

uint32_t ember_crc32c(uint32_t crc, const void *data, size_t n) {
    if (n == 0) return crc;
#ifdef HAVE_X86_CRC
    if (ember__crc32c_hw()) return crc32c_x86(crc, data, n);
#endif
    return ember__crc32c_sw(crc, data, n);
}
