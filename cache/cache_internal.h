/*
 * cache/cache_internal.h: what the cache's source files share. Not installed.
 *
 * Metadata is O(slots), never O(table rows): an open-addressing id -> slot map sized
 * to the slots, and per slot its id, use counts, last use, pin count and dirty bit.
 * Eviction order is a binary min-heap of entries that carry a snapshot of their
 * slot's key, so sifting reads only the heap's own contiguous memory. It is lazy:
 * a use of a row (a hit) only updates the slot's counts, O(1); an entry whose slot
 * has been used since its snapshot is refreshed and sifted down only when it reaches
 * the top, which the rows in use rarely do. Keys only grow with use, so the top, once
 * fresh, is the true minimum. Pinned slots (rows of batches in flight) stay in the
 * heap and are set aside when they come up as victims; a release is O(1).
 *
 * LFU ages by halving every count once per aging interval, lazily: a slot keeps the
 * epoch its count was taken in and its effective count is count >> (now - epoch).
 * Halving is monotone, so the heap stays ordered by effective count as epochs pass
 * (only ties may reorder, which is harmless), and aging costs O(1) however large the
 * cache.
 */
#ifndef EMBER_CACHE_INTERNAL_H
#define EMBER_CACHE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ember/cache.h"
#include "ember/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- id map: int64 id -> int32 value, linear probing, backward-shift deletion ---- */

typedef struct ember__ident {
    int64_t key; /* id, or -1 (empty) */
    int32_t val;
    int32_t pad;
} ember__ident;

typedef struct ember__idmap {
    ember__ident *e; /* (cap,) key and value side by side: one cache line per probe */
    uint64_t cap;   /* power of two >= 16 */
    int shift;      /* 64 - log2(cap) */
    int64_t n;      /* keys held */
    int growable;   /* owned buffers that double when half full */
    ember_memory *mm;
} ember__idmap;

/* A map for up to `max_keys` keys (load <= 1/2). growable: it may take more. */
ember_status ember__idmap_init(ember__idmap *m, ember_memory *mm, int64_t max_keys, int growable);
void ember__idmap_free(ember__idmap *m);
void ember__idmap_clear(ember__idmap *m);
/* Value of id, or -1. */
int32_t ember__idmap_find(const ember__idmap *m, int64_t id);
/* Insert an absent id (growable maps grow first when needed). */
ember_status ember__idmap_insert(ember__idmap *m, int64_t id, int32_t val);
/* Add delta to id's value, inserting it with delta; a value reaching 0 removes it. */
ember_status ember__idmap_add(ember__idmap *m, int64_t id, int32_t delta);
/* Remove id if present; returns 1 if it was. */
int ember__idmap_erase(ember__idmap *m, int64_t id);

static inline uint64_t ember__idmap_home(const ember__idmap *m, int64_t id) {
    return ((uint64_t)id * 0x9E3779B97F4A7C15ull) >> m->shift;
}

/* Start loading id's bucket (the lookups of a batch are independent: prefetching a
   few ahead hides the cache misses of a large map). */
static inline void ember__idmap_prefetch(const ember__idmap *m, int64_t id) {
    uint64_t h = ember__idmap_home(m, id);
    __builtin_prefetch(&m->e[h]);
}

#define EMBER__PF_AHEAD 8

/* Large DRAM arrays read at random (slots, metadata, maps): ask for 2 MB pages, which
   save a TLB miss per access. Advice only. */

/* ---- slot set: one tier's slots of one table ---- */

/* A heap entry: the key of its slot when it was (re)placed, and the slot's generation
   then (an entry of an older generation is dead). */
typedef struct ember__hent {
    uint32_t freq, epoch;
    int64_t last;
    int32_t slot;
    uint32_t gen;
} ember__hent;

/* Per-slot metadata, together: one cache line per slot touched. */
typedef struct ember__slotmeta {
    int64_t id;     /* -1: free */
    int64_t last;   /* stamp of the last use */
    uint32_t freq;  /* LFU count (taken at epoch) or STATIC rank */
    uint32_t epoch;
    uint32_t gen;   /* generation: bumped when the slot's heap entry is dropped */
    int32_t pin;    /* batches (or operations) holding the slot */
    uint8_t dirty;  /* newer than the tier below */
} ember__slotmeta;

typedef struct ember__slots {
    int64_t cap;        /* slots */
    int policy;         /* ember_cache_policy */
    ember__idmap map;   /* id -> slot */
    ember__slotmeta *m; /* (cap,) */
    ember__hent *heap;  /* (2 cap,) min = next victim; dead entries are skipped */
    int64_t heap_n;
    int32_t *freel;     /* (cap,) free slots (stack) */
    int64_t free_n;
    int64_t pinned;     /* slots with pin > 0 */
    int64_t ndirty;
    uint32_t now_epoch;
    void *block;        /* the one allocation behind the arrays */
    ember_memory *mm;
} ember__slots;

ember_status ember__slots_init(ember__slots *s, ember_memory *mm, int64_t cap, int policy);
void ember__slots_free(ember__slots *s);
/* Forget every row (all slots free, clean, unpinned). */
void ember__slots_reset(ember__slots *s);
static inline int32_t ember__slots_find(const ember__slots *s, int64_t id) {
    return ember__idmap_find(&s->map, id);
}
/* Pins only count: a pinned slot keeps its heap entry and is never chosen as victim. */
static inline void ember__slots_pin(ember__slots *s, int32_t slot) {
    if (s->m[slot].pin++ == 0) s->pinned++;
}
static inline void ember__slots_unpin(ember__slots *s, int32_t slot) {
    if (--s->m[slot].pin == 0) s->pinned--;
}
/* Remove and return the occupied slot of least key (pinned ones included: the caller
   sets those aside and pushes them back), or -1 when the heap is empty. */
int32_t ember__slots_pop(ember__slots *s);
/* Give a popped slot (or a newly bound one) its heap entry, keyed as it is now. */
void ember__slots_push(ember__slots *s, int32_t slot);
/* The slot's key changed other than by use (warm-up counts): a new entry. */
void ember__slots_rekey(ember__slots *s, int32_t slot);
/* The slot's effective LFU count now. */
uint32_t ember__slots_eff(const ember__slots *s, int32_t slot);
/* Record a use: LFU adds `count` lookups, every policy sets last = stamp. O(1). */
void ember__slots_touch(ember__slots *s, int32_t slot, int64_t stamp, uint32_t count);
/* Bind a free or popped slot to id (its old id leaves the map); counts reset to
   freq = count, last = stamp; clean. The caller pushes it. */
ember_status ember__slots_bind(ember__slots *s, int32_t slot, int64_t id, int64_t stamp, uint32_t count);
/* Make a slot free (its id leaves the map, its entry dies). */
void ember__slots_release_slot(ember__slots *s, int32_t slot);
void ember__slots_set_dirty(ember__slots *s, int32_t slot, int dirty);

/* ---- LMDB store (cache/lmdb_store.c); every call on the thread that opened it ---- */

typedef struct ember__lmdb ember__lmdb;

/* The table layout a store holds; compared on open. */
typedef struct ember__store_table {
    int64_t rows;
    int32_t dim, format, state_floats;
    uint64_t record_bytes, state_offset;
} ember__store_table;

typedef struct ember__store_init {
    uint32_t kind; /* 0: zeros; 1: uniform */
    uint64_t seed, offset;
    float lo, hi;
} ember__store_init;

typedef struct ember__lmdb_params {
    const char *path;
    int open;           /* ember_cache_open */
    size_t map_size;
    int num_tables;
    const ember__store_table *tables;
    int optim;          /* ember_sparse_optim */
} ember__lmdb_params;

/* Open or create; begins the long write transaction. *step: last checkpoint or -1. */
ember_status ember__lmdb_open(const ember__lmdb_params *p, ember__lmdb **out, int *created,
                              int64_t *step, ember__store_init *init);
/* Abort the open transaction (discarding updates since the last checkpoint) and close. */
void ember__lmdb_close(ember__lmdb *db);
/* One nested transaction for a block of puts and gets. */
ember_status ember__lmdb_block_begin(ember__lmdb *db);
ember_status ember__lmdb_block_end(ember__lmdb *db, int commit);
ember_status ember__lmdb_put(ember__lmdb *db, int table, int64_t id, const void *rec, size_t bytes);
/* *rec points into the store until the block ends; EMBER_ERR_NOT_FOUND when absent
   (no message set). A value of another size is EMBER_ERR_FORMAT. */
ember_status ember__lmdb_get(ember__lmdb *db, int table, int64_t id, size_t bytes, const void **rec);
/* Record the initialiser and drop every stored row (inside the open transaction). */
ember_status ember__lmdb_reset(ember__lmdb *db, const ember__store_init *init);
/* Record step, commit with a durable sync, begin the next transaction. On failure
   the updates since the last checkpoint are lost and the handle is unusable. */
ember_status ember__lmdb_checkpoint(ember__lmdb *db, int64_t step);
const char *ember__lmdb_path(const ember__lmdb *db);

/* ---- the cache object (cache/cache.c: pipeline and API; cache/tiers.c: data movement) ---- */

/* A growable buffer of one tier and kind of the cache's manager (contents not kept). */
typedef struct ember__buf {
    void *p;
    size_t cap;
} ember__buf;

/* Rows of one table moved as a block: record i (id ids[i]) at data + i * rb. */
typedef struct ember__rowset {
    int64_t n;
    const int64_t *ids;
    char *data;
} ember__rowset;

/* Per table: slots and where their records go in a host block. */
typedef struct ember__slotset {
    int64_t n;
    const int32_t *slots;
    size_t off;
} ember__slotset;

/* ---- the tiered host store (cache/store.c) ---- */

/* Rank directory of 64 rows: which are HOT and which WARM (the rest COLD), and how many
   of each come before the word, so a row's index in its tier is two popcounts away. */
typedef struct ember__tword {
    uint64_t hot, warm;
    int64_t hot_before, warm_before;
} ember__tword;

/* One table's rows in the host store, each tier packed: HOT [weights | state] as the
   slots hold them (padding dropped); WARM [f16 weights | state]; COLD [int8-rowwise
   weights (f16 when dim <= 8) | state], the state as nseg vectors of seglen floats in
   state_fmt (cache/store.c says which). */
typedef struct ember__tstore {
    int64_t rows;
    ember__tword *dir;          /* (ceil(rows / 64),), or NULL: every row HOT, index = id */
    int64_t n[EMBER_CACHE_TIER_COUNT];
    size_t rb[EMBER_CACHE_TIER_COUNT];   /* packed bytes of a row in each tier */
    size_t wb[EMBER_CACHE_TIER_COUNT];   /* of which weights */
    char *data[EMBER_CACHE_TIER_COUNT];  /* (n[k], rb[k]) */
    int seglen, nseg;           /* the state as nseg vectors of seglen floats */
    int state_fmt[EMBER_CACHE_TIER_COUNT]; /* ember_row_format of the state in each tier */
} ember__tstore;

typedef struct ember__ctable {
    const char *name;  /* the compute collection's copy */
    int64_t rows;
    int dim, format, state_floats;
    size_t rb, state_offset; /* record bytes; byte offset of the state */
    int64_t nslots;
    char *slots;       /* (nslots, rb) DEVICE tier: the device cache */
    ember__slots dev;  /* (not used when ident) */
    /* The slots hold every row (nslots == rows): row i lives in slot i, nothing is ever
       evicted, and a lookup needs no map, no pin, no remap: one byte of state per row. */
    int ident;
    uint8_t *loaded;   /* (rows,) ident: 0 absent, 1 clean, 2 being loaded, 3 dirty */
    uint8_t *seen;     /* (rows,) ident: generation of the batch that last counted the row */
    uint8_t seen_gen;
    int64_t nloaded;
    char *host;        /* (rows, rb) the host store (the host collection's table), or NULL */
    ember__tstore ts;  /* the host store when the cache has tiers (host is NULL then) */
    int64_t hslots;    /* LMDB: rows of the DRAM cache in front of the disk */
    char *hdata;       /* (hslots, rb) HOST tier */
    ember__slots hc;
    ember__idmap future; /* ids of batches analysed but not yet prepared -> batches */
    uint64_t init_word;  /* initialiser: stream word of row 0 relative to its offset */
} ember__ctable;

/* One table's part of a batch, from the analysis. */
typedef struct ember__cfeat {
    int64_t off0, n_used; /* offsets[0], offsets[B] - offsets[0] */
    int64_t nuniq, nmiss;
    int64_t *uniq;    /* (nuniq,) distinct ids in first-seen order */
    uint32_t *ucnt;   /* (nuniq,) lookups of each */
    int32_t *inv;     /* (n_used,) position -> index in uniq */
    int32_t *uslot;   /* (nuniq,) slot, once prepared */
    int64_t hits, uhits;
    int64_t nseen;    /* distinct ids (ident tables, which keep no uniq list of hits) */
    int64_t own_free, own_pinned; /* prepare's plan: hits in unpinned and in pinned slots */
    int64_t pinned_before;        /* the table's pinned slots before this batch's hits were pinned */
} ember__cfeat;

enum {
    EMBER__B_FREE,
    EMBER__B_SUBMITTED,
    EMBER__B_ANALYZED,
    EMBER__B_PREPARED,
    EMBER__B_FAILED,
    EMBER__B_HANDED,
    EMBER__B_RELEASING
};

typedef struct ember__cbatch {
    int64_t seq;
    int state;
    int updated;    /* release: rows were changed */
    int registered; /* its ids are in the future sets */
    ember_status st;
    char err[1024];
    int64_t B;
    ember_jagged_feature *in;  /* (nt,) the caller's arrays */
    ember__cfeat *f;           /* (nt,) */
    ember__buf meta;           /* HOST: the analysis arrays */
    ember__buf dev;            /* DEVICE: remapped values, offsets, weights */
    ember__buf pin;            /* PINNED: their host mirror (CUDA) */
    ember_jagged_feature *out; /* (nt,) */
    ember_cache_batch pub;
    double prep_sec;
    ember_event *ready, *done; /* CUDA: copies finished; kernels finished */
} ember__cbatch;

typedef struct ember__job {
    ember_status (*fn)(ember_cache *c, void *arg);
    void *arg;
    int done;
    ember_status st;
    char err[1024];
} ember__job;

#define EMBER__DEDUP_MAX 32 /* the analyze pass's threads at most (its hash tables) */

struct ember_cache {
    int nt;
    ember__ctable *t;
    ember_memory *mm;
    ember_device dev;
    int cuda;
    int prep_threads; /* the prepare's per-table loops: host threads (> 1 only when the kernels run on a GPU) */
    ember_ebc *compute;  /* kernels only: one row per table */
    ember_ebc *host_ebc; /* HOST store */
    ember_ebc_rows *rows; /* (nt,) */
    int64_t *table_rows;  /* (nt,) */
    int policy, lookahead, store;
    int64_t aging, aging_count;
    int optim;
    float state0;
    ember__store_init init;
    uint64_t init_words;  /* stream words of all tables */
    int tiered;           /* the host store is tiered (every table has its ts) */
    int tier_stochastic;
    uint64_t tier_seed;
    char *tier_rec;       /* (max record bytes) worker scratch of the tiered store */
    /* LMDB */
    ember__lmdb *db;
    ember__lmdb_params dbp;
    ember__store_table *dbt;
    char *path;
    int64_t ckpt_step;
    int broken;
    char broken_msg[512];
    /* pipeline */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_w, cv_u;
    int stop;
    ember__cbatch *ring;
    int ring_cap;
    int64_t n_sub, n_ana, n_prep, n_hand, n_ret; /* batches submitted, analysed, prepared
                                                    (or failed), handed out, retired */
    int64_t wanted;   /* highest batch asked for by next (-1 none) */
    int held;         /* handed out, not released */
    int64_t rel_gen;  /* releases so far */
    int64_t short_seq, short_gen; /* a prepare waiting for releases */
    ember__job *job;
    ember_cache_stats pub;  /* the worker's counters as last published (under mu) */
    ember_cache_stats ust;  /* the caller's: WAIT and hidden time (under mu) */
    ember_cache_stats base; /* subtracted by get_stats (reset_stats) */
    ember_cache_stats wst;  /* worker-only: counters being accumulated */
    /* worker-only scratch */
    ember__buf dedup[EMBER__DEDUP_MAX], plan, xs, stage[2], dstage, dindex;
    uint32_t dedup_gen[EMBER__DEDUP_MAX]; /* one hash table per analyze thread */
    ember_event *stage_ev[2];
    ember_stream *copy;
    ember__slotset *sset; /* (nt,) per-table lists of one block */
    ember__rowset *wset, *rset;
    struct ember__load *ld; /* (nt,) per-table plan of one load */
    int64_t stamp;
    float *gen_tmp; /* (max dim,) */
};

/* cache/tiers.c */
ember_status ember__buf_reserve(ember_memory *mm, ember_tier tier, ember_mem_kind kind, ember__buf *b,
                                size_t need);
void ember__buf_free(ember_memory *mm, ember__buf *b);

/* Write w (dirty rows from above) to, and read r (missed rows) from, the tiers below the
   device cache: one block each way, one nested LMDB transaction. On failure nothing
   below has changed that matters (a write-back that did land is still cached dirty). */
ember_status ember__lower_exchange(ember_cache *c, const ember__rowset *w, const ember__rowset *r);
/* Device slots to a host block (one transfer), and back. */
ember_status ember__dev_gather(ember_cache *c, const ember__slotset *s, char *block, size_t bytes,
                               int buf);
ember_status ember__dev_scatter(ember_cache *c, const ember__slotset *s, const char *block,
                                size_t bytes, int buf);
/* Store n records of rows [first, first + n) wherever each lives (disk rows in one
   nested transaction first, so a failure changes nothing). */
ember_status ember__rows_store(ember_cache *c, int t, int64_t first, int64_t n, const char *recs);
/* Write every dirty device row down, then (LMDB) every dirty row of the DRAM cache. */
ember_status ember__flush(ember_cache *c);
/* The device slot of a row, or -1 when it is not cached. */
static inline int32_t ember__dev_slot(const ember__ctable *tb, int64_t id) {
    if (tb->ident) return tb->loaded[id] == 1 || tb->loaded[id] == 3 ? (int32_t)id : -1;
    return ember__slots_find(&tb->dev, id);
}
/* Mark a cached row dirty (or clean). */
static inline void ember__dev_set_dirty(ember__ctable *tb, int32_t slot, int dirty) {
    if (tb->ident) tb->loaded[slot] = dirty ? 3 : 1;
    else ember__slots_set_dirty(&tb->dev, slot, dirty);
}
/* One row's record wherever it lives, and back. */
ember_status ember__row_fetch(ember_cache *c, int t, int64_t id, char *rec);
/* The record of a row never stored: the initialiser's weights, initial state. */
void ember__row_generate(ember_cache *c, int t, int64_t id, char *rec);
/* Forget every cached row (no write-back). */
void ember__drop_caches(ember_cache *c);
/* Re-raise an error captured on another thread on this one. */
ember_status ember__reraise(ember_status st, const char *msg);

/* cache/store.c: the tiered host store. */
/* Build every table's tiers from cfg->tiers (checked here) and fill the store with
   weights 0 and initial state. */
ember_status ember__tstore_create(ember_cache *c, const ember_cache_tiers *tiers);
void ember__tstore_free(ember_cache *c);
/* Row id of table t: its record (the slots' layout) from, and into, the store. */
void ember__tstore_get(const ember_cache *c, int t, int64_t id, char *rec);
void ember__tstore_put(const ember_cache *c, int t, int64_t id, const char *rec);
ember_cache_tier ember__tstore_tier(const ember__tstore *s, int64_t id);
/* The host store's rows: from the initialiser c->init (as ember_ebc_init_uniform). */
void ember__tstore_init_rows(ember_cache *c);
/* store bytes, per tier, and of the tier maps. */
void ember__tstore_bytes(const ember_cache *c, int64_t *tier_rows, int64_t *tier_bytes, int64_t *map_bytes);

/* The host store (EMBER_CACHE_STORE_HOST): row id's record from, and into, it. */
static inline void ember__host_get(const ember_cache *c, int t, int64_t id, char *rec) {
    const ember__ctable *tb = &c->t[t];
    if (c->tiered) ember__tstore_get(c, t, id, rec);
    else memcpy(rec, tb->host + (size_t)id * tb->rb, tb->rb);
}
static inline void ember__host_put(const ember_cache *c, int t, int64_t id, const char *rec) {
    const ember__ctable *tb = &c->t[t];
    if (c->tiered) ember__tstore_put(c, t, id, rec);
    else memcpy(tb->host + (size_t)id * tb->rb, rec, tb->rb);
}
static inline void ember__host_prefetch(const ember_cache *c, int t, int64_t id) {
    const ember__ctable *tb = &c->t[t];
    if (!c->tiered) __builtin_prefetch(tb->host + (size_t)id * tb->rb);
    else if (tb->ts.dir) __builtin_prefetch(&tb->ts.dir[id >> 6]);
}

/* ---- CUDA (cache/cuda/cache_cuda.cu), queued on the current stream of dev ---- */
#ifdef EMBER_HAVE_CUDA
/* dst + i * rec_bytes = base + slots[i] * stride for i < n (device pointers). */
ember_status ember__cache_gather_cuda(int dev, void *dst, const void *base, size_t stride,
                                      size_t rec_bytes, const int32_t *slots, int64_t n);
/* base + slots[i] * stride = src + i * rec_bytes. */
ember_status ember__cache_scatter_cuda(int dev, void *base, size_t stride, size_t rec_bytes,
                                       const void *src, const int32_t *slots, int64_t n);
#endif

#ifdef __cplusplus
}
#endif
#endif /* EMBER_CACHE_INTERNAL_H */
