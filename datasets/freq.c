/*
 * Frequency counts per (table, id): exact while they fit, Space-Saving beyond.
 *
 * Each table counts in an open-addressing hash map (id -> count). All maps together
 * stay under memory_cap: a table whose map would grow past the cap switches to
 * Space-Saving (Metwally et al., 2005) with heavy_hitters counters, seeded with its
 * current top counts, which are exact, so the algorithm's guarantee holds from there:
 * each held count over-estimates the true one by at most its recorded error, and every
 * id whose true count exceeds lookups / heavy_hitters is held. The counters sit in a
 * min-heap of stable slots, so a miss replaces the minimum in O(log k).
 *
 * A HyperLogLog sketch per table (4096 registers, about 1.6% error) estimates the
 * number of distinct ids once the table is no longer exact; skew ("the top 1% of rows
 * take X% of lookups") is measured against that number.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/internal.h"

#define EMPTY UINT64_MAX
#define HLL_BITS 12
#define HLL_M (1 << HLL_BITS)
#define MAGIC "EMBRFREQ"

typedef struct u64map {
    uint64_t *keys, *vals; /* keys EMPTY when free */
    uint64_t cap, used;
} u64map;

typedef struct ftable {
    int exact;
    uint64_t lookups;
    u64map m; /* exact: id -> count; Space-Saving: id -> slot */
    /* Space-Saving */
    int64_t k, n;            /* counters allowed, used */
    uint64_t *sid, *scnt, *serr; /* (k) per slot */
    int64_t *heap, *pos;     /* (k) heap of slots; slot -> heap position */
    uint8_t hll[HLL_M];
} ftable;

struct ember_freq {
    ember_memory *mm;
    int num_tables;
    size_t cap_bytes;
    size_t used_bytes; /* bytes of all exact maps (atomic) */
    int64_t hh;
    ftable *t;
};

static inline uint64_t hash_id(uint64_t id) { return ember__mix64(id ^ UINT64_C(0xA0761D6478BD642F)); }

static ember_status map_init(ember_memory *mm, u64map *m, uint64_t cap) {
    memset(m, 0, sizeof *m);
    EMBER_TRY(ember__ds_alloc(mm, cap * sizeof(uint64_t), (void **)&m->keys));
    ember_status st = ember__ds_alloc(mm, cap * sizeof(uint64_t), (void **)&m->vals);
    if (st != EMBER_OK) {
        ember__ds_free(mm, m->keys);
        m->keys = NULL;
        return st;
    }
    memset(m->keys, 0xff, cap * sizeof(uint64_t));
    m->cap = cap;
    return EMBER_OK;
}

static void map_free(ember_memory *mm, u64map *m) {
    ember__ds_free(mm, m->keys);
    ember__ds_free(mm, m->vals);
    memset(m, 0, sizeof *m);
}

static inline uint64_t *map_find(const u64map *m, uint64_t key) {
    uint64_t mask = m->cap - 1;
    for (uint64_t i = hash_id(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == EMPTY) return NULL;
    }
}

/* Slot of key (inserted with value 0 when absent); the map must have room. */
static inline uint64_t map_slot(u64map *m, uint64_t key, int *inserted) {
    uint64_t mask = m->cap - 1;
    for (uint64_t i = hash_id(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key) {
            *inserted = 0;
            return i;
        }
        if (m->keys[i] == EMPTY) {
            m->keys[i] = key;
            m->vals[i] = 0;
            m->used++;
            *inserted = 1;
            return i;
        }
    }
}

/* Remove key with backward-shift deletion (no tombstones). */
static void map_erase(u64map *m, uint64_t key) {
    uint64_t mask = m->cap - 1, i = hash_id(key) & mask;
    while (m->keys[i] != key) {
        if (m->keys[i] == EMPTY) return;
        i = (i + 1) & mask;
    }
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->keys[j] == EMPTY) break;
        uint64_t home = hash_id(m->keys[j]) & mask;
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        i = j;
    }
    m->keys[i] = EMPTY;
    m->used--;
}

static ember_status map_rehash(ember_memory *mm, u64map *m, uint64_t cap) {
    u64map n;
    EMBER_TRY(map_init(mm, &n, cap));
    for (uint64_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == EMPTY) continue;
        int ins;
        uint64_t s = map_slot(&n, m->keys[i], &ins);
        n.vals[s] = m->vals[i];
    }
    map_free(mm, m);
    *m = n;
    return EMBER_OK;
}

/* ---- HyperLogLog ---- */

static inline void hll_add(uint8_t *reg, uint64_t id) {
    uint64_t h = ember__mix64(id + UINT64_C(0x5851F42D4C957F2D));
    uint64_t idx = h >> (64 - HLL_BITS);
    uint64_t w = (h << HLL_BITS) | ((uint64_t)1 << (HLL_BITS - 1));
    uint8_t rank = (uint8_t)(__builtin_clzll(w) + 1);
    if (rank > reg[idx]) reg[idx] = rank;
}

static double hll_estimate(const uint8_t *reg) {
    double sum = 0;
    int zeros = 0;
    for (int i = 0; i < HLL_M; i++) {
        sum += ldexp(1.0, -reg[i]);
        zeros += reg[i] == 0;
    }
    double m = HLL_M, e = 0.7213 / (1 + 1.079 / m) * m * m / sum;
    if (e <= 2.5 * m && zeros) e = m * log(m / zeros);
    return e;
}

/* ---- Space-Saving ---- */

static inline void heap_swap(ftable *t, int64_t a, int64_t b) {
    int64_t sa = t->heap[a], sb = t->heap[b];
    t->heap[a] = sb;
    t->heap[b] = sa;
    t->pos[sb] = a;
    t->pos[sa] = b;
}

static inline int heap_less(const ftable *t, int64_t a, int64_t b) {
    uint64_t ca = t->scnt[t->heap[a]], cb = t->scnt[t->heap[b]];
    return ca < cb || (ca == cb && t->sid[t->heap[a]] > t->sid[t->heap[b]]);
}

static void heap_down(ftable *t, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && heap_less(t, l, m)) m = l;
        if (r < t->n && heap_less(t, r, m)) m = r;
        if (m == i) return;
        heap_swap(t, i, m);
        i = m;
    }
}

static void heap_up(ftable *t, int64_t i) {
    while (i > 0 && heap_less(t, i, (i - 1) / 2)) {
        heap_swap(t, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static ember_status ss_alloc(ember_memory *mm, ftable *t, int64_t k) {
    t->k = k;
    t->n = 0;
    ember_status st = ember__ds_alloc(mm, (size_t)k * 8, (void **)&t->sid);
    if (st == EMBER_OK) st = ember__ds_alloc(mm, (size_t)k * 8, (void **)&t->scnt);
    if (st == EMBER_OK) st = ember__ds_alloc(mm, (size_t)k * 8, (void **)&t->serr);
    if (st == EMBER_OK) st = ember__ds_alloc(mm, (size_t)k * 8, (void **)&t->heap);
    if (st == EMBER_OK) st = ember__ds_alloc(mm, (size_t)k * 8, (void **)&t->pos);
    return st;
}

static void ss_free(ember_memory *mm, ftable *t) {
    ember__ds_free(mm, t->sid);
    ember__ds_free(mm, t->scnt);
    ember__ds_free(mm, t->serr);
    ember__ds_free(mm, t->heap);
    ember__ds_free(mm, t->pos);
    t->sid = t->scnt = t->serr = NULL;
    t->heap = t->pos = NULL;
}

static ember_status ss_push(ember_memory *mm, ftable *t, uint64_t id, uint64_t cnt, uint64_t err) {
    int64_t s = t->n++;
    t->sid[s] = id;
    t->scnt[s] = cnt;
    t->serr[s] = err;
    t->heap[s] = s;
    t->pos[s] = s;
    int ins;
    uint64_t ms = map_slot(&t->m, id, &ins);
    t->m.vals[ms] = (uint64_t)s;
    (void)mm;
    heap_up(t, s);
    return EMBER_OK;
}

static void ss_add(ftable *t, uint64_t id) {
    uint64_t *v = map_find(&t->m, id);
    if (v) {
        int64_t s = (int64_t)*v;
        t->scnt[s]++;
        heap_down(t, t->pos[s]);
        return;
    }
    if (t->n < t->k) {
        ss_push(NULL, t, id, 1, 0);
        return;
    }
    int64_t s = t->heap[0];
    map_erase(&t->m, t->sid[s]);
    t->serr[s] = t->scnt[s];
    t->scnt[s]++;
    t->sid[s] = id;
    int ins;
    uint64_t ms = map_slot(&t->m, id, &ins);
    t->m.vals[ms] = (uint64_t)s;
    heap_down(t, 0);
}

typedef struct pair {
    uint64_t id, cnt, err;
} pair;

static int cmp_pair(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->cnt != y->cnt) return x->cnt > y->cnt ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* All counters of a table, sorted by count descending, id ascending. */
static ember_status table_pairs(ember_memory *mm, const ftable *t, pair **out, int64_t *n) {
    int64_t cnt = t->exact ? (int64_t)t->m.used : t->n;
    pair *p;
    EMBER_TRY(ember__ds_alloc(mm, (size_t)(cnt ? cnt : 1) * sizeof *p, (void **)&p));
    int64_t j = 0;
    if (t->exact) {
        for (uint64_t i = 0; i < t->m.cap; i++)
            if (t->m.keys[i] != EMPTY) p[j++] = (pair){t->m.keys[i], t->m.vals[i], 0};
    } else {
        for (int64_t s = 0; s < t->n; s++) p[j++] = (pair){t->sid[s], t->scnt[s], t->serr[s]};
    }
    qsort(p, (size_t)j, sizeof *p, cmp_pair);
    *out = p;
    *n = j;
    return EMBER_OK;
}

/* Switch an exact table to Space-Saving, keeping its top k counts. */
static ember_status to_space_saving(ember_freq *f, ftable *t) {
    pair *p;
    int64_t n;
    EMBER_TRY(table_pairs(f->mm, t, &p, &n));
    size_t old_bytes = t->m.cap * 16;
    uint64_t mapcap = 16;
    while (mapcap < (uint64_t)f->hh * 2) mapcap *= 2;
    u64map nm;
    ember_status st = map_init(f->mm, &nm, mapcap);
    if (st == EMBER_OK) {
        map_free(f->mm, &t->m);
        __atomic_fetch_sub(&f->used_bytes, old_bytes, __ATOMIC_RELAXED);
        t->m = nm;
        st = ss_alloc(f->mm, t, f->hh);
    }
    for (int64_t i = 0; i < n && i < f->hh && st == EMBER_OK; i++) st = ss_push(f->mm, t, p[i].id, p[i].cnt, 0);
    ember__ds_free(f->mm, p);
    if (st == EMBER_OK) {
        t->exact = 0;
        ember_log(EMBER_LOG_INFO, "ember_freq: a table passed the memory cap; it keeps %lld heavy hitters", (long long)f->hh);
    }
    return st;
}

static ember_status table_add(ember_freq *f, ftable *t, uint64_t id) {
    t->lookups++;
    hll_add(t->hll, id);
    if (!t->exact) {
        ss_add(t, id);
        return EMBER_OK;
    }
    if ((t->m.used + 1) * 2 > t->m.cap) {
        size_t grow = t->m.cap * 16; /* doubling adds the old size again */
        size_t now = __atomic_load_n(&f->used_bytes, __ATOMIC_RELAXED);
        int fits = 0;
        while (now + grow <= f->cap_bytes) {
            if (__atomic_compare_exchange_n(&f->used_bytes, &now, now + grow, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                fits = 1;
                break;
            }
        }
        if (fits) {
            ember_status st = map_rehash(f->mm, &t->m, t->m.cap * 2);
            if (st != EMBER_OK) {
                __atomic_fetch_sub(&f->used_bytes, grow, __ATOMIC_RELAXED);
                return st;
            }
        } else {
            EMBER_TRY(to_space_saving(f, t));
            ss_add(t, id);
            return EMBER_OK;
        }
    }
    int ins;
    uint64_t s = map_slot(&t->m, id, &ins);
    t->m.vals[s]++;
    return EMBER_OK;
}

/* ---- public API ---- */

void ember_freq_destroy(ember_freq *f) {
    if (!f) return;
    for (int i = 0; f->t && i < f->num_tables; i++) {
        map_free(f->mm, &f->t[i].m);
        ss_free(f->mm, &f->t[i]);
    }
    free(f->t);
    free(f);
}

ember_status ember_freq_create(const ember_freq_params *p, ember_freq **out) {
    EMBER_CHECK_NULL(p, "ember_freq_create");
    EMBER_CHECK_NULL(out, "ember_freq_create");
    *out = NULL;
    if (p->num_tables <= 0 || p->num_tables > 65536)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_freq_create: num_tables %d (1..65536)", p->num_tables);
    if (p->heavy_hitters < 0 || p->heavy_hitters > (INT64_C(1) << 32))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_freq_create: heavy_hitters %lld", (long long)p->heavy_hitters);
    ember_freq *f = calloc(1, sizeof *f);
    if (!f) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_freq_create");
    f->mm = p->mm;
    f->num_tables = p->num_tables;
    f->cap_bytes = p->memory_cap ? p->memory_cap : (size_t)1 << 30;
    f->hh = p->heavy_hitters ? p->heavy_hitters : 65536;
    f->t = calloc((size_t)p->num_tables, sizeof *f->t);
    ember_status st = f->t ? EMBER_OK : ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_freq_create");
    for (int i = 0; i < p->num_tables && st == EMBER_OK; i++) {
        f->t[i].exact = 1;
        st = map_init(f->mm, &f->t[i].m, 64);
        f->used_bytes += 64 * 16;
    }
    if (st != EMBER_OK) {
        ember_freq_destroy(f);
        return st;
    }
    *out = f;
    return EMBER_OK;
}

ember_status ember_freq_add(ember_freq *f, int table, const int64_t *ids, int64_t n) {
    EMBER_CHECK_NULL(f, "ember_freq_add");
    if (table < 0 || table >= f->num_tables)
        return ember__error(EMBER_ERR_INDEX, "ember_freq_add: table %d of %d", table, f->num_tables);
    if (n < 0 || (n > 0 && !ids)) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_freq_add: %lld ids", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0)
            return ember__error(EMBER_ERR_INDEX, "ember_freq_add: table %d id %lld is negative (position %lld)", table,
                                (long long)ids[i], (long long)i);
        EMBER_TRY(table_add(f, &f->t[table], (uint64_t)ids[i]));
    }
    return EMBER_OK;
}

ember_status ember_freq_add_rows(ember_freq *f, const uint32_t *sparse, int64_t n) {
    EMBER_CHECK_NULL(f, "ember_freq_add_rows");
    if (f->num_tables != EMBER_CRITEO_NUM_SPARSE)
        return ember__error(EMBER_ERR_SHAPE, "ember_freq_add_rows: counter has %d tables, Criteo rows have 26", f->num_tables);
    if (n < 0 || (n > 0 && !sparse)) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_freq_add_rows: %lld rows", (long long)n);
    ember_status st[EMBER_CRITEO_NUM_SPARSE];
    /* Tables are independent: one per thread. */
#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < EMBER_CRITEO_NUM_SPARSE; t++) {
        st[t] = EMBER_OK;
        for (int64_t i = 0; i < n && st[t] == EMBER_OK; i++)
            st[t] = table_add(f, &f->t[t], sparse[i * EMBER_CRITEO_NUM_SPARSE + t]);
    }
    for (int t = 0; t < EMBER_CRITEO_NUM_SPARSE; t++)
        if (st[t] != EMBER_OK) return ember__error(st[t], "ember_freq_add_rows: counting table %d failed", t);
    return EMBER_OK;
}

int ember_freq_num_tables(const ember_freq *f) { return f ? f->num_tables : 0; }

ember_status ember_freq_get_table_stats(const ember_freq *f, int table, ember_freq_table_stats *out) {
    EMBER_CHECK_NULL(f, "ember_freq_get_table_stats");
    EMBER_CHECK_NULL(out, "ember_freq_get_table_stats");
    if (table < 0 || table >= f->num_tables)
        return ember__error(EMBER_ERR_INDEX, "ember_freq_get_table_stats: table %d of %d", table, f->num_tables);
    const ftable *t = &f->t[table];
    out->lookups = t->lookups;
    out->exact = t->exact;
    out->entries = t->exact ? (int64_t)t->m.used : t->n;
    out->distinct = t->exact ? t->m.used : (uint64_t)llround(hll_estimate(t->hll));
    if (!t->exact && out->distinct < (uint64_t)t->n) out->distinct = (uint64_t)t->n;
    return EMBER_OK;
}

uint64_t ember_freq_count(const ember_freq *f, int table, int64_t id) {
    if (!f || table < 0 || table >= f->num_tables || id < 0) return 0;
    const ftable *t = &f->t[table];
    const uint64_t *v = map_find(&t->m, (uint64_t)id);
    if (!v) return 0;
    return t->exact ? *v : t->scnt[*v];
}

ember_status ember_freq_top(const ember_freq *f, int table, int64_t k, ember_freq_entry *out, int64_t *n) {
    EMBER_CHECK_NULL(f, "ember_freq_top");
    EMBER_CHECK_NULL(n, "ember_freq_top");
    if (table < 0 || table >= f->num_tables) return ember__error(EMBER_ERR_INDEX, "ember_freq_top: table %d of %d", table, f->num_tables);
    if (k < 0 || (k > 0 && !out)) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_freq_top: k %lld", (long long)k);
    pair *p;
    int64_t np;
    EMBER_TRY(table_pairs(f->mm, &f->t[table], &p, &np));
    *n = np < k ? np : k;
    for (int64_t i = 0; i < *n; i++) out[i] = (ember_freq_entry){(int64_t)p[i].id, p[i].cnt, p[i].err};
    ember__ds_free(f->mm, p);
    return EMBER_OK;
}

ember_status ember_freq_skew(const ember_freq *f, int table, int n, const double *fractions, double *shares) {
    EMBER_CHECK_NULL(f, "ember_freq_skew");
    if (table < 0 || table >= f->num_tables) return ember__error(EMBER_ERR_INDEX, "ember_freq_skew: table %d of %d", table, f->num_tables);
    if (n < 0 || (n > 0 && (!fractions || !shares))) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_freq_skew: n %d", n);
    ember_freq_table_stats ts;
    EMBER_TRY(ember_freq_get_table_stats(f, table, &ts));
    pair *p;
    int64_t np;
    EMBER_TRY(table_pairs(f->mm, &f->t[table], &p, &np));
    for (int k = 0; k < n; k++) {
        double want = ceil(fractions[k] * (double)ts.distinct);
        uint64_t sum = 0;
        for (int64_t i = 0; i < np && (double)i < want; i++) sum += p[i].cnt;
        shares[k] = ts.lookups ? (double)sum / (double)ts.lookups : 0.0;
        if (shares[k] > 1) shares[k] = 1;
    }
    ember__ds_free(f->mm, p);
    return EMBER_OK;
}

/* ---- file ---- */



typedef struct wbuf {
    FILE *f;
    uint64_t h;
    int err;
} wbuf;

static void put(wbuf *w, const void *p, size_t n) {
    if (w->err) return;
    w->h = ember__fnv1a(w->h, p, n);
    if (fwrite(p, 1, n, w->f) != n) w->err = errno ? errno : EIO;
}

static void put_u64(wbuf *w, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 8);
}

static void put_u32(wbuf *w, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 4);
}

ember_status ember_freq_save(const ember_freq *f, const char *path) {
    EMBER_CHECK_NULL(f, "ember_freq_save");
    EMBER_CHECK_NULL(path, "ember_freq_save");
    char tmp[1100];
    if (strlen(path) > 1000) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_freq_save: path too long");
    ember__temp_path(tmp, sizeof tmp, path);
    wbuf w = {fopen(tmp, "wb"), EMBER__FNV_INIT, 0};
    if (!w.f) return ember__error(EMBER_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    put(&w, MAGIC, 8);
    put_u32(&w, EMBER_FREQ_VERSION);
    put_u32(&w, (uint32_t)f->num_tables);
    put_u64(&w, 0);
    ember_status st = EMBER_OK;
    for (int i = 0; i < f->num_tables && st == EMBER_OK; i++) {
        const ftable *t = &f->t[i];
        ember_freq_table_stats ts;
        ember_freq_get_table_stats(f, i, &ts);
        pair *p;
        int64_t n;
        st = table_pairs(f->mm, t, &p, &n);
        if (st != EMBER_OK) break;
        put_u32(&w, (uint32_t)t->exact);
        put_u32(&w, 0);
        put_u64(&w, t->lookups);
        put_u64(&w, ts.distinct);
        put_u64(&w, (uint64_t)n);
        put(&w, t->hll, HLL_M);
        for (int64_t k = 0; k < n; k++) {
            put_u64(&w, p[k].id);
            put_u64(&w, p[k].cnt);
            put_u64(&w, p[k].err);
        }
        ember__ds_free(f->mm, p);
    }
    uint64_t h = w.h;
    put_u64(&w, h);
    if (st == EMBER_OK && (w.err || fflush(w.f) != 0 || fsync(fileno(w.f)) != 0))
        st = ember__error(EMBER_ERR_IO, "writing %s: %s", tmp, strerror(w.err ? w.err : errno));
    if (fclose(w.f) != 0 && st == EMBER_OK) st = ember__error(EMBER_ERR_IO, "closing %s: %s", tmp, strerror(errno));
    if (st == EMBER_OK && rename(tmp, path) != 0)
        st = ember__error(EMBER_ERR_IO, "renaming %s to %s: %s", tmp, path, strerror(errno));
    if (st != EMBER_OK) unlink(tmp);
    return st;
}

static uint64_t get_u64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static uint32_t get_u32(const unsigned char *b) { return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24; }

ember_status ember_freq_load(const char *path, ember_memory *mm, ember_freq **out) {
    EMBER_CHECK_NULL(path, "ember_freq_load");
    EMBER_CHECK_NULL(out, "ember_freq_load");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ember__error(EMBER_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    if (len < 0) {
        fclose(fp);
        return ember__error(EMBER_ERR_IO, "%s: cannot tell its size", path);
    }
    unsigned char *b;
    ember_status ast = ember__ds_alloc(mm, (size_t)len + 1, (void **)&b);
    if (ast != EMBER_OK) {
        fclose(fp);
        return ast;
    }
    size_t got = fread(b, 1, (size_t)len, fp);
    fclose(fp);
    ember_status st = EMBER_OK;
    size_t L = (size_t)len;
    if (got != L) st = ember__error(EMBER_ERR_IO, "reading %s: short read", path);
    else if (L < 32 || memcmp(b, MAGIC, 8) != 0) st = ember__error(EMBER_ERR_FORMAT, "%s: not an ember frequency file (no EMBRFREQ magic)", path);
    else if (get_u32(b + 8) != EMBER_FREQ_VERSION)
        st = ember__error(EMBER_ERR_FORMAT, "%s: frequency file version %u, this ember reads %d", path, get_u32(b + 8), EMBER_FREQ_VERSION);
    else if (ember__fnv1a(EMBER__FNV_INIT, b, L - 8) != get_u64(b + L - 8))
        st = ember__error(EMBER_ERR_CHECKSUM, "%s: checksum mismatch (file damaged or truncated)", path);
    ember_freq *f = NULL;
    if (st == EMBER_OK) {
        uint32_t nt = get_u32(b + 12);
        st = ember_freq_create(&(ember_freq_params){.num_tables = (int)nt, .mm = mm, .memory_cap = SIZE_MAX / 2}, &f);
        if (st == EMBER_OK) f->cap_bytes = (size_t)1 << 30;
    }
    size_t at = 24;
    for (int i = 0; st == EMBER_OK && i < f->num_tables; i++) {
        if (at + 32 + HLL_M > L - 8) {
            st = ember__error(EMBER_ERR_FORMAT, "%s: table %d record truncated", path, i);
            break;
        }
        ftable *t = &f->t[i];
        uint32_t exact = get_u32(b + at);
        uint64_t lookups = get_u64(b + at + 8), n = get_u64(b + at + 24);
        at += 32;
        memcpy(t->hll, b + at, HLL_M);
        at += HLL_M;
        if (n > (L - 8 - at) / 24) {
            st = ember__error(EMBER_ERR_FORMAT, "%s: table %d claims %llu entries beyond the file's size", path, i,
                              (unsigned long long)n);
            break;
        }
        t->lookups = lookups;
        uint64_t cap = 64;
        while (cap < 2 * n + 2) cap *= 2;
        size_t old = t->m.cap * 16;
        map_free(f->mm, &t->m);
        f->used_bytes -= old;
        st = map_init(f->mm, &t->m, cap);
        if (st != EMBER_OK) break;
        if (exact) {
            f->used_bytes += cap * 16;
            for (uint64_t k = 0; k < n; k++) {
                int ins;
                uint64_t s = map_slot(&t->m, get_u64(b + at + 24 * k), &ins);
                t->m.vals[s] = get_u64(b + at + 24 * k + 8);
            }
        } else {
            t->exact = 0;
            if ((int64_t)n > f->hh) f->hh = (int64_t)n;
            st = ss_alloc(f->mm, t, (int64_t)(n > 0 ? n : 1));
            for (uint64_t k = 0; k < n && st == EMBER_OK; k++)
                st = ss_push(f->mm, t, get_u64(b + at + 24 * k), get_u64(b + at + 24 * k + 8), get_u64(b + at + 24 * k + 16));
        }
        at += 24 * n;
    }
    if (st == EMBER_OK && at != L - 8) st = ember__error(EMBER_ERR_FORMAT, "%s: %zu unexpected bytes before the checksum", path, L - 8 - at);
    ember__ds_free(mm, b);
    if (st != EMBER_OK) {
        ember_freq_destroy(f);
        return st;
    }
    *out = f;
    return EMBER_OK;
}
