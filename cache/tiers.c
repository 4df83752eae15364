/*
 * Data movement between the cache's tiers, always in blocks: the device slots and one
 * contiguous staging block (one transfer each way), the staging block and the host
 * store or LMDB (one nested transaction per block, keys sorted so LMDB walks its
 * B-tree in order). Runs on the cache's worker thread only.
 *
 * The DRAM cache in front of LMDB is inclusive, allocates on read and updates on
 * write: a row the device cache misses is read from disk once and kept in DRAM; a
 * dirty row the device cache evicts updates the DRAM copy when there is one and goes
 * to disk otherwise. Its own victims (least recently used) go to disk in the same
 * nested transaction, so a block either lands whole or not at all.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "engine/internal.h"
#include "engine/philox.h"
#include "embedding/ebc_math.h"
#ifdef EMBER_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

/* ---- buffers ---- */

ember_status ember__buf_reserve(ember_memory *mm, ember_tier tier, ember_mem_kind kind, ember__buf *b,
                                size_t need) {
    if (need <= b->cap) return EMBER_OK;
    size_t grow = b->cap + b->cap / 2;
    size_t cap = need > grow ? need : grow;
    cap = (cap + 4095) & ~(size_t)4095;
    if (b->p) ember_memory_free(mm, b->p);
    b->p = NULL;
    b->cap = 0;
    EMBER_TRY(ember_memory_alloc(mm, tier, kind, cap, &b->p));
    b->cap = cap;
    return EMBER_OK;
}

void ember__buf_free(ember_memory *mm, ember__buf *b) {
    if (b->p) ember_memory_free(mm, b->p);
    b->p = NULL;
    b->cap = 0;
}

ember_status ember__reraise(ember_status st, const char *msg) {
    /* msg is "<STATUS>: text"; ember__error adds the prefix again. */
    const char *colon = strstr(msg, ": ");
    const char *name = ember_status_name(st);
    if (colon && (size_t)(colon - msg) == strlen(name) && strncmp(msg, name, strlen(name)) == 0)
        msg = colon + 2;
    return ember__error(st, "%s", msg);
}

/* ---- rows never stored ---- */

void ember__row_generate(ember_cache *c, int t, int64_t id, char *rec) {
    const ember__ctable *tb = &c->t[t];
    memset(rec, 0, tb->rb);
    if (c->init.kind == 1) {
        float *w = c->gen_tmp;
        const float lo = c->init.lo, hi = c->init.hi;
        uint64_t word = c->init.offset + tb->init_word + (uint64_t)id * (uint64_t)tb->dim;
        uint64_t blk = UINT64_MAX;
        ember__u32x4 r = {{0, 0, 0, 0}};
        for (int j = 0; j < tb->dim; j++, word++) {
            if ((word >> 2) != blk) {
                blk = word >> 2;
                r = ember__philox_block(c->init.seed, blk);
            }
            /* ember_rng_uniform's own expression: a + (b - a) * u, in f32 */
            w[j] = lo + (hi - lo) * ember__u32_to_unit(r.v[word & 3]);
        }
        ember__row_store(rec, tb->format, tb->dim, w);
    }
    float *s = (float *)(rec + tb->state_offset);
    for (int j = 0; j < tb->state_floats; j++) s[j] = c->state0;
}

/* ---- device slots <-> host blocks ---- */

ember_status ember__dev_gather(ember_cache *c, const ember__slotset *s, char *block, size_t bytes,
                               int buf) {
    (void)buf;
    if (!c->cuda) {
        for (int t = 0; t < c->nt; t++) {
            const ember__ctable *tb = &c->t[t];
            const size_t rb = tb->rb;
            char *dst = block + s[t].off;
            for (int64_t i = 0; i < s[t].n; i++)
                memcpy(dst + (size_t)i * rb, tb->slots + (size_t)s[t].slots[i] * rb, rb);
        }
        return EMBER_OK;
    }
#ifdef EMBER_HAVE_CUDA
    /* Slot lists up in one copy, a gather kernel per table into one device block, the
       block down in one copy, then wait: the rows are needed on the host next. */
    int64_t nidx = 0;
    for (int t = 0; t < c->nt; t++) nidx += s[t].n;
    if (nidx == 0) return EMBER_OK;
    int dev = c->dev.index;
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, &c->dindex,
                                 (size_t)nidx * sizeof(int32_t)));
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, &c->dstage, bytes));
    int32_t *didx = c->dindex.p;
    int64_t k = 0;
    for (int t = 0; t < c->nt; t++) {
        if (s[t].n == 0) continue;
        EMBER_TRY(ember__cuda_memcpy(dev, didx + k, s[t].slots, (size_t)s[t].n * sizeof(int32_t),
                                     EMBER__H2D, 0));
        const ember__ctable *tb = &c->t[t];
        EMBER_TRY(ember__cache_gather_cuda(dev, (char *)c->dstage.p + s[t].off, tb->slots, tb->rb, tb->rb,
                                           didx + k, s[t].n));
        k += s[t].n;
    }
    return ember__cuda_memcpy(dev, block, c->dstage.p, bytes, EMBER__D2H, 1);
#else
    (void)bytes;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache: CUDA not built");
#endif
}

ember_status ember__dev_scatter(ember_cache *c, const ember__slotset *s, const char *block,
                                size_t bytes, int buf) {
    (void)buf;
    if (!c->cuda) {
        for (int t = 0; t < c->nt; t++) {
            const ember__ctable *tb = &c->t[t];
            const size_t rb = tb->rb;
            const char *src = block + s[t].off;
            for (int64_t i = 0; i < s[t].n; i++)
                memcpy(tb->slots + (size_t)s[t].slots[i] * rb, src + (size_t)i * rb, rb);
        }
        return EMBER_OK;
    }
#ifdef EMBER_HAVE_CUDA
    int64_t nidx = 0;
    for (int t = 0; t < c->nt; t++) nidx += s[t].n;
    if (nidx == 0) return EMBER_OK;
    int dev = c->dev.index;
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, &c->dindex,
                                 (size_t)nidx * sizeof(int32_t)));
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_DEVICE, EMBER_MEM_STAGING, &c->dstage, bytes));
    /* the block up in one copy, then a scatter kernel per table; the caller records
       the event that orders the batch's kernels after it */
    EMBER_TRY(ember__cuda_memcpy(dev, c->dstage.p, block, bytes, EMBER__H2D, 0));
    int32_t *didx = c->dindex.p;
    int64_t k = 0;
    for (int t = 0; t < c->nt; t++) {
        if (s[t].n == 0) continue;
        EMBER_TRY(ember__cuda_memcpy(dev, didx + k, s[t].slots, (size_t)s[t].n * sizeof(int32_t),
                                     EMBER__H2D, 0));
        const ember__ctable *tb = &c->t[t];
        EMBER_TRY(ember__cache_scatter_cuda(dev, tb->slots, tb->rb, tb->rb,
                                            (const char *)c->dstage.p + s[t].off, didx + k, s[t].n));
        k += s[t].n;
    }
    return EMBER_OK;
#else
    (void)bytes;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache: CUDA not built");
#endif
}

/* ---- the tiers below the device cache ---- */

typedef struct keyref {
    int64_t id;
    int64_t idx;
} keyref;

static int keyref_cmp(const void *a, const void *b) {
    const keyref *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Per-table bookkeeping of one exchange with the DRAM cache. */
typedef struct hc_plan {
    int32_t *rslot;  /* (r.n,) DRAM slot of each read, -1 miss */
    int32_t *wslot;  /* (w.n,) DRAM slot of each write, -1 not resident */
    int32_t *vict;   /* (r.n,) DRAM victims for the read misses, in miss order */
    int64_t nvict;
    int64_t *vold;   /* (r.n,) their previous ids (-1: was free) */
} hc_plan;

static void hc_undo(ember__ctable *tb, const ember__rowset *w, const ember__rowset *r, hc_plan *p) {
    ember__slots *hc = &tb->hc;
    for (int64_t i = 0; i < p->nvict; i++) {
        int32_t s = p->vict[i];
        if (p->vold[i] >= 0) ember__slots_push(hc, s);
        else hc->freel[hc->free_n++] = s;
    }
    p->nvict = 0;
    for (int64_t i = 0; i < r->n; i++)
        if (p->rslot[i] >= 0) ember__slots_unpin(hc, p->rslot[i]);
    for (int64_t i = 0; i < w->n; i++)
        if (p->wslot[i] >= 0) ember__slots_unpin(hc, p->wslot[i]);
}

ember_status ember__lower_exchange(ember_cache *c, const ember__rowset *w, const ember__rowset *r) {
    const int nt = c->nt;
    if (c->store == EMBER_CACHE_STORE_HOST) {
        for (int t = 0; t < nt; t++) {
            const size_t rb = c->t[t].rb;
            for (int64_t i = 0; i < w[t].n; i++) ember__host_put(c, t, w[t].ids[i], w[t].data + (size_t)i * rb);
            for (int64_t i = 0; i < r[t].n; i++) ember__host_get(c, t, r[t].ids[i], r[t].data + (size_t)i * rb);
        }
        return EMBER_OK;
    }

    /* Scratch: DRAM-cache plans, then sorted key lists for the puts and the gets. */
    int64_t nr = 0, nw = 0, nvmax = 0;
    for (int t = 0; t < nt; t++) {
        nr += r[t].n;
        nw += w[t].n;
        if (c->t[t].hslots > 0) nvmax += r[t].n;
    }
    if (nr == 0 && nw == 0) return EMBER_OK;
    size_t need = (size_t)(nr + nw + nvmax + nr + nw) * sizeof(int32_t) + (size_t)nvmax * sizeof(int64_t) +
                  (size_t)(nr + nw + nvmax) * sizeof(keyref) + (size_t)nt * sizeof(hc_plan) + 256;
    EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, &c->xs, need));
    char *q = c->xs.p;
    hc_plan *plans = (hc_plan *)q;
    q += (size_t)nt * sizeof(hc_plan);
    keyref *keys = (keyref *)(((uintptr_t)q + 7) & ~(uintptr_t)7);
    q = (char *)(keys + nr + nw + nvmax);
    int64_t *vold_all = (int64_t *)q;
    q += (size_t)nvmax * sizeof(int64_t);
    int32_t *i32 = (int32_t *)q;
    int32_t *aside = i32 + (nr + nw + nvmax); /* pinned DRAM slots popped as victims */

    /* 1. DRAM cache: classify, pin what this block touches, choose victims (undoable). */
    for (int t = 0; t < nt; t++) {
        ember__ctable *tb = &c->t[t];
        hc_plan *p = &plans[t];
        memset(p, 0, sizeof *p);
        if (tb->hslots <= 0) continue;
        ember__slots *hc = &tb->hc;
        p->rslot = i32;
        i32 += r[t].n;
        p->wslot = i32;
        i32 += w[t].n;
        p->vict = i32;
        i32 += r[t].n;
        p->vold = vold_all;
        vold_all += r[t].n;
        int64_t misses = 0;
        for (int64_t i = 0; i < r[t].n; i++) {
            int32_t s = ember__slots_find(hc, r[t].ids[i]);
            p->rslot[i] = s;
            if (s >= 0) ember__slots_pin(hc, s);
            else misses++;
        }
        for (int64_t i = 0; i < w[t].n; i++) {
            int32_t s = ember__slots_find(hc, w[t].ids[i]);
            p->wslot[i] = s;
            if (s >= 0) ember__slots_pin(hc, s);
        }
        int64_t naside = 0;
        for (int64_t k = 0; k < misses; k++) {
            int32_t s;
            if (hc->free_n > 0) {
                s = hc->freel[--hc->free_n];
                p->vold[p->nvict] = -1;
            } else {
                while ((s = ember__slots_pop(hc)) >= 0 && hc->m[s].pin > 0) aside[naside++] = s;
                if (s < 0) break; /* the rest pass through without a DRAM copy */
                p->vold[p->nvict] = hc->m[s].id;
            }
            p->vict[p->nvict++] = s;
        }
        for (int64_t i = 0; i < naside; i++) ember__slots_push(hc, aside[i]);
    }

    /* 2. One nested transaction: puts (dirty DRAM victims, writes not held in DRAM), then
          gets (reads the DRAM cache missed), each table's keys in order. */
    ember_status st = ember__lmdb_block_begin(c->db);
    int64_t puts = 0, gets = 0, generated = 0, put_bytes = 0, get_bytes = 0;
    for (int t = 0; t < nt && st == EMBER_OK; t++) {
        ember__ctable *tb = &c->t[t];
        hc_plan *p = &plans[t];
        const size_t rb = tb->rb;
        int64_t nk = 0;
        for (int64_t i = 0; i < w[t].n; i++)
            if (!p->wslot || p->wslot[i] < 0) keys[nk++] = (keyref){w[t].ids[i], i};
        for (int64_t v = 0; v < p->nvict; v++)
            if (p->vold[v] >= 0 && tb->hc.m[p->vict[v]].dirty)
                keys[nk++] = (keyref){p->vold[v], -1 - v};
        qsort(keys, (size_t)nk, sizeof *keys, keyref_cmp);
        for (int64_t k = 0; k < nk && st == EMBER_OK; k++) {
            const char *src = keys[k].idx >= 0 ? w[t].data + (size_t)keys[k].idx * rb
                                               : tb->hdata + (size_t)p->vict[-1 - keys[k].idx] * rb;
            st = ember__lmdb_put(c->db, t, keys[k].id, src, rb);
        }
        puts += nk;
        put_bytes += nk * (int64_t)rb;
        nk = 0;
        for (int64_t i = 0; i < r[t].n; i++)
            if (!p->rslot || p->rslot[i] < 0) keys[nk++] = (keyref){r[t].ids[i], i};
        qsort(keys, (size_t)nk, sizeof *keys, keyref_cmp);
        for (int64_t k = 0; k < nk && st == EMBER_OK; k++) {
            const void *rec = NULL;
            char *dst = r[t].data + (size_t)keys[k].idx * rb;
            ember_status g = ember__lmdb_get(c->db, t, keys[k].id, rb, &rec);
            if (g == EMBER_OK) {
                memcpy(dst, rec, rb);
                gets++;
                get_bytes += (int64_t)rb;
            } else if (g == EMBER_ERR_NOT_FOUND) {
                ember__row_generate(c, t, keys[k].id, dst);
                generated++;
            } else {
                st = g;
            }
        }
    }
    if (st == EMBER_OK) st = ember__lmdb_block_end(c->db, 1);
    if (st != EMBER_OK) {
        ember__lmdb_block_end(c->db, 0);
        for (int t = 0; t < nt; t++)
            if (c->t[t].hslots > 0) hc_undo(&c->t[t], &w[t], &r[t], &plans[t]);
        return st;
    }

    /* 3. Commit to the DRAM cache (memory only, cannot fail). */
    const int64_t stamp = c->stamp;
    for (int t = 0; t < nt; t++) {
        ember__ctable *tb = &c->t[t];
        if (tb->hslots <= 0) continue;
        hc_plan *p = &plans[t];
        ember__slots *hc = &tb->hc;
        const size_t rb = tb->rb;
        int64_t v = 0;
        for (int64_t i = 0; i < r[t].n; i++) {
            int32_t s = p->rslot[i];
            if (s >= 0) {
                memcpy(r[t].data + (size_t)i * rb, tb->hdata + (size_t)s * rb, rb);
                ember__slots_touch(hc, s, stamp, 1);
                ember__slots_unpin(hc, s);
                c->wst.host_hits++;
            } else {
                c->wst.host_misses++;
                if (v < p->nvict) {
                    int32_t hs = p->vict[v++];
                    /* the new id cannot clash: it was a miss */
                    (void)ember__slots_bind(hc, hs, r[t].ids[i], stamp, 1);
                    memcpy(tb->hdata + (size_t)hs * rb, r[t].data + (size_t)i * rb, rb);
                    ember__slots_push(hc, hs);
                }
            }
        }
        for (int64_t i = 0; i < w[t].n; i++) {
            int32_t s = p->wslot[i];
            if (s < 0) continue;
            memcpy(tb->hdata + (size_t)s * rb, w[t].data + (size_t)i * rb, rb);
            ember__slots_set_dirty(hc, s, 1);
            ember__slots_touch(hc, s, stamp, 1);
            ember__slots_unpin(hc, s);
        }
    }
    c->wst.rows[EMBER_CACHE_LINK_HOST_TO_DISK] += puts;
    c->wst.rows[EMBER_CACHE_LINK_DISK_TO_HOST] += gets;
    c->wst.bytes[EMBER_CACHE_LINK_HOST_TO_DISK] += put_bytes;
    c->wst.bytes[EMBER_CACHE_LINK_DISK_TO_HOST] += get_bytes;
    c->wst.generated += generated;
    return EMBER_OK;
}

/* ---- flush ---- */

#define FLUSH_BLOCK_BYTES ((size_t)32 << 20)

ember_status ember__flush(ember_cache *c) {
    for (int t = 0; t < c->nt; t++) {
        ember__ctable *tb = &c->t[t];
        ember__slots *d = &tb->dev;
        if (!tb->ident && d->ndirty == 0) continue;
        int64_t ndirty = d->ndirty;
        if (tb->ident) {
            ndirty = 0;
            for (int64_t r = 0; r < tb->rows; r++) ndirty += tb->loaded[r] == 3;
            if (ndirty == 0) continue;
        }
        int64_t chunk = (int64_t)(FLUSH_BLOCK_BYTES / tb->rb);
        if (chunk < 1) chunk = 1;
        if (chunk > ndirty) chunk = ndirty;
        size_t bytes = (size_t)chunk * tb->rb;
        EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_PINNED, EMBER_MEM_STAGING, &c->stage[0], bytes));
        EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, &c->plan,
                                     (size_t)chunk * (sizeof(int32_t) + sizeof(int64_t))));
        int64_t *ids = c->plan.p;
        int32_t *slots = (int32_t *)(ids + chunk);
        int64_t s = 0, scap = tb->ident ? tb->rows : d->cap;
        while (s < scap) {
            int64_t n = 0;
            for (; s < scap && n < chunk; s++)
                if (tb->ident ? tb->loaded[s] == 3 : d->m[s].dirty) {
                    slots[n] = (int32_t)s;
                    ids[n] = tb->ident ? s : d->m[s].id;
                    n++;
                }
            if (n == 0) break;
            memset(c->sset, 0, sizeof *c->sset * (size_t)c->nt);
            memset(c->wset, 0, sizeof *c->wset * (size_t)c->nt);
            memset(c->rset, 0, sizeof *c->rset * (size_t)c->nt);
            c->sset[t] = (ember__slotset){n, slots, 0};
            c->wset[t] = (ember__rowset){n, ids, c->stage[0].p};
            ember_status st = ember__dev_gather(c, c->sset, c->stage[0].p, (size_t)n * tb->rb, 0);
            if (st == EMBER_OK) st = ember__lower_exchange(c, c->wset, c->rset);
            EMBER_TRY(st);
            for (int64_t i = 0; i < n; i++) ember__dev_set_dirty(tb, slots[i], 0);
            c->wst.rows[EMBER_CACHE_LINK_DEVICE_TO_HOST] += n;
            c->wst.bytes[EMBER_CACHE_LINK_DEVICE_TO_HOST] += n * (int64_t)tb->rb;
        }
    }
    if (c->store != EMBER_CACHE_STORE_LMDB) return EMBER_OK;
    /* the DRAM cache's dirty rows, all in one nested transaction */
    int any = 0;
    for (int t = 0; t < c->nt; t++) any |= c->t[t].hslots > 0 && c->t[t].hc.ndirty > 0;
    if (!any) return EMBER_OK;
    EMBER_TRY(ember__lmdb_block_begin(c->db));
    ember_status st = EMBER_OK;
    int64_t puts = 0;
    for (int t = 0; t < c->nt && st == EMBER_OK; t++) {
        ember__ctable *tb = &c->t[t];
        ember__slots *hc = &tb->hc;
        if (tb->hslots <= 0 || hc->ndirty == 0) continue;
        EMBER_TRY(ember__buf_reserve(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, &c->xs,
                                     (size_t)hc->ndirty * sizeof(keyref)));
        keyref *keys = c->xs.p;
        int64_t nk = 0;
        for (int64_t s = 0; s < hc->cap; s++)
            if (hc->m[s].dirty) keys[nk++] = (keyref){hc->m[s].id, s};
        qsort(keys, (size_t)nk, sizeof *keys, keyref_cmp);
        for (int64_t k = 0; k < nk && st == EMBER_OK; k++)
            st = ember__lmdb_put(c->db, t, keys[k].id, tb->hdata + (size_t)keys[k].idx * tb->rb, tb->rb);
        puts += nk;
        c->wst.bytes[EMBER_CACHE_LINK_HOST_TO_DISK] += nk * (int64_t)tb->rb;
    }
    if (st == EMBER_OK) st = ember__lmdb_block_end(c->db, 1);
    if (st != EMBER_OK) {
        ember__lmdb_block_end(c->db, 0);
        return st;
    }
    for (int t = 0; t < c->nt; t++) {
        ember__slots *hc = &c->t[t].hc;
        if (c->t[t].hslots <= 0) continue;
        for (int64_t s = 0; s < hc->cap; s++)
            if (hc->m[s].dirty) ember__slots_set_dirty(hc, (int32_t)s, 0);
    }
    c->wst.rows[EMBER_CACHE_LINK_HOST_TO_DISK] += puts;
    return EMBER_OK;
}

/* ---- single rows (row I/O calls; not the training path) ---- */

ember_status ember__row_fetch(ember_cache *c, int t, int64_t id, char *rec) {
    ember__ctable *tb = &c->t[t];
    int32_t s = ember__dev_slot(tb, id);
    if (s >= 0) {
        const char *src = tb->slots + (size_t)s * tb->rb;
        if (!c->cuda) {
            memcpy(rec, src, tb->rb);
            return EMBER_OK;
        }
#ifdef EMBER_HAVE_CUDA
        return ember__cuda_memcpy(c->dev.index, rec, src, tb->rb, EMBER__D2H, 1);
#endif
    }
    if (c->store == EMBER_CACHE_STORE_HOST) {
        ember__host_get(c, t, id, rec);
        return EMBER_OK;
    }
    if (tb->hslots > 0 && (s = ember__slots_find(&tb->hc, id)) >= 0) {
        memcpy(rec, tb->hdata + (size_t)s * tb->rb, tb->rb);
        return EMBER_OK;
    }
    const void *p = NULL;
    ember_status st = ember__lmdb_get(c->db, t, id, tb->rb, &p);
    if (st == EMBER_ERR_NOT_FOUND) {
        ember__row_generate(c, t, id, rec);
        return EMBER_OK;
    }
    EMBER_TRY(st);
    memcpy(rec, p, tb->rb);
    return EMBER_OK;
}

void ember__drop_caches(ember_cache *c) {
    for (int t = 0; t < c->nt; t++) {
        ember__ctable *tb = &c->t[t];
        if (tb->ident) {
            memset(tb->loaded, 0, (size_t)tb->rows);
            tb->nloaded = 0;
        }
        ember__slots_reset(&c->t[t].dev);
        if (c->t[t].hslots > 0) ember__slots_reset(&c->t[t].hc);
    }
}

ember_status ember__rows_store(ember_cache *c, int t, int64_t first, int64_t n, const char *recs) {
    ember__ctable *tb = &c->t[t];
    const size_t rb = tb->rb;
    if (c->store == EMBER_CACHE_STORE_LMDB) {
        /* the rows that live only on disk, first: if that block fails nothing changed */
        int any = 0;
        for (int64_t i = 0; i < n && !any; i++)
            any = ember__dev_slot(tb, first + i) < 0 &&
                  (tb->hslots <= 0 || ember__slots_find(&tb->hc, first + i) < 0);
        if (any) {
            EMBER_TRY(ember__lmdb_block_begin(c->db));
            ember_status st = EMBER_OK;
            int64_t puts = 0;
            for (int64_t i = 0; i < n && st == EMBER_OK; i++) {
                int64_t id = first + i;
                if (ember__dev_slot(tb, id) >= 0) continue;
                if (tb->hslots > 0 && ember__slots_find(&tb->hc, id) >= 0) continue;
                st = ember__lmdb_put(c->db, t, id, recs + (size_t)i * rb, rb);
                puts++;
            }
            if (st == EMBER_OK) st = ember__lmdb_block_end(c->db, 1);
            if (st != EMBER_OK) {
                ember__lmdb_block_end(c->db, 0);
                return st;
            }
            c->wst.rows[EMBER_CACHE_LINK_HOST_TO_DISK] += puts;
            c->wst.bytes[EMBER_CACHE_LINK_HOST_TO_DISK] += puts * (int64_t)rb;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t id = first + i;
        const char *src = recs + (size_t)i * rb;
        int32_t s = ember__dev_slot(tb, id);
        if (s >= 0) {
            char *dst = tb->slots + (size_t)s * rb;
            if (!c->cuda) {
                memcpy(dst, src, rb);
            } else {
#ifdef EMBER_HAVE_CUDA
                EMBER_TRY(ember__cuda_memcpy(c->dev.index, dst, src, rb, EMBER__H2D, 1));
#endif
            }
            ember__dev_set_dirty(tb, s, 1);
        } else if (c->store == EMBER_CACHE_STORE_HOST) {
            ember__host_put(c, t, id, src);
        } else if (tb->hslots > 0 && (s = ember__slots_find(&tb->hc, id)) >= 0) {
            memcpy(tb->hdata + (size_t)s * rb, src, rb);
            ember__slots_set_dirty(&tb->hc, s, 1);
        }
    }
    return EMBER_OK;
}
