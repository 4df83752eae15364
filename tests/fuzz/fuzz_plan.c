/*
 * tests/fuzz/fuzz_plan.c: libFuzzer entry for the sharding-plan decoder
 * (ember_plan_decode, the reader behind ember_plan_load).
 *
 * The input is a whole plan file. Random bytes rarely carry a valid checksum, so each
 * input is decoded twice: as given, and with its last 8 bytes replaced by the FNV-1a 64
 * checksum of the rest, which takes the mutations past the checksum into the field
 * checks. Whatever the bytes, decoding returns a status (never a crash, hang or leak);
 * a plan that decodes must give stats, locate ids to ranks inside the world, and encode
 * back to exactly the bytes it came from. The seed corpus (tests/fuzz/corpus/plan)
 * holds plans of every kind written by `ember plan --save` on small inputs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember/partition.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_plan(const uint8_t *data, size_t size) {
    ember_plan *p = NULL;
    ember_status st = ember_plan_decode(data, size, NULL, &p);
    if (st != EMBER_OK) {
        if (p || (st != EMBER_ERR_FORMAT && st != EMBER_ERR_CHECKSUM)) __builtin_trap();
        return;
    }
    ember_plan_stats s;
    if (ember_plan_get_stats(p, 64, &s, NULL) != EMBER_OK || !(s.imbalance >= 1.0 - 1e-9 || s.mean_lookups == 0))
        __builtin_trap();
    int P = ember_plan_world(p);
    for (int t = 0; t < ember_plan_num_tables(p) && t < 4; t++)
        for (int64_t id = 0; id < 256; id++) {
            int r;
            int64_t row;
            if (ember_plan_locate(p, t, id, &r, &row) != EMBER_OK) break;
            if (r < EMBER_PLAN_EVERY_RANK || r >= P || row < 0) __builtin_trap();
            ember_plan_shard sh;
            if (r >= 0 && (ember_plan_get_shard(p, t, r, &sh) != EMBER_OK || row >= sh.local_rows)) __builtin_trap();
        }
    size_t n = 0;
    if (ember_plan_encode(p, NULL, 0, &n) != EMBER_OK || n != size) __builtin_trap();
    uint8_t *back = malloc(n);
    if (!back || ember_plan_encode(p, back, n, &n) != EMBER_OK || memcmp(back, data, n) != 0) __builtin_trap();
    free(back);
    ember_plan_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_plan(data, size);
    if (size < 8 || size > (1u << 20)) return 0;
    uint8_t *m = malloc(size);
    if (!m) return 0;
    memcpy(m, data, size);
    uint64_t h = UINT64_C(0xCBF29CE484222325);
    for (size_t i = 0; i < size - 8; i++) {
        h ^= m[i];
        h *= UINT64_C(0x100000001B3);
    }
    for (int i = 0; i < 8; i++) m[size - 8 + i] = (uint8_t)(h >> (8 * i));
    check_plan(m, size);
    free(m);
    return 0;
}
