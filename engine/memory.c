/*
 * The memory manager: budgets and statistics per tier and kind.
 *
 * Pointers are tracked in an open-addressing table keyed by address, so free() needs
 * only the pointer and the manager can refuse pointers it does not own (double frees
 * included) instead of corrupting the heap. Budgets are reserved under the lock before
 * the system allocation happens outside it, so two threads can never both pass the
 * check and overshoot a budget together, and a slow cudaMalloc does not serialise
 * the host tiers.
 *
 * A device allocation over the budget first asks the registered reclaim callback
 * (engine/memory_internal.h) for the missing bytes: the heterogeneous memory manager
 * fills the budget with chunk copies it can drop, and memory that a cache or a
 * staging buffer needs later must not fail while such copies sit there. The callback
 * runs outside the lock (it frees through this manager); a thread-local flag keeps a
 * callback's own device allocations from reclaiming again, and a count of running
 * callbacks lets unregistering wait until none uses its context.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/internal.h"
#include "engine/memory_internal.h"
#include "ember/memory.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

typedef struct record {
    void *ptr; /* NULL: empty; TOMBSTONE: deleted */
    size_t bytes;
    unsigned char tier, kind, cuda_pinned;
} record;

#define TOMBSTONE ((void *)1)

struct ember_memory {
    pthread_mutex_t lock;
    ember_device device;
    ember_memory_stats st;
    record *table; /* power-of-two capacity */
    size_t cap, used /* live + tombstones */, live;
    /* the reclaim callback of the device tier, and the threads running it now */
    ember__reclaim_fn reclaim;
    void *reclaim_ctx;
    int reclaim_running;
    pthread_cond_t reclaim_idle;
};

/* Set while this thread runs a reclaim callback: its device allocations do not reclaim. */
static _Thread_local int in_reclaim;

static const char *tier_names[EMBER_TIER_COUNT] = {"host", "pinned", "device"};
static const char *kind_names[EMBER_MEM_KIND_COUNT] = {
    "other", "parameter", "gradient", "optimizer_state", "activation", "cache", "staging"};

const char *ember_tier_name(ember_tier tier) {
    return (unsigned)tier < EMBER_TIER_COUNT ? tier_names[tier] : "invalid-tier";
}
const char *ember_mem_kind_name(ember_mem_kind kind) {
    return (unsigned)kind < EMBER_MEM_KIND_COUNT ? kind_names[kind] : "invalid-kind";
}

static size_t hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* Slot holding p, or NULL. */
static record *table_find(ember_memory *mm, const void *p) {
    if (!mm->table) return NULL;
    size_t mask = mm->cap - 1;
    for (size_t i = hash_ptr(p) & mask;; i = (i + 1) & mask) {
        if (mm->table[i].ptr == NULL) return NULL;
        if (mm->table[i].ptr == p) return &mm->table[i];
    }
}

static int table_grow(ember_memory *mm) {
    size_t ncap = mm->cap ? mm->cap * 2 : 256;
    if (mm->live * 4 < mm->cap) ncap = mm->cap; /* mostly tombstones: rehash in place size */
    record *nt = calloc(ncap, sizeof *nt);
    if (!nt) return 0;
    size_t mask = ncap - 1;
    for (size_t i = 0; i < mm->cap; i++) {
        record r = mm->table[i];
        if (r.ptr == NULL || r.ptr == TOMBSTONE) continue;
        size_t j = hash_ptr(r.ptr) & mask;
        while (nt[j].ptr) j = (j + 1) & mask;
        nt[j] = r;
    }
    free(mm->table);
    mm->table = nt;
    mm->cap = ncap;
    mm->used = mm->live;
    return 1;
}

static int table_insert(ember_memory *mm, record r) {
    if ((mm->used + 1) * 4 > mm->cap * 3 && !table_grow(mm)) return 0;
    size_t mask = mm->cap - 1;
    size_t i = hash_ptr(r.ptr) & mask;
    while (mm->table[i].ptr != NULL && mm->table[i].ptr != TOMBSTONE) i = (i + 1) & mask;
    if (mm->table[i].ptr == NULL) mm->used++;
    mm->table[i] = r;
    mm->live++;
    return 1;
}

ember_status ember_memory_create(const ember_memory_config *cfg, ember_memory **out) {
    EMBER_CHECK_NULL(out, "ember_memory_create");
    *out = NULL;
    ember_memory_config c = cfg ? *cfg : (ember_memory_config){.device = EMBER_CPU};
    EMBER_TRY(ember_device_check(c.device));
    ember_memory *mm = calloc(1, sizeof *mm);
    if (!mm)
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_memory_create: %zu B of host memory",
                            sizeof *mm);
    pthread_mutex_init(&mm->lock, NULL);
    pthread_cond_init(&mm->reclaim_idle, NULL);
    mm->device = c.device;
    for (int t = 0; t < EMBER_TIER_COUNT; t++)
        mm->st.budget[t] = c.budget[t] ? c.budget[t] : EMBER_BUDGET_UNLIMITED;
    *out = mm;
    return EMBER_OK;
}

static void system_free(ember_memory *mm, record *r) {
    if (r->tier == EMBER_TIER_DEVICE && mm->device.type == EMBER_DEVICE_CUDA) {
#ifdef EMBER_HAVE_CUDA
        if (ember__cuda_free(mm->device.index, r->ptr) != EMBER_OK)
            ember_log(EMBER_LOG_WARN, "%s", ember_last_error());
#endif
        return;
    }
    if (r->cuda_pinned) {
#ifdef EMBER_HAVE_CUDA
        if (ember__cuda_host_free(r->ptr) != EMBER_OK)
            ember_log(EMBER_LOG_WARN, "%s", ember_last_error());
#endif
        return;
    }
    free(r->ptr);
}

void ember_memory_destroy(ember_memory *mm) {
    if (!mm || mm == ember_memory_default()) return;
    if (mm->live) {
        char buf[64];
        ember_log(EMBER_LOG_WARN,
                  "ember_memory_destroy: %zu allocation%s still live (host %zu B, pinned %zu B, "
                  "device %zu B on %s); releasing them",
                  mm->live, mm->live == 1 ? "" : "s", mm->st.live_total[EMBER_TIER_HOST],
                  mm->st.live_total[EMBER_TIER_PINNED], mm->st.live_total[EMBER_TIER_DEVICE],
                  ember_device_format(mm->device, buf, sizeof buf));
        for (size_t i = 0; i < mm->cap; i++)
            if (mm->table[i].ptr && mm->table[i].ptr != TOMBSTONE) system_free(mm, &mm->table[i]);
    }
    free(mm->table);
    pthread_cond_destroy(&mm->reclaim_idle);
    pthread_mutex_destroy(&mm->lock);
    free(mm);
}

static ember_memory *default_mm;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static void default_init(void) {
    if (ember_memory_create(NULL, &default_mm) != EMBER_OK) default_mm = NULL;
}
ember_memory *ember_memory_default(void) {
    pthread_once(&default_once, default_init);
    EMBER_ASSERT(default_mm != NULL);
    return default_mm;
}

static void account(ember_memory *mm, int tier, int kind, size_t bytes, int sign) {
    ember_memory_stats *s = &mm->st;
    if (sign > 0) {
        s->live[tier][kind] += bytes;
        s->live_total[tier] += bytes;
        if (s->live[tier][kind] > s->peak[tier][kind]) s->peak[tier][kind] = s->live[tier][kind];
        if (s->live_total[tier] > s->peak_total[tier]) s->peak_total[tier] = s->live_total[tier];
    } else {
        s->live[tier][kind] -= bytes;
        s->live_total[tier] -= bytes;
    }
}

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Large DRAM blocks (tables, caches, id maps) are read at random: ask for 2 MiB pages,
   which save a TLB miss per row lookup. Advice only; the kernel may ignore it. */
static void advise_huge_pages(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    if (bytes < ((size_t)8 << 20)) return;
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    uintptr_t end = ((uintptr_t)p + bytes) & ~(uintptr_t)4095;
    if (end > a) (void)madvise((void *)a, end - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

ember_status ember_memory_alloc(ember_memory *mm, ember_tier tier, ember_mem_kind kind,
                                size_t bytes, void **out) {
    EMBER_CHECK_NULL(out, "ember_memory_alloc");
    *out = NULL;
    if (!mm) mm = ember_memory_default();
    if ((unsigned)tier >= EMBER_TIER_COUNT || (unsigned)kind >= EMBER_MEM_KIND_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_memory_alloc: tier %d / kind %d invalid",
                            (int)tier, (int)kind);
    if (bytes == 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_memory_alloc: size 0 (%s tier, %s)",
                            tier_names[tier], kind_names[kind]);
    if (bytes > SIZE_MAX - EMBER_MEM_ALIGN)
        return ember__error(EMBER_ERR_OVERFLOW, "ember_memory_alloc: %zu B cannot be aligned", bytes);

    pthread_mutex_lock(&mm->lock);
    size_t reclaimed = 0;
    int reclaim_tried = 0;
    for (;;) {
        size_t budget = mm->st.budget[tier], live = mm->st.live_total[tier];
        if (bytes <= budget && live <= budget - bytes) break;
        /* over budget: the device tier's reclaim callback may drop what it holds */
        ember__reclaim_fn fn = tier == EMBER_TIER_DEVICE && !in_reclaim && bytes <= budget ? mm->reclaim : NULL;
        size_t freed = 0;
        if (fn) {
            void *ctx = mm->reclaim_ctx;
            size_t need = bytes - (budget - live);
            mm->reclaim_running++;
            pthread_mutex_unlock(&mm->lock);
            in_reclaim = 1;
            freed = fn(ctx, need);
            in_reclaim = 0;
            pthread_mutex_lock(&mm->lock);
            if (--mm->reclaim_running == 0) pthread_cond_broadcast(&mm->reclaim_idle);
            reclaim_tried = 1;
            reclaimed += freed;
        }
        if (freed) continue;
        budget = mm->st.budget[tier];
        live = mm->st.live_total[tier];
        mm->st.failed++;
        pthread_mutex_unlock(&mm->lock);
        char dev[32], why[64] = "";
        if (reclaim_tried) snprintf(why, sizeof why, " (after a reclaim freed %zu B)", reclaimed);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY,
                            "%s tier (%s): request %zu B (%s) exceeds budget: %zu B live of %zu B "
                            "budget, %zu B free%s",
                            tier_names[tier],
                            ember_device_format(ember_memory_tier_device(mm, tier), dev, sizeof dev),
                            bytes, kind_names[kind], live, budget, live < budget ? budget - live : 0, why);
    }
    account(mm, tier, kind, bytes, +1); /* reserve */
    pthread_mutex_unlock(&mm->lock);

    void *p = NULL;
    int cuda_pinned = 0;
    ember_status st = EMBER_OK;
    if (tier == EMBER_TIER_DEVICE && mm->device.type == EMBER_DEVICE_CUDA) {
#ifdef EMBER_HAVE_CUDA
        st = ember__cuda_malloc(mm->device.index, bytes, &p);
#else
        st = ember__error(EMBER_ERR_UNSUPPORTED, "device tier on CUDA without CUDA support");
#endif
    } else {
#ifdef EMBER_HAVE_CUDA
        if (tier == EMBER_TIER_PINNED && ember__cuda_device_count() > 0) {
            st = ember__cuda_host_alloc(bytes, &p);
            cuda_pinned = 1;
        } else
#endif
        {
            p = aligned_alloc(EMBER_MEM_ALIGN, round_up(bytes, EMBER_MEM_ALIGN));
            if (p) advise_huge_pages(p, bytes);
            if (!p)
                st = ember__error(EMBER_ERR_OUT_OF_MEMORY,
                                  "%s tier: the system refused %zu B (%s)", tier_names[tier], bytes,
                                  kind_names[kind]);
        }
    }

    pthread_mutex_lock(&mm->lock);
    if (st == EMBER_OK &&
        !table_insert(mm, (record){p, bytes, (unsigned char)tier, (unsigned char)kind,
                                   (unsigned char)cuda_pinned})) {
        record r = {p, bytes, (unsigned char)tier, (unsigned char)kind, (unsigned char)cuda_pinned};
        system_free(mm, &r);
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_memory_alloc: allocation table full");
    }
    if (st != EMBER_OK) {
        account(mm, tier, kind, bytes, -1);
        mm->st.failed++;
    } else {
        mm->st.allocs++;
        *out = p;
    }
    pthread_mutex_unlock(&mm->lock);
    return st;
}

ember_status ember_memory_free(ember_memory *mm, void *ptr) {
    if (!ptr) return EMBER_OK;
    if (!mm) mm = ember_memory_default();
    pthread_mutex_lock(&mm->lock);
    record *r = table_find(mm, ptr);
    if (!r) {
        pthread_mutex_unlock(&mm->lock);
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "ember_memory_free: %p is not a live allocation of this manager "
                            "(double free, or another manager's pointer)",
                            ptr);
    }
    record copy = *r;
    r->ptr = TOMBSTONE;
    mm->live--;
    account(mm, copy.tier, copy.kind, copy.bytes, -1);
    mm->st.frees++;
    pthread_mutex_unlock(&mm->lock);
    system_free(mm, &copy);
    return EMBER_OK;
}

ember_status ember_memory_query(ember_memory *mm, const void *ptr, ember_tier *tier,
                                ember_mem_kind *kind, size_t *bytes) {
    if (!mm) mm = ember_memory_default();
    pthread_mutex_lock(&mm->lock);
    record *r = ptr ? table_find(mm, ptr) : NULL;
    record copy = r ? *r : (record){0};
    pthread_mutex_unlock(&mm->lock);
    if (!r)
        return ember__error(EMBER_ERR_NOT_FOUND, "ember_memory_query: %p is not a live allocation",
                            ptr);
    if (tier) *tier = (ember_tier)copy.tier;
    if (kind) *kind = (ember_mem_kind)copy.kind;
    if (bytes) *bytes = copy.bytes;
    return EMBER_OK;
}

ember_status ember_memory_set_budget(ember_memory *mm, ember_tier tier, size_t bytes) {
    if (!mm) mm = ember_memory_default();
    if ((unsigned)tier >= EMBER_TIER_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_memory_set_budget: tier %d invalid",
                            (int)tier);
    size_t b = bytes ? bytes : EMBER_BUDGET_UNLIMITED;
    pthread_mutex_lock(&mm->lock);
    size_t live = mm->st.live_total[tier];
    if (live > b) {
        pthread_mutex_unlock(&mm->lock);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY,
                            "ember_memory_set_budget: %s tier budget %zu B is below %zu B live",
                            tier_names[tier], b, live);
    }
    mm->st.budget[tier] = b;
    pthread_mutex_unlock(&mm->lock);
    return EMBER_OK;
}

ember_status ember__memory_set_reclaim(ember_memory *mm, ember__reclaim_fn fn, void *ctx) {
    if (!mm) mm = ember_memory_default();
    pthread_mutex_lock(&mm->lock);
    if (fn) {
        if (mm->reclaim && (mm->reclaim != fn || mm->reclaim_ctx != ctx)) {
            pthread_mutex_unlock(&mm->lock);
            return ember__error(EMBER_ERR_STATE,
                                "ember__memory_set_reclaim: the manager already has a reclaim callback "
                                "(one per manager)");
        }
        mm->reclaim = fn;
        mm->reclaim_ctx = ctx;
    } else if (mm->reclaim && mm->reclaim_ctx == ctx) {
        mm->reclaim = NULL;
        mm->reclaim_ctx = NULL;
        /* the callbacks running now may still use ctx */
        while (mm->reclaim_running) pthread_cond_wait(&mm->reclaim_idle, &mm->lock);
    }
    pthread_mutex_unlock(&mm->lock);
    return EMBER_OK;
}

ember_device ember_memory_device(const ember_memory *mm) {
    return (mm ? mm : ember_memory_default())->device;
}

ember_device ember_memory_tier_device(const ember_memory *mm, ember_tier tier) {
    return tier == EMBER_TIER_DEVICE ? ember_memory_device(mm) : EMBER_CPU;
}

void ember_memory_get_stats(ember_memory *mm, ember_memory_stats *out) {
    if (!out) return;
    if (!mm) mm = ember_memory_default();
    pthread_mutex_lock(&mm->lock);
    *out = mm->st;
    pthread_mutex_unlock(&mm->lock);
}

void ember_memory_reset_peaks(ember_memory *mm) {
    if (!mm) mm = ember_memory_default();
    pthread_mutex_lock(&mm->lock);
    memcpy(mm->st.peak, mm->st.live, sizeof mm->st.peak);
    memcpy(mm->st.peak_total, mm->st.live_total, sizeof mm->st.peak_total);
    pthread_mutex_unlock(&mm->lock);
}

/* Append to buf as snprintf would, tracking the total length needed. */
typedef struct {
    char *buf;
    size_t n, len;
} jbuf;

static void jprintf(jbuf *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void jprintf(jbuf *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = j->len < j->n ? j->n - j->len : 0;
    int k = vsnprintf(room ? j->buf + j->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0) j->len += (size_t)k;
}

size_t ember_memory_stats_json(const ember_memory_stats *st, char *buf, size_t n) {
    jbuf j = {buf, n, 0};
    if (buf && n) buf[0] = '\0';
    if (!st) return 0;
    jprintf(&j, "{\"allocs\":%llu,\"frees\":%llu,\"failed\":%llu,\"tiers\":{",
            (unsigned long long)st->allocs, (unsigned long long)st->frees,
            (unsigned long long)st->failed);
    for (int t = 0; t < EMBER_TIER_COUNT; t++) {
        jprintf(&j, "%s\"%s\":{\"budget\":", t ? "," : "", tier_names[t]);
        if (st->budget[t] == EMBER_BUDGET_UNLIMITED)
            jprintf(&j, "null");
        else
            jprintf(&j, "%zu", st->budget[t]);
        jprintf(&j, ",\"live\":%zu,\"peak\":%zu,\"kinds\":{", st->live_total[t], st->peak_total[t]);
        for (int k = 0; k < EMBER_MEM_KIND_COUNT; k++)
            jprintf(&j, "%s\"%s\":{\"live\":%zu,\"peak\":%zu}", k ? "," : "", kind_names[k],
                    st->live[t][k], st->peak[t][k]);
        jprintf(&j, "}}");
    }
    jprintf(&j, "}}");
    return j.len;
}
