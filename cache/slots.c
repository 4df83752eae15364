/*
 * The cache's metadata: the id -> slot map and the slot set with its eviction heap
 * (see cache/cache_internal.h for why it is shaped this way).
 *
 * The map uses linear probing with backward-shift deletion instead of tombstones, so
 * probe lengths stay short however many evictions a long run makes, and a Fibonacci
 * hash, so the small dense ids of Zipf-skewed tables spread over the whole table.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "engine/internal.h"


/* ---- id map ---- */

static int log2_u64(uint64_t x) {
    int k = 0;
    while ((1ull << k) < x) k++;
    return k;
}

static ember_status idmap_alloc(ember__idmap *m, uint64_t cap) {
    void *p = NULL;
    size_t bytes = (size_t)cap * sizeof(ember__ident);
    EMBER_TRY(ember_memory_alloc(m->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, bytes, &p));
    m->e = p;
    m->cap = cap;
    m->shift = 64 - log2_u64(cap);
    m->n = 0;
    for (uint64_t i = 0; i < cap; i++) m->e[i].key = -1;
    return EMBER_OK;
}

ember_status ember__idmap_init(ember__idmap *m, ember_memory *mm, int64_t max_keys, int growable) {
    memset(m, 0, sizeof *m);
    m->mm = mm;
    m->growable = growable;
    uint64_t cap = 16;
    while (cap < (uint64_t)max_keys * 2) cap <<= 1;
    return idmap_alloc(m, cap);
}

void ember__idmap_free(ember__idmap *m) {
    if (m->e) ember_memory_free(m->mm, m->e);
    m->e = NULL;
    m->cap = 0;
    m->n = 0;
}

void ember__idmap_clear(ember__idmap *m) {
    for (uint64_t i = 0; m->e && i < m->cap; i++) m->e[i].key = -1;
    m->n = 0;
}

int32_t ember__idmap_find(const ember__idmap *m, int64_t id) {
    uint64_t mask = m->cap - 1;
    for (uint64_t i = ember__idmap_home(m, id);; i = (i + 1) & mask) {
        int64_t k = m->e[i].key;
        if (k == id) return m->e[i].val;
        if (k < 0) return -1;
    }
}

static void idmap_put(ember__idmap *m, int64_t id, int32_t val) {
    uint64_t mask = m->cap - 1;
    uint64_t i = ember__idmap_home(m, id);
    while (m->e[i].key >= 0) i = (i + 1) & mask;
    m->e[i].key = id;
    m->e[i].val = val;
    m->n++;
}

static ember_status idmap_grow(ember__idmap *m) {
    ember__idmap old = *m;
    EMBER_TRY(idmap_alloc(m, old.cap * 2));
    for (uint64_t i = 0; i < old.cap; i++)
        if (old.e[i].key >= 0) idmap_put(m, old.e[i].key, old.e[i].val);
    ember_memory_free(m->mm, old.e);
    return EMBER_OK;
}

ember_status ember__idmap_insert(ember__idmap *m, int64_t id, int32_t val) {
    if ((uint64_t)(m->n + 1) * 2 > m->cap) {
        if (!m->growable)
            return ember__error(EMBER_ERR_INTERNAL, "ember__idmap_insert: map of %llu entries is full",
                                (unsigned long long)m->cap);
        EMBER_TRY(idmap_grow(m));
    }
    idmap_put(m, id, val);
    return EMBER_OK;
}

static int64_t idmap_index(const ember__idmap *m, int64_t id) {
    uint64_t mask = m->cap - 1;
    for (uint64_t i = ember__idmap_home(m, id);; i = (i + 1) & mask) {
        int64_t k = m->e[i].key;
        if (k == id) return (int64_t)i;
        if (k < 0) return -1;
    }
}

static void idmap_erase_at(ember__idmap *m, uint64_t i) {
    uint64_t mask = m->cap - 1;
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->e[j].key < 0) break;
        uint64_t k = ember__idmap_home(m, m->e[j].key);
        /* Keep entry j where it is when its home lies cyclically in (i, j]. */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        m->e[i] = m->e[j];
        i = j;
    }
    m->e[i].key = -1;
    m->n--;
}

int ember__idmap_erase(ember__idmap *m, int64_t id) {
    int64_t i = idmap_index(m, id);
    if (i < 0) return 0;
    idmap_erase_at(m, (uint64_t)i);
    return 1;
}

ember_status ember__idmap_add(ember__idmap *m, int64_t id, int32_t delta) {
    int64_t i = idmap_index(m, id);
    if (i >= 0) {
        m->e[i].val += delta;
        if (m->e[i].val <= 0) idmap_erase_at(m, (uint64_t)i);
        return EMBER_OK;
    }
    if (delta <= 0) return EMBER_OK;
    return ember__idmap_insert(m, id, delta);
}

/* ---- slot set ---- */

ember_status ember__slots_init(ember__slots *s, ember_memory *mm, int64_t cap, int policy) {
    memset(s, 0, sizeof *s);
    s->mm = mm;
    s->cap = cap;
    s->policy = policy;
    if (cap <= 0) return EMBER_OK;
    if (cap > INT32_MAX / 2)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_cache_create: %lld slots in one table; "
                            "at most %d", (long long)cap, INT32_MAX / 2);
    size_t n = (size_t)cap;
    size_t bytes = 2 * n * sizeof(ember__hent) + n * (sizeof(ember__slotmeta) + sizeof(int32_t)) + 64;
    EMBER_TRY(ember_memory_alloc(mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, bytes, &s->block));
    char *p = s->block;
    s->heap = (ember__hent *)p;
    p += 2 * n * sizeof(ember__hent);
    s->m = (ember__slotmeta *)p;
    p += n * sizeof(ember__slotmeta);
    s->freel = (int32_t *)p;
    ember_status st = ember__idmap_init(&s->map, mm, cap, 0);
    if (st != EMBER_OK) {
        ember_memory_free(mm, s->block);
        s->block = NULL;
        return st;
    }
    memset(s->m, 0, n * sizeof(ember__slotmeta));
    ember__slots_reset(s);
    return EMBER_OK;
}

void ember__slots_free(ember__slots *s) {
    if (s->block) ember_memory_free(s->mm, s->block);
    ember__idmap_free(&s->map);
    memset(s, 0, sizeof *s);
}

void ember__slots_reset(ember__slots *s) {
    if (s->cap <= 0) return;
    size_t n = (size_t)s->cap;
    for (size_t i = 0; i < n; i++) {
        uint32_t gen = s->m[i].gen + 1;
        s->m[i] = (ember__slotmeta){.id = -1, .gen = gen};
    }
    /* Free slots are handed out in increasing order (the stack's top is slot 0). */
    for (int64_t i = 0; i < s->cap; i++) s->freel[i] = (int32_t)(s->cap - 1 - i);
    s->free_n = s->cap;
    s->heap_n = 0;
    s->pinned = 0;
    s->ndirty = 0;
    s->now_epoch = 0;
    ember__idmap_clear(&s->map);
}

uint32_t ember__slots_eff(const ember__slots *s, int32_t slot) {
    uint32_t d = s->now_epoch - s->m[slot].epoch;
    return d >= 32 ? 0u : s->m[slot].freq >> d;
}

static uint32_t ent_eff(const ember__slots *s, const ember__hent *e) {
    uint32_t d = s->now_epoch - e->epoch;
    return d >= 32 ? 0u : e->freq >> d;
}

/* Heap order on entries: a before b (a is the better victim). */
static int before(const ember__slots *s, const ember__hent *a, const ember__hent *b) {
    switch (s->policy) {
    case EMBER_CACHE_POLICY_LFU: {
        uint32_t fa = ent_eff(s, a), fb = ent_eff(s, b);
        if (fa != fb) return fa < fb;
        break;
    }
    case EMBER_CACHE_POLICY_STATIC:
        if (a->freq != b->freq) return a->freq < b->freq;
        break;
    default: break;
    }
    if (a->last != b->last) return a->last < b->last;
    return a->slot < b->slot;
}

static void sift_up(ember__slots *s, int64_t pos) {
    ember__hent x = s->heap[pos];
    while (pos > 0) {
        int64_t parent = (pos - 1) / 2;
        if (!before(s, &x, &s->heap[parent])) break;
        s->heap[pos] = s->heap[parent];
        pos = parent;
    }
    s->heap[pos] = x;
}

static void sift_down(ember__slots *s, int64_t pos) {
    ember__hent x = s->heap[pos];
    for (;;) {
        int64_t l = 2 * pos + 1;
        if (l >= s->heap_n) break;
        int64_t m = l;
        if (l + 1 < s->heap_n && before(s, &s->heap[l + 1], &s->heap[l])) m = l + 1;
        if (!before(s, &s->heap[m], &x)) break;
        s->heap[pos] = s->heap[m];
        pos = m;
    }
    s->heap[pos] = x;
}

static ember__hent entry_of(const ember__slots *s, int32_t slot) {
    return (ember__hent){.freq = s->m[slot].freq, .epoch = s->m[slot].epoch, .last = s->m[slot].last,
                         .slot = slot, .gen = s->m[slot].gen};
}

/* Drop dead entries and heapify: O(cap), only when dead entries fill the array. */
static void compact(ember__slots *s) {
    int64_t k = 0;
    for (int64_t i = 0; i < s->heap_n; i++) {
        const ember__hent *e = &s->heap[i];
        if (e->gen == s->m[e->slot].gen && s->m[e->slot].id >= 0) s->heap[k++] = *e;
    }
    s->heap_n = k;
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(s, i);
}

void ember__slots_push(ember__slots *s, int32_t slot) {
    EMBER_ASSERT(s->m[slot].id >= 0);
    if (s->heap_n >= 2 * s->cap) compact(s);
    EMBER_ASSERT(s->heap_n < 2 * s->cap);
    int64_t pos = s->heap_n++;
    s->heap[pos] = entry_of(s, slot);
    sift_up(s, pos);
}

void ember__slots_rekey(ember__slots *s, int32_t slot) {
    s->m[slot].gen++; /* the old entry dies where it is */
    ember__slots_push(s, slot);
}

int32_t ember__slots_pop(ember__slots *s) {
    while (s->heap_n > 0) {
        ember__hent *top = &s->heap[0];
        int32_t slot = top->slot;
        if (top->gen != s->m[slot].gen || s->m[slot].id < 0) { /* dead */
            s->heap[0] = s->heap[--s->heap_n];
            if (s->heap_n) sift_down(s, 0);
            continue;
        }
        if (top->freq != s->m[slot].freq || top->epoch != s->m[slot].epoch || top->last != s->m[slot].last) {
            *top = entry_of(s, slot); /* used since: its key only grew */
            sift_down(s, 0);
            continue;
        }
        s->heap[0] = s->heap[--s->heap_n];
        if (s->heap_n) sift_down(s, 0);
        return slot;
    }
    return -1;
}

void ember__slots_touch(ember__slots *s, int32_t slot, int64_t stamp, uint32_t count) {
    if (s->policy == EMBER_CACHE_POLICY_LFU) {
        uint64_t f = (uint64_t)ember__slots_eff(s, slot) + count;
        s->m[slot].freq = f > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)f;
        s->m[slot].epoch = s->now_epoch;
    }
    if (stamp > s->m[slot].last) s->m[slot].last = stamp;
}

void ember__slots_set_dirty(ember__slots *s, int32_t slot, int dirty) {
    if (dirty && !s->m[slot].dirty) s->ndirty++;
    if (!dirty && s->m[slot].dirty) s->ndirty--;
    s->m[slot].dirty = (uint8_t)(dirty != 0);
}

ember_status ember__slots_bind(ember__slots *s, int32_t slot, int64_t id, int64_t stamp, uint32_t count) {
    if (s->m[slot].id >= 0) ember__idmap_erase(&s->map, s->m[slot].id);
    ember__slots_set_dirty(s, slot, 0);
    s->m[slot].gen++;
    s->m[slot].id = id;
    s->m[slot].freq = count > UINT32_MAX / 2 ? UINT32_MAX / 2 : count;
    s->m[slot].epoch = s->now_epoch;
    s->m[slot].last = stamp;
    return ember__idmap_insert(&s->map, id, slot);
}

void ember__slots_release_slot(ember__slots *s, int32_t slot) {
    EMBER_ASSERT(s->m[slot].pin == 0);
    if (s->m[slot].id >= 0) ember__idmap_erase(&s->map, s->m[slot].id);
    ember__slots_set_dirty(s, slot, 0);
    s->m[slot].gen++;
    s->m[slot].id = -1;
    s->freel[s->free_n++] = slot;
}
