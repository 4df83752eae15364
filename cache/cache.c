/*
 * The embedding cache: configuration, the prepare pipeline and the public calls.
 *
 * One worker thread owns every piece of mutable cache state (maps, heaps, slots,
 * store transactions); the driving thread only queues batches, takes prepared ones
 * and hands them back, under one mutex. That is what makes pipelining safe without
 * locks in the data path: while the caller's kernels read and update the slots of
 * batch k, the worker only ever touches slots no batch in flight holds (victims are
 * drawn from the heap of unpinned slots), and the happens-before of the mutex orders
 * the two. It also gives LMDB what it needs: a write transaction used by one thread.
 *
 * A prepare first plans without changing anything (lookups, and a capacity check
 * that tells a prepare that must wait for earlier batches apart from one that can
 * never fit), then takes victims, moves the blocks, and only then binds ids to slots.
 * Any failure before the bind is undone, so a failed batch leaves the cache exactly
 * as it was.
 */
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "engine/internal.h"
#include "embedding/ebc_math.h"
#include "ember/ember.h"
#include "ember/profiler.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

#define DEFAULT_AGING 100
#define DEFAULT_MAP_SIZE ((size_t)64 << 30)
#define MAX_LOOKAHEAD 16
#define EXTRA_OUTSTANDING 4
#define ROW_IO_CHUNK 1024
#define WARMUP_CHUNK 65536

/* Per-table plan of one block load (prepare misses, warm-up). */
typedef struct ember__load {
    int64_t n;            /* rows to load */
    const int64_t *ids;   /* (n,) */
    const uint32_t *cnt;  /* (n,) initial counts, or NULL */
    int32_t *vict;        /* (n,) slots chosen */
    int64_t *vold;        /* (n,) their previous ids (-1: free) */
    int32_t *wbs;         /* dirty victims: slots */
    int64_t *wbi;         /* and ids */
    int64_t nwb;
    size_t off_out, off_in;
} ember__load;

static const char *policy_names[EMBER_CACHE_POLICY_COUNT] = {"lfu", "lru", "static"};
static const char *store_names[EMBER_CACHE_STORE_COUNT] = {"host", "lmdb"};
static const char *link_names[EMBER_CACHE_LINK_COUNT] = {"host_to_device", "device_to_host",
                                                         "disk_to_host", "host_to_disk"};
static const char *phase_names[EMBER_CACHE_PHASE_COUNT] = {
    "analyze", "plan", "writeback", "read", "load", "remap", "wait", "flush"};

const char *ember_cache_policy_name(ember_cache_policy p) {
    return (unsigned)p < EMBER_CACHE_POLICY_COUNT ? policy_names[p] : "invalid";
}
const char *ember_cache_store_name(ember_cache_store s) {
    return (unsigned)s < EMBER_CACHE_STORE_COUNT ? store_names[s] : "invalid";
}
const char *ember_cache_link_name(ember_cache_link l) {
    return (unsigned)l < EMBER_CACHE_LINK_COUNT ? link_names[l] : "invalid";
}
const char *ember_cache_phase_name(ember_cache_phase p) {
    return (unsigned)p < EMBER_CACHE_PHASE_COUNT ? phase_names[p] : "invalid";
}
ember_status ember_cache_policy_parse(const char *s, ember_cache_policy *out) {
    EMBER_CHECK_NULL(s, "ember_cache_policy_parse");
    EMBER_CHECK_NULL(out, "ember_cache_policy_parse");
    for (int i = 0; i < EMBER_CACHE_POLICY_COUNT; i++)
        if (strcmp(s, policy_names[i]) == 0) {
            *out = (ember_cache_policy)i;
            return EMBER_OK;
        }
    return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_cache_policy_parse: \"%s\" is not a policy "
                        "(lfu, lru, static)", s);
}

static ember__cbatch *ring_at(ember_cache *c, int64_t seq) { return &c->ring[seq % c->ring_cap]; }

static void capture(char *dst, size_t n) { snprintf(dst, n, "%s", ember_last_error()); }

/* The last error again, with "what: " in front of its text (status kept). */
static ember_status rewrap(ember_status st, const char *what) {
    char msg[1024];
    capture(msg, sizeof msg);
    const char *text = msg, *name = ember_status_name(st);
    size_t nl = strlen(name);
    if (strncmp(msg, name, nl) == 0 && msg[nl] == ':' && msg[nl + 1] == ' ') text = msg + nl + 2;
    return ember__error(st, "%s: %s", what, text);
}

/* Worker: make the counters visible to get_stats. */
static void publish(ember_cache *c) {
    int64_t used = 0, dirty = 0;
    for (int t = 0; t < c->nt; t++) {
        used += c->t[t].ident ? c->t[t].nloaded : c->t[t].dev.cap - c->t[t].dev.free_n;
        dirty += c->t[t].dev.ndirty;
    }
    c->wst.slots_used = used;
    c->wst.dirty = dirty;
    pthread_mutex_lock(&c->mu);
    c->pub = c->wst;
    pthread_mutex_unlock(&c->mu);
}

/* Worker: tell the profiler what a piece of work moved over the lower links, read as
   the growth of the byte counters since `before` (the tiers count them deep inside),
   over its time. A store exchange writes and reads in one transaction, so both of its
   directions are given its whole time: each link's achieved bandwidth is a lower bound. */
static void profile_links(const ember_cache *c, const int64_t *before, double t0, double t1) {
    static const ember_profiler_link links[EMBER_CACHE_LINK_COUNT] = {
        [EMBER_CACHE_LINK_HOST_TO_DEVICE] = EMBER_PROFILER_LINK_HOST_TO_DEVICE,
        [EMBER_CACHE_LINK_DEVICE_TO_HOST] = EMBER_PROFILER_LINK_DEVICE_TO_HOST,
        [EMBER_CACHE_LINK_DISK_TO_HOST] = EMBER_PROFILER_LINK_DISK_TO_HOST,
        [EMBER_CACHE_LINK_HOST_TO_DISK] = EMBER_PROFILER_LINK_HOST_TO_DISK};
    if (!ember_profiler_enabled()) return;
    for (int l = 0; l < EMBER_CACHE_LINK_COUNT; l++)
        if (c->wst.bytes[l] > before[l])
            ember_profiler_transfer(links[l], (uint64_t)(c->wst.bytes[l] - before[l]), t0, t1);
}

/* ---- jobs: calls the driving thread has the worker run, in order ---- */

static ember_status run_job(ember_cache *c, ember_status (*fn)(ember_cache *, void *), void *arg) {
    ember__job j = {.fn = fn, .arg = arg};
    pthread_mutex_lock(&c->mu);
    while (c->job) pthread_cond_wait(&c->cv_u, &c->mu);
    c->job = &j;
    pthread_cond_signal(&c->cv_w);
    while (!j.done) pthread_cond_wait(&c->cv_u, &c->mu);
    c->job = NULL;
    pthread_cond_broadcast(&c->cv_u);
    pthread_mutex_unlock(&c->mu);
    if (j.st != EMBER_OK) return ember__reraise(j.st, j.err);
    return EMBER_OK;
}

/* ---- releases ---- */

static void advance_retired(ember_cache *c) {
    while (c->n_ret < c->n_hand && ring_at(c, c->n_ret)->state == EMBER__B_FREE) c->n_ret++;
}

static int releases_pending(ember_cache *c) {
    for (int64_t s = c->n_ret; s < c->n_hand; s++)
        if (ring_at(c, s)->state == EMBER__B_RELEASING) return 1;
    return 0;
}

/* Worker: unpin the slots of released batches (dirty when they were updated). */
static void process_releases(ember_cache *c) {
    ember__cbatch *todo[MAX_LOOKAHEAD + EXTRA_OUTSTANDING + 1];
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (int64_t s = c->n_ret; s < c->n_hand && n < c->ring_cap; s++)
        if (ring_at(c, s)->state == EMBER__B_RELEASING) todo[n++] = ring_at(c, s);
    pthread_mutex_unlock(&c->mu);
    if (n == 0) return;
    for (int i = 0; i < n; i++) {
        ember__cbatch *b = todo[i];
#ifdef EMBER_HAVE_CUDA
        /* later copies into these slots wait for the batch's kernels */
        if (c->cuda && b->done) (void)ember_stream_wait_event(c->copy, b->done);
#endif
        for (int t = 0; t < c->nt; t++) {
            ember__ctable *tb = &c->t[t];
            ember__slots *s = &tb->dev;
            const ember__cfeat *f = &b->f[t];
            if (tb->ident) {
                /* its rows were updated in place: mark them dirty from the batch's ids */
                if (!b->updated) continue;
                const char *base = c->cuda ? (const char *)b->pin.p : (const char *)b->dev.p;
                const int64_t *ids =
                    (const int64_t *)(base + ((const char *)b->out[t].values - (const char *)b->dev.p));
                for (int64_t p = f->off0; p < f->off0 + f->n_used; p++) tb->loaded[ids[p]] = 3;
                continue;
            }
            for (int64_t u = 0; u < f->nuniq; u++) {
                if (u + EMBER__PF_AHEAD < f->nuniq) __builtin_prefetch(&s->m[f->uslot[u + EMBER__PF_AHEAD]], 1);
                int32_t slot = f->uslot[u];
                if (b->updated) ember__slots_set_dirty(s, slot, 1);
                ember__slots_unpin(s, slot);
            }
        }
    }
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++) todo[i]->state = EMBER__B_FREE;
    advance_retired(c);
    pthread_cond_broadcast(&c->cv_u);
    pthread_mutex_unlock(&c->mu);
}

/* ---- analysis: checks, unique ids, inverse map ---- */

static void future_update(ember_cache *c, ember__cbatch *b, int32_t delta, ember_status *st) {
    for (int t = 0; t < c->nt; t++) {
        const ember__cfeat *f = &b->f[t];
        for (int64_t u = 0; u < f->nuniq; u++) {
            ember_status s = ember__idmap_add(&c->t[t].future, f->uniq[u], delta);
            if (s != EMBER_OK && st && *st == EMBER_OK) *st = s;
        }
    }
}

/* The check of embedding/ words the message (table, sample, position). */
static ember_status bad_feature(ember_cache *c, const ember__cbatch *b, int t) {
    ember_status st = ember__jagged_check_feature("ember_cache_next", t, c->t[t].name, &b->in[t], b->B,
                                                  c->t[t].rows);
    if (st != EMBER_OK) return st;
    return ember__error(EMBER_ERR_INTERNAL, "ember_cache_next: table %d: a bad id the batch check "
                        "does not find", t);
}

typedef struct dedup_ent {
    int64_t key;
    int32_t val;
    uint32_t gen; /* the table's entry is live when gen is the current generation */
} dedup_ent;

static ember_status analyze(ember_cache *c, ember__cbatch *b, int register_future) {
    static const char fn[] = "ember_cache_next";
    double t0 = ember__now();
    const int nt = c->nt;
    const int64_t B = b->B;
    size_t need = 0;
    for (int t = 0; t < nt; t++) {
        const ember_jagged_feature *in = &b->in[t];
        const int64_t *off = in->offsets;
        int bad = off[0] < 0 || off[B] > in->length || off[B] < off[0];
        for (int64_t i = 0; i < B && !bad; i++) bad = off[i + 1] < off[i];
        if (bad) return bad_feature(c, b, t);
        int64_t n = off[B] - off[0];
        b->f[t].off0 = off[0];
        b->f[t].n_used = n;
        need += (size_t)n * (sizeof(int64_t) + sizeof(uint32_t) + 2 * sizeof(int32_t)) + 32;
    }
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, &b->meta, need));
    char *p = b->meta.p;
    for (int t = 0; t < nt; t++) {
        ember__cfeat *f = &b->f[t];
        size_t n = (size_t)f->n_used;
        f->uniq = (int64_t *)p;
        p += n * sizeof(int64_t);
        f->ucnt = (uint32_t *)p;
        p += n * sizeof(uint32_t);
        f->inv = (int32_t *)p;
        p += n * sizeof(int32_t);
        f->uslot = (int32_t *)p;
        p += n * sizeof(int32_t);
        p = (char *)(((uintptr_t)p + 7) & ~(uintptr_t)7);
        f->nuniq = f->nmiss = f->hits = f->uhits = 0;
    }
    /* one hash table per thread, sized for the largest table's lookups */
    const int nth = c->prep_threads < EMBER__DEDUP_MAX ? c->prep_threads : EMBER__DEDUP_MAX;
    int64_t nmax = 0;
    for (int t = 0; t < nt; t++) {
        if (c->t[t].ident) continue;
        if (b->f[t].n_used > INT32_MAX)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table %d: %lld ids in one batch; at most %d",
                                fn, t, (long long)b->f[t].n_used, INT32_MAX);
        if (b->f[t].n_used > nmax) nmax = b->f[t].n_used;
    }
    uint64_t cap = 16;
    while (cap < (uint64_t)nmax * 2) cap <<= 1;
    for (int i = 0; i < nth && nmax > 0; i++) {
        /* entries of older generations are empty: no clearing per batch */
        void *was = c->dedup[i].p;
        EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, &c->dedup[i],
                                     (size_t)cap * sizeof(dedup_ent)));
        if (c->dedup[i].p != was) {
            memset(c->dedup[i].p, 0, c->dedup[i].cap);
            c->dedup_gen[i] = 0;
        }
    }
    /* the tables in parallel (a bad id is found by every thread count; the first bad
       table in order is the one reported) */
    int bad = nt;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1) reduction(min : bad)
    for (int t = 0; t < nt; t++) {
        ember__cfeat *f = &b->f[t];
        const int64_t n = f->n_used;
        if (n == 0) continue;
        if (c->t[t].ident) { /* never evicted, so nothing to protect: the ids are checked */
            const int64_t *ids = b->in[t].values + f->off0;
            const uint64_t rows = (uint64_t)c->t[t].rows;
            for (int64_t i = 0; i < n; i++)
                if ((uint64_t)ids[i] >= rows) {
                    if (t < bad) bad = t;
                    break;
                }
            continue;
        }
#ifdef _OPENMP
        const int me = omp_get_thread_num();
#else
        const int me = 0;
#endif
        uint64_t tcap = 16;
        while (tcap < (uint64_t)n * 2) tcap <<= 1;
        int shift = 64;
        for (uint64_t x = tcap; x > 1; x >>= 1) shift--;
        if (++c->dedup_gen[me] == 0) { /* wrapped: every old entry would look live */
            memset(c->dedup[me].p, 0, c->dedup[me].cap);
            c->dedup_gen[me] = 1;
        }
        const uint32_t gen = c->dedup_gen[me];
        dedup_ent *e = c->dedup[me].p;
        const uint64_t mask = tcap - 1, rows = (uint64_t)c->t[t].rows;
        const int64_t *ids = b->in[t].values + f->off0;
        int64_t nu = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t id = ids[i];
            if ((uint64_t)id >= rows) {
                if (t < bad) bad = t;
                break;
            }
            uint64_t h = ((uint64_t)id * 0x9E3779B97F4A7C15ull) >> shift;
            for (;;) {
                dedup_ent *x = &e[h];
                if (x->gen != gen) {
                    *x = (dedup_ent){.key = id, .val = (int32_t)nu, .gen = gen};
                    f->uniq[nu] = id;
                    f->ucnt[nu] = 1;
                    f->inv[i] = (int32_t)nu;
                    nu++;
                    break;
                }
                if (x->key == id) {
                    f->inv[i] = x->val;
                    f->ucnt[x->val]++;
                    break;
                }
                h = (h + 1) & mask;
            }
        }
        f->nuniq = nu;
    }
    if (bad < nt) return bad_feature(c, b, bad);
    if (register_future) {
        ember_status st = EMBER_OK;
        future_update(c, b, 1, &st);
        b->registered = 1;
        if (st != EMBER_OK) {
            future_update(c, b, -1, NULL);
            b->registered = 0;
            return st;
        }
    }
    double dt = ember__now() - t0;
    b->prep_sec += dt;
    c->wst.seconds[EMBER_CACHE_PHASE_ANALYZE] += dt;
    return EMBER_OK;
}

/* ---- block loads ---- */

static int is_future(const ember_cache *c, int t, int64_t id) {
    const ember__idmap *m = &c->t[t].future;
    return m->n > 0 && ember__idmap_find(m, id) >= 0;
}

/* Give the victims chosen for tables [0, upto) back: to the heap, or the free list. */
static void undo_victims(ember_cache *c, int upto, int unused) {
    (void)unused;
    for (int t = 0; t < upto; t++) {
        ember__slots *s = &c->t[t].dev;
        const ember__load *l = &c->ld[t];
        if (c->t[t].ident) continue; /* its slots are its rows: nothing was taken */
        for (int64_t i = l->n - 1; i >= 0; i--) {
            if (l->vold[i] >= 0) ember__slots_push(s, l->vict[i]);
            else s->freel[s->free_n++] = l->vict[i];
        }
    }
}

/* After the rows moved: dirty victims are clean (written back), every loaded slot is
   bound to its id, pinned and in the heap. */
static ember_status bind_loaded(ember_cache *c, int64_t stamp, double t3) {
    const int nt = c->nt;
    ember__load *ld = c->ld;
    /* the written-back rows are clean now, whatever happens next */
    for (int t = 0; t < nt; t++) {
        const int64_t rb = (int64_t)c->t[t].rb;
        for (int64_t i = 0; i < ld[t].nwb; i++) ember__slots_set_dirty(&c->t[t].dev, ld[t].wbs[i], 0);
        c->wst.rows[EMBER_CACHE_LINK_DEVICE_TO_HOST] += ld[t].nwb;
        c->wst.bytes[EMBER_CACHE_LINK_DEVICE_TO_HOST] += ld[t].nwb * rb;
        c->wst.writebacks += ld[t].nwb;
        c->wst.rows[EMBER_CACHE_LINK_HOST_TO_DEVICE] += ld[t].n;
        c->wst.bytes[EMBER_CACHE_LINK_HOST_TO_DEVICE] += ld[t].n * rb;
    }
    /* bind and pin */
    for (int t = 0; t < nt; t++) {
        ember__ctable *tb = &c->t[t];
        ember__slots *s = &tb->dev;
        ember__load *l = &ld[t];
        if (tb->ident) {
            for (int64_t k = 0; k < l->n; k++) tb->loaded[l->ids[k]] = 1;
            tb->nloaded += l->n;
            continue;
        }
        for (int64_t k = 0; k < l->n; k++) {
            uint32_t cnt = l->cnt ? l->cnt[k] : 0;
            if (s->policy == EMBER_CACHE_POLICY_LFU && !l->cnt) cnt = 1;
            EMBER_TRY(ember__slots_bind(s, l->vict[k], l->ids[k], stamp, cnt));
            ember__slots_push(s, l->vict[k]);
            ember__slots_pin(s, l->vict[k]);
            if (l->vold[k] >= 0) c->wst.evictions++;
        }
    }
    c->wst.seconds[EMBER_CACHE_PHASE_LOAD] += ember__now() - t3;
    return EMBER_OK;
}


/* Table t's victims for its ld[t].n rows: free slots first, then the heap's least;
   rows pinned by batches in flight are set aside, and so are rows of batches submitted
   ahead, which are taken only when nothing else is left. Touches only table t's slots
   and load record (aside: 2 x its capacity of scratch, needed when the free slots do
   not cover the rows). Returns 0, or -1 with ld[t].n cut to the victims taken (cannot
   happen after the capacity check). */
static int take_victims(ember_cache *c, int t, int32_t *aside, int64_t *protected_evictions) {
    ember__ctable *tb = &c->t[t];
    ember__slots *s = &tb->dev;
    ember__load *l = &c->ld[t];
    l->nwb = 0;
    if (tb->ident) { /* row i goes to slot i */
        for (int64_t k = 0; k < l->n; k++) {
            l->vict[k] = (int32_t)l->ids[k];
            l->vold[k] = -1;
        }
        return 0;
    }
    int64_t npin = 0, nfut = 0;
    int32_t *pinned = aside, *future = aside ? aside + s->cap : NULL;
    int failed = 0;
    for (int64_t k = 0; k < l->n; k++) {
        int32_t slot = -1;
        int64_t old = -1;
        if (s->free_n > 0) {
            slot = s->freel[--s->free_n];
        } else {
            while ((slot = ember__slots_pop(s)) >= 0) {
                if (s->m[slot].pin > 0) pinned[npin++] = slot;
                else if (is_future(c, t, s->m[slot].id)) future[nfut++] = slot;
                else break;
            }
            if (slot < 0 && nfut > 0) {
                slot = future[--nfut];
                (*protected_evictions)++;
            }
            if (slot >= 0) old = s->m[slot].id;
        }
        if (slot < 0) {
            l->n = k;
            failed = 1;
            break;
        }
        l->vict[k] = slot;
        l->vold[k] = old;
        if (old >= 0 && s->m[slot].dirty) {
            l->wbs[l->nwb] = slot;
            l->wbi[l->nwb] = old;
            l->nwb++;
        }
    }
    for (int64_t i = 0; i < npin; i++) ember__slots_push(s, pinned[i]);
    for (int64_t i = 0; i < nfut; i++) ember__slots_push(s, future[i]);
    return failed ? -1 : 0;
}

/* Load ld[t].n rows of every table into slots: victims by policy (take_victims, the
   tables on the prepare's threads: each touches only its own slots, so the victims do
   not depend on the thread count), dirty victims gathered and written down with the
   reads of the missed rows in one exchange, the rows copied up in one block, then each
   slot bound to its id and pinned. The caller guarantees room (free + heap >= n). On
   failure the victims go back where they were. */
static ember_status load_block(ember_cache *c, int buf, int64_t stamp) {
    const int nt = c->nt;
    ember__load *ld = c->ld;
    double t0 = ember__now();
    int64_t most = 0;
    int need_aside = 0;
    for (int t = 0; t < nt; t++) {
        most = c->t[t].dev.cap > most ? c->t[t].dev.cap : most;
        need_aside |= !c->t[t].ident && ld[t].n > 0 && ld[t].n > c->t[t].dev.free_n;
    }
    int nth = c->prep_threads < nt ? c->prep_threads : nt;
    if (nth < 1) nth = 1;
    int32_t *aside = NULL;
    if (need_aside) {
        EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, &c->xs,
                                     (size_t)nth * 2 * (size_t)most * sizeof(int32_t) + 64));
        aside = c->xs.p;
    }
    int bad = nt;
    int64_t protected_evictions = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1) reduction(min : bad) \
    reduction(+ : protected_evictions)
    for (int t = 0; t < nt; t++) {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        if (take_victims(c, t, aside ? aside + (size_t)me * 2 * (size_t)most : NULL, &protected_evictions) != 0 &&
            t < bad)
            bad = t;
    }
    c->wst.protected_evictions += protected_evictions;
    if (bad < nt) {
        int64_t got = ld[bad].n;
        undo_victims(c, nt, 0);
        return ember__error(EMBER_ERR_INTERNAL, "ember_cache: table %d: no victim left after %lld rows", bad,
                            (long long)got);
    }
    size_t out_bytes = 0, in_bytes = 0;
    for (int t = 0; t < nt; t++) {
        ld[t].off_out = out_bytes;
        out_bytes += (size_t)ld[t].nwb * c->t[t].rb;
    }
    for (int t = 0; t < nt; t++) {
        ld[t].off_in = in_bytes;
        in_bytes += (size_t)ld[t].n * c->t[t].rb;
    }
    double t1 = ember__now();
    c->wst.seconds[EMBER_CACHE_PHASE_PLAN] += t1 - t0;

    ember_status st = EMBER_OK;
    if (!c->cuda && c->store == EMBER_CACHE_STORE_HOST) {
        /* The slots and the host store are both DRAM here: each row moves once, straight
           between them (a staging block would only add a copy). */
        for (int t = 0; t < nt; t++) {
            const ember__ctable *tb = &c->t[t];
            const size_t rb = tb->rb;
            for (int64_t i = 0; i < ld[t].nwb; i++)
                ember__host_put(c, t, ld[t].wbi[i], tb->slots + (size_t)ld[t].wbs[i] * rb);
        }
        double t2 = ember__now();
        c->wst.seconds[EMBER_CACHE_PHASE_WRITEBACK] += t2 - t1;
        ember_profiler_transfer(EMBER_PROFILER_LINK_DEVICE_TO_HOST, out_bytes, t1, t2);
        for (int t = 0; t < nt; t++) {
            const ember__ctable *tb = &c->t[t];
            const size_t rb = tb->rb;
            for (int64_t k = 0; k < ld[t].n; k++) {
                if (k + EMBER__PF_AHEAD < ld[t].n) ember__host_prefetch(c, t, ld[t].ids[k + EMBER__PF_AHEAD]);
                ember__host_get(c, t, ld[t].ids[k], tb->slots + (size_t)ld[t].vict[k] * rb);
            }
        }
        double t3 = ember__now();
        c->wst.seconds[EMBER_CACHE_PHASE_READ] += t3 - t2;
        ember_profiler_transfer(EMBER_PROFILER_LINK_HOST_TO_DEVICE, in_bytes, t2, t3);
        return bind_loaded(c, stamp, t3);
    }
    st = ember__buf_reserve(c->mm, EMBER_TIER_PINNED, EMBER_MEM_STAGING, &c->stage[buf],
                            out_bytes + in_bytes + 64);
#ifdef EMBER_HAVE_CUDA
    /* the block of two prepares ago may still be on its way up */
    if (st == EMBER_OK && c->cuda && c->stage_ev[buf]) st = ember_event_synchronize(c->stage_ev[buf]);
#endif
    char *outb = st == EMBER_OK ? c->stage[buf].p : NULL;
    char *inb = outb ? outb + out_bytes : NULL;
    /* dirty victims down: one gather into the staging block */
    if (st == EMBER_OK) {
        for (int t = 0; t < nt; t++) c->sset[t] = (ember__slotset){ld[t].nwb, ld[t].wbs, ld[t].off_out};
        st = ember__dev_gather(c, c->sset, outb, out_bytes, buf);
    }
    double t2 = ember__now();
    c->wst.seconds[EMBER_CACHE_PHASE_WRITEBACK] += t2 - t1;
    if (st == EMBER_OK) ember_profiler_transfer(EMBER_PROFILER_LINK_DEVICE_TO_HOST, out_bytes, t1, t2);
    int64_t before[EMBER_CACHE_LINK_COUNT];
    memcpy(before, c->wst.bytes, sizeof before);
    /* the lower tiers: the dirty block written, the missed rows read, one transaction */
    if (st == EMBER_OK) {
        for (int t = 0; t < nt; t++) {
            c->wset[t] = (ember__rowset){ld[t].nwb, ld[t].wbi, outb + ld[t].off_out};
            c->rset[t] = (ember__rowset){ld[t].n, ld[t].ids, inb + ld[t].off_in};
        }
        st = ember__lower_exchange(c, c->wset, c->rset);
    }
    double t3 = ember__now();
    c->wst.seconds[EMBER_CACHE_PHASE_READ] += t3 - t2;
    profile_links(c, before, t2, t3);
    if (st != EMBER_OK) {
        undo_victims(c, nt, 0);
        return st;
    }
    /* missed rows up: one block into the victims' slots */
    for (int t = 0; t < nt; t++) c->sset[t] = (ember__slotset){ld[t].n, ld[t].vict, ld[t].off_in};
    st = ember__dev_scatter(c, c->sset, inb, in_bytes, buf);
#ifdef EMBER_HAVE_CUDA
    if (st == EMBER_OK && c->cuda && c->stage_ev[buf]) st = ember_event_record(c->stage_ev[buf], c->copy);
    /* the copy up is asynchronous: time it to its end only when the profiler asks */
    if (st == EMBER_OK && c->cuda && c->stage_ev[buf] && ember_profiler_sync_device())
        st = ember_event_synchronize(c->stage_ev[buf]);
#endif
    if (st == EMBER_OK && ember_profiler_enabled())
        ember_profiler_transfer(EMBER_PROFILER_LINK_HOST_TO_DEVICE, in_bytes, t3, ember__now());
    if (st != EMBER_OK) {
        /* the victims' old rows are safe below (written back, or clean); drop them */
        for (int t = 0; t < nt; t++) {
            ember__slots *s = &c->t[t].dev;
            for (int64_t i = 0; i < ld[t].n; i++) {
                if (ld[t].vold[i] >= 0) ember__slots_release_slot(s, ld[t].vict[i]);
                else s->freel[s->free_n++] = ld[t].vict[i];
            }
        }
        return st;
    }
    return bind_loaded(c, stamp, t3);
}

/* Scratch for the per-table load plans of up to n rows in all. */
static ember_status load_reserve(ember_cache *c, int64_t n) {
    size_t need = (size_t)n * (sizeof(int64_t) * 3 + sizeof(int32_t) * 3 + sizeof(uint32_t)) + 64;
    return ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, &c->plan, need);
}

/* Carve table t's arrays (n rows) out of the plan buffer at *p. */
static void load_carve(ember_cache *c, int t, int64_t n, char **p) {
    ember__load *l = &c->ld[t];
    char *q = *p;
    l->n = n;
    l->ids = (const int64_t *)q;
    q += (size_t)n * sizeof(int64_t);
    l->vold = (int64_t *)q;
    q += (size_t)n * sizeof(int64_t);
    l->wbi = (int64_t *)q;
    q += (size_t)n * sizeof(int64_t);
    l->vict = (int32_t *)q;
    q += (size_t)n * sizeof(int32_t);
    l->wbs = (int32_t *)q;
    q += (size_t)n * sizeof(int32_t);
    l->cnt = (const uint32_t *)q;
    q += (size_t)n * sizeof(uint32_t);
    q += (size_t)n * sizeof(int32_t); /* the misses' positions in uniq */
    *p = q;
}

/* ---- prepare ---- */

static int32_t *miss_pos(ember__load *l) { return (int32_t *)(l->cnt + l->n); }

static ember_status remap(ember_cache *c, ember__cbatch *b) {
    const int nt = c->nt;
    const int64_t B = b->B;
    size_t need = 0;
    for (int t = 0; t < nt; t++) {
        need += (size_t)b->in[t].length * sizeof(int64_t) + (size_t)(B + 1) * sizeof(int64_t);
        if (b->in[t].weights) need += (size_t)b->in[t].length * sizeof(float);
        need = (need + 63) & ~(size_t)63;
    }
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, &b->dev, need + 64));
    char *host = b->dev.p;
    if (c->cuda) {
        EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_PINNED, EMBER_MEM_STAGING, &b->pin, need + 64));
        host = b->pin.p;
    }
    /* the layout first (each table's arrays at the same offsets in both buffers), then
       the tables' slot ids written in parallel */
    size_t off = 0;
    char *dbase = b->dev.p;
    for (int t = 0; t < nt; t++) {
        const ember_jagged_feature *in = &b->in[t];
        size_t voff = off;
        off += (size_t)in->length * sizeof(int64_t);
        size_t ooff = off;
        off += (size_t)(B + 1) * sizeof(int64_t);
        size_t woff = off;
        if (in->weights) off += (size_t)in->length * sizeof(float);
        off = (off + 63) & ~(size_t)63;
        b->out[t] = (ember_jagged_feature){.values = (const int64_t *)(dbase + voff),
                                           .offsets = (const int64_t *)(dbase + ooff),
                                           .weights = in->weights ? (const float *)(dbase + woff) : NULL,
                                           .length = in->length};
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->prep_threads) if (c->prep_threads > 1)
    for (int t = 0; t < nt; t++) {
        const ember_jagged_feature *in = &b->in[t];
        const ember__cfeat *f = &b->f[t];
        int64_t *vals = (int64_t *)(host + ((const char *)b->out[t].values - dbase));
        int64_t *offs = (int64_t *)(host + ((const char *)b->out[t].offsets - dbase));
        const int64_t lo = f->off0, hi = f->off0 + f->n_used;
        for (int64_t p = 0; p < lo; p++) vals[p] = 0;
        if (c->t[t].ident) memcpy(vals + lo, in->values + lo, (size_t)(hi - lo) * sizeof(int64_t));
        else
            for (int64_t p = lo; p < hi; p++) vals[p] = f->uslot[f->inv[p - lo]];
        for (int64_t p = hi; p < in->length; p++) vals[p] = 0;
        memcpy(offs, in->offsets, (size_t)(B + 1) * sizeof(int64_t));
        if (in->weights)
            memcpy(host + ((const char *)b->out[t].weights - dbase), in->weights, (size_t)in->length * sizeof(float));
    }
#ifdef EMBER_HAVE_CUDA
    if (c->cuda) {
        EMBER_TRY(ember__cuda_memcpy(c->dev.index, b->dev.p, b->pin.p, off, EMBER__H2D, 0));
        if (b->ready) EMBER_TRY(ember_event_record(b->ready, c->copy));
    }
#endif
    b->pub.jagged = (ember_jagged){.batch = B, .num_features = nt, .features = b->out};
    b->pub.rows = c->rows;
    b->pub.seq = b->seq;
    return EMBER_OK;
}

/* A table mapped 1:1 (ident): one pass over its lookups, a byte of state per row.
   Rows not yet loaded become the misses (marked 2 so a repeat is not counted again);
   nothing is pinned, since nothing is ever evicted. */
static void ident_pass(ember_cache *c, ember__cbatch *b, int t) {
    ember__ctable *tb = &c->t[t];
    ember__cfeat *f = &b->f[t];
    if (++tb->seen_gen == 0) {
        memset(tb->seen, 0, (size_t)tb->rows);
        tb->seen_gen = 1;
    }
    const uint8_t g = tb->seen_gen;
    uint8_t *loaded = tb->loaded, *seen = tb->seen;
    const int64_t *ids = b->in[t].values + f->off0;
    int64_t nm = 0, h = 0, nseen = 0, uh = 0;
    for (int64_t i = 0; i < f->n_used; i++) {
        const int64_t id = ids[i];
        const uint8_t l = loaded[id];
        if (seen[id] != g) {
            seen[id] = g;
            nseen++;
            if (l == 0) {
                loaded[id] = 2;
                f->uniq[nm++] = id;
            } else {
                uh++;
            }
        }
        h += l == 1 || l == 3;
    }
    f->nuniq = 0;
    f->nmiss = nm;
    f->hits = h;
    f->uhits = uh;
    f->nseen = nseen;
}

/* Undo ident_pass's marks of the tables before `upto`. */
static void ident_unmark(ember_cache *c, ember__cbatch *b, int upto) {
    for (int t = 0; t < upto; t++) {
        if (!c->t[t].ident) continue;
        const ember__cfeat *f = &b->f[t];
        for (int64_t k = 0; k < f->nmiss; k++) c->t[t].loaded[f->uniq[k]] = 0;
    }
}

/* Undo the plan's pins of a batch's hits (slots found, before any miss was bound). */
static void unpin_hits(ember_cache *c, const ember__cbatch *b) {
    for (int t = 0; t < c->nt; t++) {
        if (c->t[t].ident) continue;
        ember__slots *s = &c->t[t].dev;
        const ember__cfeat *f = &b->f[t];
        for (int64_t u = 0; u < f->nuniq; u++)
            if (f->uslot[u] >= 0) ember__slots_unpin(s, f->uslot[u]);
    }
}

static ember_status prepare(ember_cache *c, ember__cbatch *b, int *is_short) {
    static const char fn[] = "ember_cache_next";
    *is_short = 0;
    const int nt = c->nt;
    double t0 = ember__now();
    if (b->registered) {
        future_update(c, b, -1, NULL);
        b->registered = 0;
    }
    /* plan: hits (pinned as they are counted), misses, room; the tables' passes in
       parallel, then the checks in table order (a failed check unpins every hit) */
    int64_t total_miss = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->prep_threads) if (c->prep_threads > 1)
    for (int t = 0; t < nt; t++) {
        ember__ctable *tb = &c->t[t];
        ember__slots *s = &tb->dev;
        ember__cfeat *f = &b->f[t];
        if (tb->ident) {
            ident_pass(c, b, t);
            continue;
        }
        int64_t nm = 0, own_free = 0, own_pinned = 0;
        for (int64_t u = 0; u < f->nuniq; u++) {
            if (u + EMBER__PF_AHEAD < f->nuniq) ember__idmap_prefetch(&s->map, f->uniq[u + EMBER__PF_AHEAD]);
            f->uslot[u] = ember__slots_find(s, f->uniq[u]);
        }
        f->pinned_before = s->pinned;
        for (int64_t u = 0; u < f->nuniq; u++) {
            if (u + EMBER__PF_AHEAD < f->nuniq && f->uslot[u + EMBER__PF_AHEAD] >= 0)
                __builtin_prefetch(&s->m[f->uslot[u + EMBER__PF_AHEAD]], 1);
            int32_t slot = f->uslot[u];
            if (slot < 0) {
                nm++;
                continue;
            }
            if (s->m[slot].pin == 0) own_free++;
            else own_pinned++;
            ember__slots_pin(s, slot);
        }
        f->nmiss = nm;
        f->own_free = own_free;
        f->own_pinned = own_pinned;
    }
    for (int t = 0; t < nt; t++) {
        ember__ctable *tb = &c->t[t];
        ember__slots *s = &tb->dev;
        ember__cfeat *f = &b->f[t];
        if (tb->ident) {
            total_miss += f->nmiss;
            continue;
        }
        const int64_t nm = f->nmiss, own_free = f->own_free, own_pinned = f->own_pinned;
        /* slots that may become victims: free ones, and occupied ones no batch holds
           (counted as they were before this batch's pins) */
        int64_t room = s->cap - f->pinned_before - own_free;
        if (nm > room) {
            unpin_hits(c, b);
            int64_t others = f->pinned_before - own_pinned;
            if (others > 0) {
                pthread_mutex_lock(&c->mu);
                int64_t busy = c->held + (c->n_prep - c->n_hand);
                pthread_mutex_unlock(&c->mu);
                *is_short = 1;
                b->st = EMBER_ERR_OUT_OF_MEMORY;
                snprintf(b->err, sizeof b->err,
                         "EMBER_ERR_OUT_OF_MEMORY: %s: table %d (\"%s\"): batch %lld needs %lld of its "
                         "%lld unique rows loaded, but only %lld of the %lld slots are free while %lld "
                         "are pinned by %lld earlier batch(es) still handed out: release them before "
                         "asking for the next batch, or give the table at least %lld slots",
                         fn, t, tb->name, (long long)b->seq, (long long)nm, (long long)f->nuniq,
                         (long long)room, (long long)s->cap, (long long)others, (long long)busy,
                         (long long)(f->nuniq + others));
                ident_unmark(c, b, nt);
                return EMBER_OK;
            }
            ident_unmark(c, b, nt);
            return ember__error(EMBER_ERR_OUT_OF_MEMORY,
                                "%s: table %d (\"%s\"): batch %lld has %lld unique ids but the cache holds "
                                "%lld slots for this table: it must hold at least %lld (ratio >= %.4g of "
                                "its %lld rows)%s", fn, t, tb->name, (long long)b->seq,
                                (long long)f->nuniq, (long long)s->cap, (long long)f->nuniq,
                                (double)f->nuniq / (double)tb->rows, (long long)tb->rows,
                                c->lookahead > 0 ? "; with look-ahead, the batches in flight need room "
                                                   "together"
                                                 : "");
        }
        total_miss += nm;
    }
    /* the hits are pinned: from here on every step is undone on failure */
    ember_status st = load_reserve(c, total_miss);
    if (st == EMBER_OK) {
        char *p = c->plan.p;
        for (int t = 0; t < nt; t++) load_carve(c, t, b->f[t].nmiss, &p);
        /* each table's miss list (ids, counts, positions in uniq) */
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->prep_threads) if (c->prep_threads > 1)
        for (int t = 0; t < nt; t++) {
            ember__cfeat *f = &b->f[t];
            ember__load *l = &c->ld[t];
            int64_t *ids = (int64_t *)l->ids;
            uint32_t *cnt = (uint32_t *)l->cnt;
            int32_t *pos = miss_pos(l);
            int64_t k = 0;
            if (c->t[t].ident) {
                memcpy(ids, f->uniq, (size_t)f->nmiss * sizeof(int64_t));
                memset(cnt, 0, (size_t)f->nmiss * sizeof(uint32_t));
                continue;
            }
            for (int64_t u = 0; u < f->nuniq; u++)
                if (f->uslot[u] < 0) {
                    ids[k] = f->uniq[u];
                    cnt[k] = c->policy == EMBER_CACHE_POLICY_LFU ? f->ucnt[u] : 0;
                    pos[k] = (int32_t)u;
                    k++;
                }
        }
        c->stamp++;
        c->wst.seconds[EMBER_CACHE_PHASE_PLAN] += ember__now() - t0;
        st = load_block(c, (int)(b->seq & 1), c->stamp);
    }
    if (st != EMBER_OK) {
        ident_unmark(c, b, nt);
        unpin_hits(c, b);
        return st;
    }
    /* commit: hits touched, misses' slots into uslot, counters */
    int64_t lookups = 0, hits = 0, uniq = 0, uhits = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->prep_threads) if (c->prep_threads > 1) \
    reduction(+ : lookups, hits, uniq, uhits)
    for (int t = 0; t < nt; t++) {
        ember__slots *s = &c->t[t].dev;
        ember__cfeat *f = &b->f[t];
        ember__load *l = &c->ld[t];
        if (c->t[t].ident) {
            lookups += f->n_used;
            hits += f->hits;
            uniq += f->nseen;
            uhits += f->uhits;
            continue;
        }
        int64_t h = 0, uh = 0;
        for (int64_t u = 0; u < f->nuniq; u++)
            if (f->uslot[u] >= 0) {
                if (u + EMBER__PF_AHEAD < f->nuniq && f->uslot[u + EMBER__PF_AHEAD] >= 0)
                    __builtin_prefetch(&s->m[f->uslot[u + EMBER__PF_AHEAD]], 1);
                ember__slots_touch(s, f->uslot[u], c->stamp, f->ucnt[u]);
                h += f->ucnt[u];
                uh++;
            }
        const int32_t *pos = miss_pos(l);
        for (int64_t k = 0; k < l->n; k++) f->uslot[pos[k]] = l->vict[k];
        f->hits = h;
        f->uhits = uh;
        lookups += f->n_used;
        hits += h;
        uniq += f->nuniq;
        uhits += uh;
    }
    if (c->policy == EMBER_CACHE_POLICY_LFU && ++c->aging_count >= c->aging) {
        c->aging_count = 0;
        for (int t = 0; t < nt; t++) c->t[t].dev.now_epoch++;
    }
    double t1 = ember__now();
    st = remap(c, b);
    double t2 = ember__now();
    c->wst.seconds[EMBER_CACHE_PHASE_REMAP] += t2 - t1;
    if (st != EMBER_OK) {
        /* the rows are loaded and stay cached; only this batch's pins go */
        for (int t = 0; t < nt; t++)
            for (int64_t u = 0; u < b->f[t].nuniq; u++) ember__slots_unpin(&c->t[t].dev, b->f[t].uslot[u]);
        return st;
    }
    b->pub.lookups = lookups;
    b->pub.hits = hits;
    b->pub.unique = uniq;
    b->pub.unique_hits = uhits;
    c->wst.batches++;
    c->wst.lookups += lookups;
    c->wst.hits += hits;
    c->wst.unique += uniq;
    c->wst.unique_hits += uhits;
    b->prep_sec += t2 - t0;
    c->wst.prepare_seconds += b->prep_sec;
    return EMBER_OK;
}

/* ---- the worker ---- */

static void fail_batch(ember_cache *c, ember__cbatch *b, ember_status st, const char *msg) {
    b->st = st;
    if (msg != b->err) snprintf(b->err, sizeof b->err, "%s", msg);
    b->state = EMBER__B_FAILED;
    if (b->registered) {
        future_update(c, b, -1, NULL);
        b->registered = 0;
    }
}

static void *worker_main(void *arg) {
    ember_cache *c = arg;
    if (c->cuda) ember_stream_set_current(c->copy);
    ember_profiler_set_thread_name("cache worker");
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->stop) break;
        if (c->job && !c->job->done) {
            ember__job *j = c->job;
            pthread_mutex_unlock(&c->mu);
            process_releases(c);
            j->st = j->fn(c, j->arg);
            if (j->st != EMBER_OK) capture(j->err, sizeof j->err);
            publish(c);
            pthread_mutex_lock(&c->mu);
            j->done = 1;
            pthread_cond_broadcast(&c->cv_u);
            continue;
        }
        if (releases_pending(c)) {
            pthread_mutex_unlock(&c->mu);
            process_releases(c);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        if (c->n_ana < c->n_sub) {
            ember__cbatch *b = ring_at(c, c->n_ana);
            int reg = b->seq > c->n_prep;
            pthread_mutex_unlock(&c->mu);
            b->prep_sec = 0;
            ember_status st = analyze(c, b, reg);
            if (st != EMBER_OK) {
                char msg[1024];
                capture(msg, sizeof msg);
                fail_batch(c, b, st, msg);
            }
            publish(c);
            pthread_mutex_lock(&c->mu);
            if (st == EMBER_OK) b->state = EMBER__B_ANALYZED;
            c->n_ana++;
            continue;
        }
        if (c->n_prep < c->n_ana && c->n_prep <= c->wanted + c->lookahead) {
            ember__cbatch *b = ring_at(c, c->n_prep);
            if (b->state == EMBER__B_FAILED) {
                c->n_prep++;
                pthread_cond_broadcast(&c->cv_u);
                continue;
            }
            int waiting = c->short_seq == b->seq && c->short_gen == c->rel_gen;
            if (waiting) {
                /* nothing was released since it last did not fit: if the caller waits for
                   this very batch while holding the ones that pin the slots, it never will */
                if (c->wanted >= b->seq && c->held > 0) {
                    fail_batch(c, b, b->st, b->err);
                    c->short_seq = -1;
                    c->n_prep++;
                    pthread_cond_broadcast(&c->cv_u);
                    continue;
                }
                pthread_cond_wait(&c->cv_w, &c->mu);
                continue;
            }
            int64_t gen = c->rel_gen; /* a release during the attempt means: try again */
            pthread_mutex_unlock(&c->mu);
            int is_short = 0;
            ember_status st = prepare(c, b, &is_short);
            char msg[1024] = "";
            if (st != EMBER_OK) capture(msg, sizeof msg);
            publish(c);
            pthread_mutex_lock(&c->mu);
            if (st == EMBER_OK && is_short) {
                c->short_seq = b->seq;
                c->short_gen = gen;
                continue;
            }
            c->short_seq = -1;
            if (st != EMBER_OK) fail_batch(c, b, st, msg);
            else b->state = EMBER__B_PREPARED;
            c->n_prep++;
            pthread_cond_broadcast(&c->cv_u);
            continue;
        }
        pthread_cond_wait(&c->cv_w, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    ember__lmdb_close(c->db);
    c->db = NULL;
    return NULL;
}

/* ---- create / destroy ---- */

static ember_status open_store_job(ember_cache *c, void *arg) {
    (void)arg;
    int created = 0;
    ember__store_init init;
    EMBER_TRY(ember__lmdb_open(&c->dbp, &c->db, &created, &c->ckpt_step, &init));
    if (!created) c->init = init;
    return EMBER_OK;
}

static ember_status check_config(const ember_cache_config *cfg) {
    static const char fn[] = "ember_cache_create";
    const ember_ebc_config *ec = &cfg->collection;
    if (ec->num_tables < 1 || !ec->tables)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: collection.num_tables is %d and tables %s; "
                            "give at least one table", fn, ec->num_tables, ec->tables ? "set" : "NULL");
    for (int t = 0; t < ec->num_tables; t++)
        if (ec->tables[t].rows <= 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: table %d: rows %lld must be > 0", fn, t,
                                (long long)ec->tables[t].rows);
    if ((unsigned)cfg->policy >= EMBER_CACHE_POLICY_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: policy %d is not a cache policy", fn, cfg->policy);
    if ((unsigned)cfg->store >= EMBER_CACHE_STORE_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: store %d is not a store kind", fn, cfg->store);
    if ((unsigned)cfg->open >= EMBER_CACHE_OPEN_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: open %d is not an open mode", fn, cfg->open);
    if (cfg->prepare_threads < 0 || cfg->prepare_threads > 4096)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: prepare_threads is %d; give 0 (auto) to 4096", fn,
                            cfg->prepare_threads);
    if (cfg->lookahead < 0 || cfg->lookahead > MAX_LOOKAHEAD)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: lookahead %d is outside [0, %d]", fn,
                            cfg->lookahead, MAX_LOOKAHEAD);
    if (!(cfg->ratio >= 0.0) || cfg->ratio > 1.0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: ratio %g is outside [0, 1]", fn, cfg->ratio);
    if (cfg->ratio == 0.0 && !cfg->slots)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: give the device cache's size: ratio (of each "
                            "table's rows) or slots (per table)", fn);
    if (cfg->slots)
        for (int t = 0; t < ec->num_tables; t++)
            if (cfg->slots[t] <= 0)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: slots[%d] = %lld must be > 0", fn, t,
                                    (long long)cfg->slots[t]);
    if (cfg->min_slots < 0 || cfg->aging_interval < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: min_slots %lld and aging_interval %lld must "
                            "be >= 0", fn, (long long)cfg->min_slots, (long long)cfg->aging_interval);
    if (!(cfg->host_ratio >= 0.0) || cfg->host_ratio > 1.0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: host_ratio %g is outside [0, 1]", fn,
                            cfg->host_ratio);
    if (cfg->host_rows)
        for (int t = 0; t < ec->num_tables; t++)
            if (cfg->host_rows[t] < 0)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: host_rows[%d] = %lld must be >= 0", fn,
                                    t, (long long)cfg->host_rows[t]);
    if (cfg->store == EMBER_CACHE_STORE_LMDB && (!cfg->path || !*cfg->path))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: the LMDB store needs a path (a directory, "
                            "one per model)", fn);
    if (cfg->store == EMBER_CACHE_STORE_LMDB && cfg->tiers)
        return ember__error(EMBER_ERR_UNSUPPORTED, "%s: precision tiers are a feature of the host store; the LMDB "
                            "store keeps f32 records (leave tiers NULL)", fn);
    if (cfg->store == EMBER_CACHE_STORE_HOST && (cfg->host_ratio > 0 || cfg->host_rows))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: host_ratio and host_rows size the DRAM cache "
                            "in front of LMDB; the host store holds whole tables", fn);
    return EMBER_OK;
}

static int64_t clamp_rows(double want, int64_t lo, int64_t rows) {
    int64_t n = want >= (double)rows ? rows : (int64_t)ceil(want);
    if (n < lo) n = lo;
    if (n > rows) n = rows;
    return n;
}

ember_status ember_cache_create(const ember_cache_config *cfg, ember_cache **out) {
    static const char fn[] = "ember_cache_create";
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_TRY(check_config(cfg));
    const ember_ebc_config *ec = &cfg->collection;
    const int nt = ec->num_tables;
    ember_cache *c = calloc(1, sizeof *c);
    if (!c) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: cache header", fn);
    c->nt = nt;
    c->mm = cfg->mm ? cfg->mm : ember_memory_default();
    c->dev = ember_memory_device(c->mm);
    c->cuda = c->dev.type == EMBER_DEVICE_CUDA;
    /* With the kernels on a GPU the host cores are free while a batch computes: the
       prepare's per-table passes share them. On a CPU they would take them from the
       step it overlaps, so it keeps one thread. */
    c->prep_threads = cfg->prepare_threads ? cfg->prepare_threads : c->cuda ? ember_get_num_threads() : 1;
    if (c->prep_threads > c->nt) c->prep_threads = c->nt;
    if (c->prep_threads < 1) c->prep_threads = 1;
    c->policy = cfg->policy;
    c->lookahead = cfg->lookahead;
    c->store = cfg->store;
    c->aging = cfg->aging_interval ? cfg->aging_interval : DEFAULT_AGING;
    c->ckpt_step = -1;
    c->wanted = -1;
    c->short_seq = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv_w, NULL);
    pthread_cond_init(&c->cv_u, NULL);

    ember_status st = EMBER_OK;
    c->t = calloc((size_t)nt, sizeof *c->t);
    c->rows = calloc((size_t)nt, sizeof *c->rows);
    c->table_rows = calloc((size_t)nt, sizeof *c->table_rows);
    c->sset = calloc((size_t)nt, sizeof *c->sset);
    c->wset = calloc((size_t)nt, sizeof *c->wset);
    c->rset = calloc((size_t)nt, sizeof *c->rset);
    c->ld = calloc((size_t)nt, sizeof *c->ld);
    c->dbt = calloc((size_t)nt, sizeof *c->dbt);
    ember_ebc_table_config *tc = calloc((size_t)nt, sizeof *tc);
    if (!c->t || !c->rows || !c->table_rows || !c->sset || !c->wset || !c->rset || !c->ld || !c->dbt || !tc) {
        free(tc);
        ember_cache_destroy(c);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: per-table headers for %d tables", fn, nt);
    }
    /* The compute collection: the kernels and the layouts, one row per table. */
    for (int t = 0; t < nt; t++) {
        tc[t] = ec->tables[t];
        tc[t].rows = 1;
    }
    ember_ebc_config cc = *ec;
    cc.tables = tc;
    cc.mm = c->mm;
    cc.tier = EMBER_TIER_DEVICE;
    st = ember_ebc_create(&cc, &c->compute);
    free(tc);
    if (st != EMBER_OK) {
        st = rewrap(st, fn);
        ember_cache_destroy(c);
        return st;
    }
    ember_sparse_optim_config oc = ember_ebc_optim(c->compute);
    c->optim = oc.type;
    c->state0 = oc.type == EMBER_SPARSE_OPTIM_ADAGRAD || oc.type == EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD
                    ? oc.initial_accumulator
                    : 0.0f;
    if (cfg->store == EMBER_CACHE_STORE_HOST && !cfg->tiers) {
        ember_ebc_config hc = *ec;
        hc.mm = c->mm;
        hc.tier = EMBER_TIER_HOST;
        st = ember_ebc_create(&hc, &c->host_ebc);
        if (st != EMBER_OK) st = rewrap(st, "ember_cache_create: the host store");
    }
    int maxdim = 1;
    uint64_t words = 0;
    for (int t = 0; t < nt && st == EMBER_OK; t++) {
        ember__ctable *tb = &c->t[t];
        ember_ebc_table_info info;
        st = ember_ebc_get_table_info(c->compute, t, &info);
        if (st != EMBER_OK) break;
        tb->name = info.name;
        tb->rows = ec->tables[t].rows;
        tb->dim = info.dim;
        tb->format = info.format;
        tb->state_floats = info.state_floats;
        tb->rb = info.record_bytes;
        tb->state_offset = info.state_offset;
        tb->init_word = words;
        words += (uint64_t)tb->rows * (uint64_t)tb->dim;
        if (tb->dim > maxdim) maxdim = tb->dim;
        c->table_rows[t] = tb->rows;
        tb->nslots = cfg->slots ? (cfg->slots[t] < tb->rows ? cfg->slots[t] : tb->rows)
                                : clamp_rows(cfg->ratio * (double)tb->rows, cfg->min_slots, tb->rows);
        size_t bytes;
        if (!ember__mul_size((size_t)tb->nslots, tb->rb, &bytes)) {
            st = ember__error(EMBER_ERR_OVERFLOW, "%s: table %d: %lld slots of %zu B", fn, t,
                              (long long)tb->nslots, tb->rb);
            break;
        }
        st = ember_memory_alloc(c->mm, EMBER_TIER_DEVICE, EMBER_MEM_CACHE, bytes, (void **)&tb->slots);
        if (st != EMBER_OK) {
            char what[256];
            snprintf(what, sizeof what, "%s: table %d (\"%s\"): %lld device slots", fn, t, tb->name,
                     (long long)tb->nslots);
            st = rewrap(st, what);
            break;
        }
        if (!c->cuda) {
            memset(tb->slots, 0, bytes);
        }
        /* a table whose slots hold all its rows is mapped 1:1 */
        tb->ident = tb->nslots == tb->rows && tb->rows <= INT32_MAX / 2;
        if (tb->ident) {
            st = ember_memory_alloc(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, 2 * (size_t)tb->rows,
                                    (void **)&tb->loaded);
            if (st != EMBER_OK) break;
            memset(tb->loaded, 0, 2 * (size_t)tb->rows);
            tb->seen = tb->loaded + tb->rows;
        }
        st = ember__slots_init(&tb->dev, c->mm, tb->ident ? 0 : tb->nslots, c->policy);
        if (st == EMBER_OK) st = ember__idmap_init(&tb->future, c->mm, 64, 1);
        if (st != EMBER_OK) break;
        c->rows[t] = (ember_ebc_rows){.base = tb->slots, .count = tb->nslots, .stride = tb->rb};
        if (c->host_ebc) {
            ember_ebc_table_info hi;
            st = ember_ebc_get_table_info(c->host_ebc, t, &hi);
            if (st != EMBER_OK) break;
            tb->host = hi.data;
        }
        if (cfg->store == EMBER_CACHE_STORE_LMDB) {
            tb->hslots = cfg->host_rows ? (cfg->host_rows[t] < tb->rows ? cfg->host_rows[t] : tb->rows)
                         : cfg->host_ratio > 0 ? clamp_rows(cfg->host_ratio * (double)tb->rows, 0, tb->rows)
                                               : 0;
            if (tb->hslots > 0) {
                if (!ember__mul_size((size_t)tb->hslots, tb->rb, &bytes)) {
                    st = ember__error(EMBER_ERR_OVERFLOW, "%s: table %d: %lld host rows", fn, t,
                                      (long long)tb->hslots);
                    break;
                }
                st = ember_memory_alloc(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, bytes, (void **)&tb->hdata);
                if (st != EMBER_OK) {
                    char what[256];
                    snprintf(what, sizeof what, "%s: table %d (\"%s\"): DRAM cache of %lld rows", fn, t,
                             tb->name, (long long)tb->hslots);
                    st = rewrap(st, what);
                    break;
                }
                st = ember__slots_init(&tb->hc, c->mm, tb->hslots, EMBER_CACHE_POLICY_LRU);
                if (st != EMBER_OK) break;
            }
        }
        c->dbt[t] = (ember__store_table){.rows = tb->rows,
                                         .dim = tb->dim,
                                         .format = tb->format,
                                         .state_floats = tb->state_floats,
                                         .record_bytes = tb->rb,
                                         .state_offset = tb->state_offset};
    }
    c->init_words = words;
    if (st == EMBER_OK && cfg->store == EMBER_CACHE_STORE_HOST && cfg->tiers) {
        st = ember__tstore_create(c, cfg->tiers);
        c->tiered = 1; /* what was built is freed on failure */
    }
    if (st == EMBER_OK) {
        c->gen_tmp = malloc((size_t)maxdim * sizeof(float));
        c->ring_cap = c->lookahead + EXTRA_OUTSTANDING;
        c->ring = calloc((size_t)c->ring_cap, sizeof *c->ring);
        if (!c->gen_tmp || !c->ring) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: batch records", fn);
    }
    for (int i = 0; i < c->ring_cap && st == EMBER_OK; i++) {
        ember__cbatch *b = &c->ring[i];
        b->in = calloc((size_t)nt, sizeof *b->in);
        b->out = calloc((size_t)nt, sizeof *b->out);
        b->f = calloc((size_t)nt, sizeof *b->f);
        if (!b->in || !b->out || !b->f) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: batch records", fn);
#ifdef EMBER_HAVE_CUDA
        if (st == EMBER_OK && c->cuda) st = ember_event_create(c->dev, &b->ready);
        if (st == EMBER_OK && c->cuda) st = ember_event_create(c->dev, &b->done);
#endif
    }
#ifdef EMBER_HAVE_CUDA
    if (st == EMBER_OK && c->cuda) st = ember_stream_create(c->dev, &c->copy);
    for (int i = 0; i < 2 && st == EMBER_OK && c->cuda; i++) st = ember_event_create(c->dev, &c->stage_ev[i]);
#endif
    if (st == EMBER_OK && cfg->store == EMBER_CACHE_STORE_LMDB) {
        c->path = strdup(cfg->path);
        if (!c->path) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: path", fn);
        c->dbp = (ember__lmdb_params){.path = c->path,
                                      .open = cfg->open,
                                      .map_size = cfg->map_size ? cfg->map_size : DEFAULT_MAP_SIZE,
                                      .num_tables = nt,
                                      .tables = c->dbt,
                                      .optim = c->optim};
    }
    if (st == EMBER_OK) {
        if (pthread_create(&c->thread, NULL, worker_main, c) != 0)
            st = ember__error(EMBER_ERR_INTERNAL, "%s: cannot start the worker thread", fn);
        else
            c->thread_started = 1;
    }
    if (st == EMBER_OK && cfg->store == EMBER_CACHE_STORE_LMDB) st = run_job(c, open_store_job, NULL);
    if (st != EMBER_OK) {
        ember_cache_destroy(c);
        return st;
    }
    *out = c;
    return EMBER_OK;
}

void ember_cache_destroy(ember_cache *c) {
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_broadcast(&c->cv_w);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    } else {
        ember__lmdb_close(c->db);
    }
#ifdef EMBER_HAVE_CUDA
    if (c->cuda) (void)ember_device_synchronize(c->dev);
#endif
    for (int i = 0; c->ring && i < c->ring_cap; i++) {
        ember__cbatch *b = &c->ring[i];
        ember__buf_free(c->mm, &b->meta);
        ember__buf_free(c->mm, &b->dev);
        ember__buf_free(c->mm, &b->pin);
        ember_event_destroy(b->ready);
        ember_event_destroy(b->done);
        free(b->in);
        free(b->out);
        free(b->f);
    }
    free(c->ring);
    for (int t = 0; c->t && t < c->nt; t++) {
        ember__ctable *tb = &c->t[t];
        if (tb->slots) ember_memory_free(c->mm, tb->slots);
        if (tb->hdata) ember_memory_free(c->mm, tb->hdata);
        if (tb->loaded) ember_memory_free(c->mm, tb->loaded);
        ember__slots_free(&tb->dev);
        ember__slots_free(&tb->hc);
        ember__idmap_free(&tb->future);
    }
    for (int i = 0; i < EMBER__DEDUP_MAX; i++) ember__buf_free(c->mm, &c->dedup[i]);
    ember__buf_free(c->mm, &c->plan);
    ember__buf_free(c->mm, &c->xs);
    for (int i = 0; i < 2; i++) {
        ember__buf_free(c->mm, &c->stage[i]);
        ember_event_destroy(c->stage_ev[i]);
    }
    ember__buf_free(c->mm, &c->dstage);
    ember__buf_free(c->mm, &c->dindex);
    ember_stream_destroy(c->copy);
    ember_ebc_destroy(c->compute);
    ember_ebc_destroy(c->host_ebc);
    ember__tstore_free(c);
    free(c->t);
    free(c->rows);
    free(c->table_rows);
    free(c->sset);
    free(c->wset);
    free(c->rset);
    free(c->ld);
    free(c->dbt);
    free(c->path);
    free(c->gen_tmp);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv_w);
    pthread_cond_destroy(&c->cv_u);
    free(c);
}

int ember_cache_num_tables(const ember_cache *c) { return c ? c->nt : 0; }
int64_t ember_cache_slots(const ember_cache *c, int table) {
    return c && table >= 0 && table < c->nt ? c->t[table].nslots : 0;
}
ember_ebc *ember_cache_collection(ember_cache *c) { return c ? c->compute : NULL; }
ember_ebc *ember_cache_host_collection(ember_cache *c) { return c ? c->host_ebc : NULL; }

ember_status ember_cache_get_row_tier(const ember_cache *c, int table, int64_t id, ember_cache_tier *out) {
    static const char fn[] = "ember_cache_get_row_tier";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(out, fn);
    if (table < 0 || table >= c->nt)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d is outside [0, %d)", fn, table, c->nt);
    const ember__ctable *tb = &c->t[table];
    if (id < 0 || id >= tb->rows)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d (\"%s\"): id %lld is outside [0, %lld)", fn, table,
                            tb->name, (long long)id, (long long)tb->rows);
    *out = c->tiered ? ember__tstore_tier(&tb->ts, id) : EMBER_CACHE_TIER_HOT;
    return EMBER_OK;
}
int64_t ember_cache_checkpoint_step(const ember_cache *c) { return c ? c->ckpt_step : -1; }

/* ---- batches ---- */

static ember_status check_usable(ember_cache *c, const char *fn) {
    if (c->broken)
        return ember__error(EMBER_ERR_STATE, "%s: the cache is unusable: %s", fn, c->broken_msg);
    return EMBER_OK;
}

ember_status ember_cache_submit(ember_cache *c, const ember_jagged *batch) {
    static const char fn[] = "ember_cache_submit";
    EMBER_CHECK_NULL(c, fn);
    EMBER_TRY(ember__jagged_check_shape(fn, batch, c->nt));
    EMBER_TRY(check_usable(c, fn));
    pthread_mutex_lock(&c->mu);
    if (c->n_sub - c->n_ret >= c->ring_cap) {
        int64_t n = c->n_sub - c->n_ret;
        pthread_mutex_unlock(&c->mu);
        return ember__error(EMBER_ERR_STATE, "%s: %lld batches are outstanding (submitted and not yet "
                            "released); at most lookahead + %d = %d: take and release batches first", fn,
                            (long long)n, EXTRA_OUTSTANDING, c->ring_cap);
    }
    ember__cbatch *b = ring_at(c, c->n_sub);
    b->seq = c->n_sub;
    b->B = batch->batch;
    memcpy(b->in, batch->features, (size_t)c->nt * sizeof *b->in);
    b->state = EMBER__B_SUBMITTED;
    b->registered = 0;
    b->updated = 0;
    b->st = EMBER_OK;
    b->err[0] = '\0';
    c->n_sub++;
    pthread_cond_signal(&c->cv_w);
    pthread_mutex_unlock(&c->mu);
    return EMBER_OK;
}

ember_status ember_cache_next(ember_cache *c, ember_cache_batch **out) {
    static const char fn[] = "ember_cache_next";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_hand >= c->n_sub) {
        pthread_mutex_unlock(&c->mu);
        return ember__error(EMBER_ERR_STATE, "%s: no batch submitted (ember_cache_submit first)", fn);
    }
    int64_t seq = c->n_hand;
    if (seq > c->wanted) {
        c->wanted = seq;
        pthread_cond_signal(&c->cv_w);
    }
    double t0 = ember__now();
    while (c->n_prep <= seq) pthread_cond_wait(&c->cv_u, &c->mu);
    double wait = ember__now() - t0;
    ember__cbatch *b = ring_at(c, seq);
    c->n_hand++;
    if (b->state == EMBER__B_FAILED) {
        ember_status st = b->st;
        char msg[sizeof b->err];
        memcpy(msg, b->err, sizeof msg);
        b->state = EMBER__B_FREE;
        advance_retired(c);
        pthread_cond_signal(&c->cv_w);
        pthread_mutex_unlock(&c->mu);
        return ember__reraise(st, msg);
    }
    b->state = EMBER__B_HANDED;
    c->held++;
    c->ust.seconds[EMBER_CACHE_PHASE_WAIT] += wait;
    c->ust.hidden_seconds += b->prep_sec > wait ? b->prep_sec - wait : 0.0;
    pthread_mutex_unlock(&c->mu);
#ifdef EMBER_HAVE_CUDA
    if (c->cuda && b->ready) EMBER_TRY(ember_stream_wait_event(NULL, b->ready));
#endif
    *out = &b->pub;
    return EMBER_OK;
}

static ember__cbatch *batch_of(ember_cache *c, const ember_cache_batch *pub) {
    for (int i = 0; i < c->ring_cap; i++)
        if (&c->ring[i].pub == pub) return &c->ring[i];
    return NULL;
}

ember_status ember_cache_release(ember_cache *c, ember_cache_batch *pub, int updated) {
    static const char fn[] = "ember_cache_release";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(pub, fn);
    ember__cbatch *b = batch_of(c, pub);
    pthread_mutex_lock(&c->mu);
    if (!b || b->state != EMBER__B_HANDED) {
        pthread_mutex_unlock(&c->mu);
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: not a batch this cache has handed out (or "
                            "released already)", fn);
    }
    pthread_mutex_unlock(&c->mu);
#ifdef EMBER_HAVE_CUDA
    if (c->cuda && b->done) EMBER_TRY(ember_event_record(b->done, NULL));
#endif
    pthread_mutex_lock(&c->mu);
    b->updated = updated != 0;
    b->state = EMBER__B_RELEASING;
    c->held--;
    c->rel_gen++;
    pthread_cond_signal(&c->cv_w);
    pthread_mutex_unlock(&c->mu);
    return EMBER_OK;
}

ember_status ember_cache_prepare(ember_cache *c, const ember_jagged *batch, ember_cache_batch **out) {
    EMBER_CHECK_NULL(out, "ember_cache_prepare");
    *out = NULL;
    EMBER_TRY(ember_cache_submit(c, batch));
    return ember_cache_next(c, out);
}

ember_status ember_cache_forward(ember_cache *c, const ember_cache_batch *b, ember_tensor *out) {
    EMBER_CHECK_NULL(c, "ember_cache_forward");
    EMBER_CHECK_NULL(b, "ember_cache_forward");
    return ember_ebc_forward(c->compute, &b->jagged, out,
                             &(ember_ebc_call){.rows = b->rows, .trusted = 1});
}

ember_status ember_cache_backward(ember_cache *c, const ember_cache_batch *b, const ember_tensor *grad_out,
                                  const ember_ebc_call *call) {
    EMBER_CHECK_NULL(c, "ember_cache_backward");
    EMBER_CHECK_NULL(b, "ember_cache_backward");
    EMBER_CHECK_NULL(call, "ember_cache_backward");
    ember_ebc_call cl = *call;
    cl.rows = b->rows;
    cl.trusted = 1;
    return ember_ebc_backward(c->compute, &b->jagged, grad_out, &cl);
}

/* ---- calls run on the worker ---- */

/* No batch handed out (rows are not being computed on); `all`: none outstanding. */
static ember_status check_quiet(ember_cache *c, const char *fn, int all) {
    EMBER_TRY(check_usable(c, fn));
    pthread_mutex_lock(&c->mu);
    int64_t held = c->held, outstanding = c->n_sub - c->n_ret;
    pthread_mutex_unlock(&c->mu);
    if (held > 0)
        return ember__error(EMBER_ERR_STATE, "%s: %lld batch(es) handed out and not released: call it "
                            "between ember_cache_release and ember_cache_next", fn, (long long)held);
    if (all && outstanding > 0)
        return ember__error(EMBER_ERR_STATE, "%s: %lld batch(es) submitted and not released: take and "
                            "release them first", fn, (long long)outstanding);
    return EMBER_OK;
}

static ember_status flush_job(ember_cache *c, void *arg) {
    (void)arg;
    double t0 = ember__now();
    int64_t before[EMBER_CACHE_LINK_COUNT];
    memcpy(before, c->wst.bytes, sizeof before);
    ember_status st = ember__flush(c);
    double t1 = ember__now();
    c->wst.seconds[EMBER_CACHE_PHASE_FLUSH] += t1 - t0;
    profile_links(c, before, t0, t1);
    return st;
}

ember_status ember_cache_flush(ember_cache *c) {
    EMBER_CHECK_NULL(c, "ember_cache_flush");
    EMBER_TRY(check_quiet(c, "ember_cache_flush", 0));
    return run_job(c, flush_job, NULL);
}

static ember_status checkpoint_job(ember_cache *c, void *arg) {
    int64_t step = *(const int64_t *)arg;
    double t0 = ember__now();
    int64_t before[EMBER_CACHE_LINK_COUNT];
    memcpy(before, c->wst.bytes, sizeof before);
    ember_status st = ember__flush(c);
    if (st == EMBER_OK) {
        st = ember__lmdb_checkpoint(c->db, step);
        if (st == EMBER_OK) {
            c->ckpt_step = step;
            c->wst.checkpoints++;
        }
    }
    double t1 = ember__now();
    c->wst.seconds[EMBER_CACHE_PHASE_FLUSH] += t1 - t0;
    profile_links(c, before, t0, t1);
    return st;
}

ember_status ember_cache_checkpoint(ember_cache *c, int64_t step) {
    static const char fn[] = "ember_cache_checkpoint";
    EMBER_CHECK_NULL(c, fn);
    if (step < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: step %lld is negative", fn, (long long)step);
    if (c->store != EMBER_CACHE_STORE_LMDB)
        return ember__error(EMBER_ERR_UNSUPPORTED, "%s: the host store is not durable; checkpoints need the "
                            "LMDB store (ember_cache_config.store)", fn);
    EMBER_TRY(check_quiet(c, fn, 0));
    ember_status st = run_job(c, checkpoint_job, &step);
    if (st != EMBER_OK && ember_last_status() == EMBER_ERR_STATE) {
        /* the store lost its transaction: so did the rows written since the checkpoint */
        c->broken = 1;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s", ember_last_error());
    }
    return st;
}

typedef struct rows_arg {
    int table;
    int64_t first, count;
    float *dst;
    const float *src;
    int state; /* 0: weights; 1: optimizer state */
} rows_arg;

static ember_status read_job(ember_cache *c, void *arg) {
    rows_arg *a = arg;
    ember__ctable *tb = &c->t[a->table];
    size_t per = a->state ? (size_t)tb->state_floats : (size_t)tb->dim;
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_STAGING, &c->xs, tb->rb));
    char *rec = c->xs.p;
    for (int64_t i = 0; i < a->count; i++) {
        EMBER_TRY(ember__row_fetch(c, a->table, a->first + i, rec));
        float *d = a->dst + (size_t)i * per;
        if (a->state) memcpy(d, rec + tb->state_offset, per * sizeof(float));
        else ember__row_load(rec, tb->format, tb->dim, d);
    }
    return EMBER_OK;
}

static ember_status write_job(ember_cache *c, void *arg) {
    rows_arg *a = arg;
    ember__ctable *tb = &c->t[a->table];
    size_t per = a->state ? (size_t)tb->state_floats : (size_t)tb->dim;
    int64_t chunk = a->count < ROW_IO_CHUNK ? a->count : ROW_IO_CHUNK;
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_STAGING, &c->plan, (size_t)chunk * tb->rb));
    char *recs = c->plan.p;
    for (int64_t r = 0; r < a->count; r += chunk) {
        int64_t n = a->count - r < chunk ? a->count - r : chunk;
        for (int64_t i = 0; i < n; i++) {
            char *rec = recs + (size_t)i * tb->rb;
            EMBER_TRY(ember__row_fetch(c, a->table, a->first + r + i, rec));
            const float *s = a->src + (size_t)(r + i) * per;
            if (a->state) memcpy(rec + tb->state_offset, s, per * sizeof(float));
            else ember__row_store(rec, tb->format, tb->dim, s);
        }
        EMBER_TRY(ember__rows_store(c, a->table, a->first + r, n, recs));
    }
    return EMBER_OK;
}

static ember_status rows_call(ember_cache *c, const char *fn, int table, int64_t first, int64_t count,
                              float *dst, const float *src, int state) {
    EMBER_CHECK_NULL(c, fn);
    if (!dst && !src) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: buffer is NULL", fn);
    if (table < 0 || table >= c->nt)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d is outside [0, %d)", fn, table, c->nt);
    const ember__ctable *tb = &c->t[table];
    if (first < 0 || count < 0 || first > tb->rows || count > tb->rows - first)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d (\"%s\"): rows [%lld, %lld + %lld) are outside "
                            "[0, %lld)", fn, table, tb->name, (long long)first, (long long)first,
                            (long long)count, (long long)tb->rows);
    if (count == 0 || (state && tb->state_floats == 0)) return EMBER_OK;
    EMBER_TRY(check_quiet(c, fn, 0));
    rows_arg a = {table, first, count, dst, src, state};
    return run_job(c, dst ? read_job : write_job, &a);
}

ember_status ember_cache_read_rows(ember_cache *c, int table, int64_t first, int64_t count, float *dst) {
    EMBER_CHECK_NULL(dst, "ember_cache_read_rows");
    return rows_call(c, "ember_cache_read_rows", table, first, count, dst, NULL, 0);
}
ember_status ember_cache_write_rows(ember_cache *c, int table, int64_t first, int64_t count,
                                    const float *src) {
    EMBER_CHECK_NULL(src, "ember_cache_write_rows");
    return rows_call(c, "ember_cache_write_rows", table, first, count, NULL, src, 0);
}
ember_status ember_cache_read_state(ember_cache *c, int table, int64_t first, int64_t count, float *dst) {
    EMBER_CHECK_NULL(dst, "ember_cache_read_state");
    return rows_call(c, "ember_cache_read_state", table, first, count, dst, NULL, 1);
}
ember_status ember_cache_write_state(ember_cache *c, int table, int64_t first, int64_t count,
                                     const float *src) {
    EMBER_CHECK_NULL(src, "ember_cache_write_state");
    return rows_call(c, "ember_cache_write_state", table, first, count, NULL, src, 1);
}

typedef struct init_arg {
    ember_rng *rng;
    float lo, hi;
} init_arg;

static ember_status init_job(ember_cache *c, void *arg) {
    init_arg *a = arg;
    ember__store_init init = {.kind = 1, .seed = a->rng->seed, .offset = a->rng->offset, .lo = a->lo, .hi = a->hi};
    if (c->store == EMBER_CACHE_STORE_HOST && c->tiered) {
        /* every row from the initialiser's stream (the values ember_ebc_init_uniform
           gives), compressed into its tier */
        c->init = init;
        ember__tstore_init_rows(c);
        a->rng->offset += c->init_words;
    } else if (c->store == EMBER_CACHE_STORE_HOST) {
        EMBER_TRY(ember_ebc_init_uniform(c->host_ebc, a->rng, a->lo, a->hi));
    } else {
        EMBER_TRY(ember__lmdb_reset(c->db, &init));
        a->rng->offset += c->init_words;
    }
    c->init = init;
    ember__drop_caches(c);
    return EMBER_OK;
}

ember_status ember_cache_init_uniform(ember_cache *c, ember_rng *rng, float lo, float hi) {
    static const char fn[] = "ember_cache_init_uniform";
    EMBER_CHECK_NULL(c, fn);
    EMBER_CHECK_NULL(rng, fn);
    if (!isfinite(lo) || !isfinite(hi) || hi < lo)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: range [%g, %g) is not valid", fn, (double)lo,
                            (double)hi);
    EMBER_TRY(check_quiet(c, fn, 1));
    init_arg a = {rng, lo, hi};
    return run_job(c, init_job, &a);
}

typedef struct warm_arg {
    int table;
    const int64_t *ids;
    const uint64_t *counts;
    int64_t n;
} warm_arg;

static void warm_unpin(ember_cache *c, int t, const int64_t *ids, int64_t n) {
    ember__slots *s = &c->t[t].dev;
    if (c->t[t].ident) return;
    for (int64_t i = 0; i < n; i++) {
        int32_t slot = ember__slots_find(s, ids[i]);
        if (slot >= 0 && s->m[slot].pin > 0) ember__slots_unpin(s, slot);
    }
}

static ember_status warm_job(ember_cache *c, void *arg) {
    warm_arg *a = arg;
    const int t = a->table;
    ember__ctable *tb = &c->t[t];
    ember__slots *s = &tb->dev;
    int64_t n = a->n < tb->nslots ? a->n : tb->nslots;
    if (tb->ident) { /* row i to slot i: load the ones not there yet */
        ember_status st = EMBER_OK;
        for (int64_t i0 = 0; i0 < n && st == EMBER_OK; i0 += WARMUP_CHUNK) {
            int64_t m = n - i0 < WARMUP_CHUNK ? n - i0 : WARMUP_CHUNK;
            st = load_reserve(c, m);
            if (st != EMBER_OK) break;
            for (int u = 0; u < c->nt; u++) c->ld[u] = (ember__load){0};
            char *p = c->plan.p;
            load_carve(c, t, m, &p);
            ember__load *l = &c->ld[t];
            int64_t *ids = (int64_t *)l->ids, k = 0;
            for (int64_t i = i0; i < i0 + m; i++)
                if (tb->loaded[a->ids[i]] == 0) {
                    tb->loaded[a->ids[i]] = 2;
                    ids[k++] = a->ids[i];
                }
            l->n = k;
            l->cnt = NULL;
            st = load_block(c, 0, c->stamp);
            if (st != EMBER_OK)
                for (int64_t i = 0; i < k; i++) tb->loaded[ids[i]] = 0;
        }
        return st;
    }
    ember__idmap seen;
    EMBER_TRY(ember__idmap_init(&seen, c->mm, WARMUP_CHUNK, 0));
    ember_status st = EMBER_OK;
    c->stamp++;
    for (int64_t i0 = 0; i0 < n && st == EMBER_OK; i0 += WARMUP_CHUNK) {
        int64_t m = n - i0 < WARMUP_CHUNK ? n - i0 : WARMUP_CHUNK;
        st = load_reserve(c, m);
        if (st != EMBER_OK) break;
        for (int u = 0; u < c->nt; u++) c->ld[u] = (ember__load){0};
        char *p = c->plan.p;
        load_carve(c, t, m, &p);
        ember__load *l = &c->ld[t];
        int64_t *ids = (int64_t *)l->ids;
        uint32_t *cnt = (uint32_t *)l->cnt;
        int64_t k = 0;
        ember__idmap_clear(&seen);
        for (int64_t i = i0; i < i0 + m; i++) {
            uint64_t cv = a->counts ? a->counts[i] : 1;
            uint32_t c32 = cv > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)cv;
            int32_t slot = ember__slots_find(s, a->ids[i]);
            if (slot >= 0) {
                if (s->m[slot].pin > 0) continue; /* listed twice: the first count stands */
                ember__slots_pin(s, slot);
                s->m[slot].freq = c32;
                s->m[slot].epoch = s->now_epoch;
                ember__slots_rekey(s, slot);
                continue;
            }
            if (ember__idmap_find(&seen, a->ids[i]) >= 0) continue;
            st = ember__idmap_insert(&seen, a->ids[i], 0);
            if (st != EMBER_OK) break;
            ids[k] = a->ids[i];
            cnt[k] = c32;
            k++;
        }
        l->n = k;
        if (st == EMBER_OK) st = load_block(c, 0, c->stamp);
    }
    ember__idmap_free(&seen);
    /* everything this call pinned goes back to the heap with its count */
    warm_unpin(c, t, a->ids, n);
    return st;
}

ember_status ember_cache_warmup(ember_cache *c, int table, const int64_t *ids, const uint64_t *counts,
                                int64_t n) {
    static const char fn[] = "ember_cache_warmup";
    EMBER_CHECK_NULL(c, fn);
    if (n < 0 || (n > 0 && !ids))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %lld ids at %p", fn, (long long)n, (const void *)ids);
    if (table < 0 || table >= c->nt)
        return ember__error(EMBER_ERR_INDEX, "%s: table %d is outside [0, %d)", fn, table, c->nt);
    const ember__ctable *tb = &c->t[table];
    int64_t m = n < tb->nslots ? n : tb->nslots;
    for (int64_t i = 0; i < m; i++)
        if (ids[i] < 0 || ids[i] >= tb->rows)
            return ember__error(EMBER_ERR_INDEX, "%s: table %d (\"%s\"): ids[%lld] = %lld is outside [0, %lld)",
                                fn, table, tb->name, (long long)i, (long long)ids[i], (long long)tb->rows);
    if (m == 0) return EMBER_OK;
    EMBER_TRY(check_quiet(c, fn, 1));
    warm_arg a = {table, ids, counts, n};
    return run_job(c, warm_job, &a);
}

/* ---- statistics ---- */

static void stats_sub(ember_cache_stats *a, const ember_cache_stats *b) {
    a->batches -= b->batches;
    a->lookups -= b->lookups;
    a->hits -= b->hits;
    a->unique -= b->unique;
    a->unique_hits -= b->unique_hits;
    a->evictions -= b->evictions;
    a->writebacks -= b->writebacks;
    a->protected_evictions -= b->protected_evictions;
    a->generated -= b->generated;
    a->host_hits -= b->host_hits;
    a->host_misses -= b->host_misses;
    for (int i = 0; i < EMBER_CACHE_LINK_COUNT; i++) {
        a->rows[i] -= b->rows[i];
        a->bytes[i] -= b->bytes[i];
    }
    for (int i = 0; i < EMBER_CACHE_PHASE_COUNT; i++) a->seconds[i] -= b->seconds[i];
    a->prepare_seconds -= b->prepare_seconds;
    a->hidden_seconds -= b->hidden_seconds;
    a->checkpoints -= b->checkpoints;
}

/* The memory fields: sizes fixed at create, so no lock. */
static void memory_stats(const ember_cache *c, ember_cache_stats *out) {
    int64_t slot = 0, meta = 0, f32 = 0, dram = 0;
    for (int t = 0; t < c->nt; t++) {
        const ember__ctable *tb = &c->t[t];
        slot += tb->nslots * (int64_t)tb->rb;
        f32 += tb->rows * (int64_t)tb->rb;
        if (tb->ident) meta += 2 * tb->rows;
        const ember__slots *ss[2] = {&tb->dev, &tb->hc};
        for (int i = 0; i < 2; i++)
            if (ss[i]->cap > 0)
                meta += ss[i]->cap * (int64_t)(2 * sizeof(ember__hent) + sizeof(ember__slotmeta) + sizeof(int32_t)) +
                        (int64_t)(ss[i]->map.cap * sizeof(ember__ident));
        if (tb->hslots > 0) dram += tb->hslots * (int64_t)tb->rb;
    }
    for (int k = 0; k < EMBER_CACHE_TIER_COUNT; k++) out->tier_rows[k] = out->tier_bytes[k] = 0;
    if (c->tiered) {
        int64_t map = 0;
        ember__tstore_bytes(c, out->tier_rows, out->tier_bytes, &map);
        dram = map;
        for (int k = 0; k < EMBER_CACHE_TIER_COUNT; k++) dram += out->tier_bytes[k];
    } else if (c->store == EMBER_CACHE_STORE_HOST) {
        dram = f32;
        out->tier_rows[EMBER_CACHE_TIER_HOT] = 0;
        for (int t = 0; t < c->nt; t++) out->tier_rows[EMBER_CACHE_TIER_HOT] += c->t[t].rows;
        out->tier_bytes[EMBER_CACHE_TIER_HOT] = f32;
    }
    out->slot_bytes = slot;
    out->meta_bytes = meta;
    out->store_bytes = dram;
    out->store_f32_bytes = f32;
}

static void snapshot(ember_cache *c, ember_cache_stats *s) {
    *s = c->pub;
    s->seconds[EMBER_CACHE_PHASE_WAIT] = c->ust.seconds[EMBER_CACHE_PHASE_WAIT];
    s->hidden_seconds = c->ust.hidden_seconds;
}

ember_status ember_cache_get_stats(ember_cache *c, ember_cache_stats *out) {
    EMBER_CHECK_NULL(c, "ember_cache_get_stats");
    EMBER_CHECK_NULL(out, "ember_cache_get_stats");
    pthread_mutex_lock(&c->mu);
    snapshot(c, out);
    stats_sub(out, &c->base);
    pthread_mutex_unlock(&c->mu);
    out->hit_rate = out->lookups ? (double)out->hits / (double)out->lookups : 0.0;
    out->unique_hit_rate = out->unique ? (double)out->unique_hits / (double)out->unique : 0.0;
    out->transfer_seconds = out->seconds[EMBER_CACHE_PHASE_WRITEBACK] + out->seconds[EMBER_CACHE_PHASE_READ] +
                            out->seconds[EMBER_CACHE_PHASE_LOAD];
    out->hidden_fraction = out->prepare_seconds > 0 ? out->hidden_seconds / out->prepare_seconds : 0.0;
    if (out->hidden_fraction > 1.0) out->hidden_fraction = 1.0;
    out->slots = out->slots_used = out->dirty = 0;
    /* slot occupancy: counts the worker keeps; read under the lock they are published with */
    pthread_mutex_lock(&c->mu);
    for (int t = 0; t < c->nt; t++) {
        out->slots += c->t[t].nslots;
    }
    out->slots_used = c->pub.slots_used;
    out->dirty = c->pub.dirty;
    pthread_mutex_unlock(&c->mu);
    memory_stats(c, out);
    return EMBER_OK;
}

void ember_cache_reset_stats(ember_cache *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    snapshot(c, &c->base);
    pthread_mutex_unlock(&c->mu);
}

size_t ember_cache_stats_json(const ember_cache_stats *s, char *buf, size_t n) {
    if (!s) return 0;
    char tmp[4096];
    size_t k = 0;
#define J(...) k += (size_t)snprintf(tmp + k, k < sizeof tmp ? sizeof tmp - k : 0, __VA_ARGS__)
    J("{\"batches\":%lld,\"lookups\":%lld,\"hits\":%lld,\"unique\":%lld,\"unique_hits\":%lld,"
      "\"hit_rate\":%.6g,\"unique_hit_rate\":%.6g,\"evictions\":%lld,\"writebacks\":%lld,"
      "\"protected_evictions\":%lld,\"generated\":%lld,\"host_hits\":%lld,\"host_misses\":%lld,",
      (long long)s->batches, (long long)s->lookups, (long long)s->hits, (long long)s->unique,
      (long long)s->unique_hits, s->hit_rate, s->unique_hit_rate, (long long)s->evictions,
      (long long)s->writebacks, (long long)s->protected_evictions, (long long)s->generated,
      (long long)s->host_hits, (long long)s->host_misses);
    J("\"rows\":{");
    for (int i = 0; i < EMBER_CACHE_LINK_COUNT; i++)
        J("%s\"%s\":%lld", i ? "," : "", link_names[i], (long long)s->rows[i]);
    J("},\"bytes\":{");
    for (int i = 0; i < EMBER_CACHE_LINK_COUNT; i++)
        J("%s\"%s\":%lld", i ? "," : "", link_names[i], (long long)s->bytes[i]);
    J("},\"seconds\":{");
    for (int i = 0; i < EMBER_CACHE_PHASE_COUNT; i++)
        J("%s\"%s\":%.6g", i ? "," : "", phase_names[i], s->seconds[i]);
    J("},\"prepare_seconds\":%.6g,\"transfer_seconds\":%.6g,\"hidden_seconds\":%.6g,"
      "\"hidden_fraction\":%.6g,\"slots\":%lld,\"slots_used\":%lld,\"dirty\":%lld,\"checkpoints\":%lld,",
      s->prepare_seconds, s->transfer_seconds, s->hidden_seconds, s->hidden_fraction, (long long)s->slots,
      (long long)s->slots_used, (long long)s->dirty, (long long)s->checkpoints);
    J("\"slot_bytes\":%lld,\"meta_bytes\":%lld,\"store_bytes\":%lld,\"store_f32_bytes\":%lld,\"tiers\":{",
      (long long)s->slot_bytes, (long long)s->meta_bytes, (long long)s->store_bytes, (long long)s->store_f32_bytes);
    for (int i = 0; i < EMBER_CACHE_TIER_COUNT; i++)
        J("%s\"%s\":{\"rows\":%lld,\"bytes\":%lld}", i ? "," : "", ember_cache_tier_name((ember_cache_tier)i),
          (long long)s->tier_rows[i], (long long)s->tier_bytes[i]);
    J("}}");
#undef J
    if (buf && n) snprintf(buf, n, "%s", tmp);
    return k;
}
