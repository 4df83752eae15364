/*
 * Warm-up from frequency counts (ember/datasets.h: ember_freq, the file `ember count`
 * writes): each table's hottest rows, as many as it has slots, loaded in blocks with
 * their counts as the policy's starting frequencies (LFU) or ranks (STATIC).
 */
#include <stdlib.h>

#include "cache/cache_internal.h"
#include "ember/datasets.h"
#include "engine/internal.h"

ember_status ember_cache_warmup_counts(ember_cache *c, const struct ember_freq *counts) {
    static const char fn[] = "ember_cache_warmup_counts";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(counts, fn);
    int nf = ember_freq_num_tables(counts);
    if (nf != c->nt)
        return ember__error(EMBER_ERR_SHAPE, "%s: the counts cover %d tables; the cache has %d", fn, nf, c->nt);
    ember_status st = EMBER_OK;
    for (int t = 0; t < c->nt && st == EMBER_OK; t++) {
        int64_t k = c->t[t].nslots;
        void *block = NULL;
        size_t bytes = (size_t)k * (sizeof(ember_freq_entry) + sizeof(int64_t) + sizeof(uint64_t));
        st = ember_memory_alloc(c->mm, EMBER_TIER_HOST, EMBER_MEM_OTHER, bytes, &block);
        if (st != EMBER_OK) break;
        ember_freq_entry *e = block;
        int64_t *ids = (int64_t *)(e + k);
        uint64_t *cnt = (uint64_t *)(ids + k);
        int64_t n = 0;
        st = ember_freq_top(counts, t, k, e, &n);
        for (int64_t i = 0; i < n && st == EMBER_OK; i++) {
            ids[i] = e[i].id;
            cnt[i] = e[i].count;
        }
        if (st == EMBER_OK && n > 0) st = ember_cache_warmup(c, t, ids, cnt, n);
        ember_memory_free(c->mm, block);
    }
    return st;
}

ember_status ember_cache_warmup_file(ember_cache *c, const char *path) {
    static const char fn[] = "ember_cache_warmup_file";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(path, fn);
    ember_freq *f = NULL;
    EMBER_TRY(ember_freq_load(path, c->mm, &f));
    ember_status st = ember_cache_warmup_counts(c, f);
    ember_freq_destroy(f);
    return st;
}
