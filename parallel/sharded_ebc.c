/*
 * parallel/sharded_ebc.c: embedding-bag collections sharded over ranks by a plan
 * (DESIGN.md sections 4 and 8; the exchange is described in ember/parallel.h).
 *
 * The design decision: pool on the owner, and make the owner's work one ordinary
 * ember_ebc call. Whatever the plan (whole tables, row ranges, hot blocks, column
 * slices), what a rank receives is turned into one jagged batch over its own shard,
 * with the ids already remapped to local rows, so the existing kernels (vectorised
 * pooling, the sorted fused backward with its fixed summation order) do all the
 * arithmetic, and the wire carries one pooled row per (bag, owner) instead of one row
 * per id. The sources' bags are concatenated in rank order, so the owner's batch is a
 * slice of the global batch in global order and the row gradients are summed in the
 * order one process would use.
 *
 * Wire formats (per destination, all tables in order, even empty ones):
 *   ids      i64: [nbags, nids, has_weights, lengths (nbags), local rows (nids),
 *                  weights as f32 pairs ((nids + 1) / 2 words) if has_weights]
 *   pooled   f32: per table, nbags rows of the owner's width; then one flag word
 *   grads    f32: the same layout, the other way; then one flag word
 * The count exchange carries -1 from a rank that refused its batch, and the flag
 * words carry failures of the owner's or the asker's side, so every rank learns of a
 * failure in the same collective and all return an error together.
 *
 * The local backend. The owner's batch over its shard is the one place rows are
 * touched, so a resident shard and a cached one differ only there: the batch goes
 * straight to the shard's ember_ebc, or through the rank's own block-wise cache
 * (ember_cache_prepare: ids remapped to slots, misses loaded in blocks) to the cache's
 * slot collection, with the slot arrays as the call's rows. The prepared batch is held
 * from forward to backward and released dirty after it. The cache gets no look-ahead:
 * a batch's ids reach their owner only in its forward's exchange, so there is nothing
 * to submit ahead (lookahead is set to 0).
 *
 * Precision tiers per rank (DESIGN.md section 4, stage 2 on each device). Tiers are
 * chosen over the rows a rank holds, by the rank's own lookups: the global counts
 * are mapped to local rows once (local_ranking, the same mapping the warm-up uses), and
 * the caller's fractions, or maps of the whole tables, become tier maps of the shard's
 * tables, which the cache takes as given. Maps rather than a local ember_freq because
 * counts cannot be added to an ember_freq with their multiplicity, and the cache only
 * needs the ranking. Each rank rounds with the seed seed ^ rank.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ember/cache.h"
#include "ember/datasets.h"
#include "ember/parallel.h"
#include "engine/internal.h"

enum { MODE_WHOLE, MODE_COLUMNS, MODE_ROWS };

typedef struct stab {
    int mode;
    int dim;
    ember_pooling pooling;
    int64_t rows;
    int64_t out_off;  /* first column in the output */
    int owner;        /* MODE_WHOLE */
    int local;        /* index in the shard, -1 */
    int64_t lout;     /* first column in the shard's output */
    int lwidth;       /* columns held here */
    int64_t lrows;    /* rows held here */
    int64_t rep_rows; /* MODE_ROWS: replicated rows (local rows [0, rep_rows) on every rank) */
    int64_t rep_off;  /* floats into the replicated-gradient buffer */
    char name[40];
} stab;

typedef struct buf {
    void *p;
    size_t cap;
} buf;

struct ember_sharded_ebc {
    ember_comm *comm;
    const ember_plan *plan;
    ember_memory *mm;
    int P, rank, T;
    stab *t;
    int *cb, *ce; /* (T * P) columns [cb, ce) of table t on rank d */
    ember_ebc *local;   /* the resident shard, or NULL behind a cache */
    ember_cache *cache; /* the shard behind a block-wise cache, or NULL */
    ember_ebc *compute; /* where the kernels run: local, or the cache's slot collection */
    ember_cache_batch *held; /* the cache's batch of the last forward, held until backward */
    int lmdb;           /* the cache's store is LMDB (durable checkpoints) */
    int nlocal;
    int *ltab;    /* (nlocal) shard table -> table */
    int64_t lout_dim, out_dim;
    float gscale;
    int64_t steps;
    int64_t rep_floats;
    /* counts, (P * T) each, index d * T + t */
    int64_t *snb, *sni; /* bags and ids this rank sent to d */
    int64_t *rnb, *rni; /* bags and ids this rank received from s */
    int *rhw;           /* received with weights */
    int64_t *reqoff;    /* (P * T + 1) where (d, t)'s bag list starts in reqbag */
    int64_t *rsec;      /* (P * T) section offset of (s, t) in the received ids */
    int64_t *bagbase;   /* (P * T) first bag of (s, t) in the shard's batch */
    int64_t *cnt[6];    /* (P) scratch counts and displacements */
    int *shw;           /* (T) this rank's batch sends weights for table t */
    int64_t *last;      /* (P) scratch: last bag seen per destination */
    int64_t *cur_b, *cur_i; /* (P) scratch cursors */
    ember_jagged_feature *lfeat; /* (nlocal) */
    /* the exchange of the last forward */
    int fwd_ok;
    int64_t B, Bpad;
    buf rk, lr, send, recv, reqbag, offs, vals, wts, pooled, psend, precv, gsend, grecv, grad;
    buf fvals, fwts, foffs, rep, rep_offs, rep_vals, rep_grad; /* replicated rows (backward) */
    ember_sharded_ebc_stats stats;
};

static ember_status reserve(ember_sharded_ebc *s, buf *b, size_t bytes) {
    if (bytes <= b->cap && b->p) return EMBER_OK;
    size_t cap = b->cap + b->cap / 2;
    if (cap < bytes) cap = bytes;
    if (cap < 256) cap = 256;
    void *p = NULL;
    EMBER_TRY(ember_memory_alloc(s->mm, EMBER_TIER_HOST, EMBER_MEM_STAGING, cap, &p));
    if (b->p) ember_memory_free(s->mm, b->p);
    b->p = p;
    b->cap = cap;
    return EMBER_OK;
}

static void release(ember_sharded_ebc *s, buf *b) {
    if (b->p) ember_memory_free(s->mm, b->p);
    b->p = NULL;
    b->cap = 0;
}

/* Columns of table t that rank d pools: the whole row except column-wise. */
static int width_of(const ember_sharded_ebc *s, int t, int d) {
    return s->t[t].mode == MODE_COLUMNS ? s->ce[t * s->P + d] - s->cb[t * s->P + d] : s->t[t].dim;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

/* ---- creation ---- */

static ember_status describe_tables(ember_sharded_ebc *s, const ember_sharded_ebc_config *cfg) {
    static const char fn[] = "ember_sharded_ebc_create";
    const ember_plan *plan = cfg->plan;
    ember_plan_kind kind = ember_plan_get_kind(plan);
    int64_t off = 0;
    for (int t = 0; t < s->T; t++) {
        const ember_ebc_table_config *tc = &cfg->tables[t];
        stab *x = &s->t[t];
        x->mode = kind == EMBER_PLAN_TABLEWISE ? MODE_WHOLE : kind == EMBER_PLAN_COLUMNWISE ? MODE_COLUMNS : MODE_ROWS;
        x->dim = tc->dim;
        x->pooling = tc->pooling;
        x->rows = tc->rows;
        x->out_off = off;
        x->owner = -1;
        x->local = -1;
        snprintf(x->name, sizeof x->name, "%s", tc->name ? tc->name : "");
        if (!tc->name) snprintf(x->name, sizeof x->name, "table %d", t);
        if (tc->rows <= 0 || tc->dim <= 0)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s: rows %lld and dim %d must be > 0", fn, x->name,
                                (long long)tc->rows, tc->dim);
        off += tc->dim;
        /* the plan's table must have these rows: id rows - 1 is found, id rows is not */
        int r;
        int64_t lr;
        if (ember_plan_locate(plan, t, tc->rows - 1, &r, &lr) != EMBER_OK ||
            ember_plan_locate(plan, t, tc->rows, &r, &lr) == EMBER_OK) {
            ember_clear_error();
            return ember__error(EMBER_ERR_SHAPE, "%s: %s has %lld rows, the plan's table %d does not", fn, x->name,
                                (long long)tc->rows, t);
        }
        int maxcol = 0;
        for (int d = 0; d < s->P; d++) {
            ember_plan_shard sh;
            EMBER_TRY(ember_plan_get_shard(plan, t, d, &sh));
            s->cb[t * s->P + d] = x->mode == MODE_COLUMNS ? sh.col_begin : 0;
            s->ce[t * s->P + d] = x->mode == MODE_COLUMNS ? sh.col_end : tc->dim;
            if (sh.col_end > maxcol) maxcol = sh.col_end;
            if (x->mode == MODE_WHOLE && sh.local_rows > 0) x->owner = d;
            if (d == s->rank) {
                int holds = x->mode == MODE_COLUMNS ? sh.col_end > sh.col_begin : sh.local_rows > 0;
                x->lrows = holds ? sh.local_rows : 0;
                x->lwidth = holds ? width_of(s, t, d) : 0;
                x->rep_rows = x->mode == MODE_ROWS ? sh.replicated_rows : 0;
            }
        }
        if (maxcol != tc->dim || (x->mode == MODE_WHOLE && x->owner < 0))
            return ember__error(EMBER_ERR_SHAPE, "%s: %s has dim %d, the plan's table %d has %d", fn, x->name, tc->dim,
                                t, maxcol);
    }
    s->out_dim = off;
    return EMBER_OK;
}

/* ---- this rank's rows ranked by counts of the whole tables ---- */

/*
 * The one mapping of lookup counts of the whole tables (an ember_freq whose table t is
 * table t) to the shard: the first `limit` counted ids of table t (every counted id when
 * limit < 0) in ember_freq_top's order (count descending, ties in increasing id), those
 * this rank holds, as local rows with their counts: the rank's own counts of its own
 * rows, hottest first. The warm-up loads its head; the precision tiers rank the shard's
 * rows by it. *rows and *cnt are malloc'd (NULL when *n is 0); the caller frees them.
 */
static ember_status local_ranking(const ember_sharded_ebc *s, const char *fn, const struct ember_freq *counts, int t,
                                  int64_t limit, int64_t **rows, uint64_t **cnt, int64_t *n) {
    *rows = NULL;
    *cnt = NULL;
    *n = 0;
    ember_freq_table_stats fs;
    EMBER_TRY(ember_freq_get_table_stats(counts, t, &fs));
    int64_t k = limit < 0 || limit > fs.entries ? fs.entries : limit;
    if (k <= 0) return EMBER_OK;
    ember_freq_entry *e = malloc((size_t)k * sizeof *e);
    int64_t *ids = malloc((size_t)k * sizeof *ids), *lr = malloc((size_t)k * sizeof *lr);
    int *rk = malloc((size_t)k * sizeof *rk);
    uint64_t *c = malloc((size_t)k * sizeof *c);
    ember_status st = EMBER_OK;
    if (!e || !ids || !lr || !rk || !c)
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: rank %d of %d: %lld counted ids of %s", fn, s->rank, s->P,
                          (long long)k, s->t[t].name);
    int64_t got = 0, m = 0;
    if (st == EMBER_OK) st = ember_freq_top(counts, t, k, e, &got);
    for (int64_t i = 0; st == EMBER_OK && i < got; i++) {
        ids[i] = e[i].id;
        if (ids[i] < 0 || ids[i] >= s->t[t].rows)
            st = ember__error(EMBER_ERR_INDEX, "%s: rank %d of %d: counted id %lld outside %s (%lld rows)", fn,
                              s->rank, s->P, (long long)ids[i], s->t[t].name, (long long)s->t[t].rows);
    }
    if (st == EMBER_OK && got) st = ember_plan_locate_many(s->plan, t, ids, got, rk, lr);
    for (int64_t i = 0; st == EMBER_OK && i < got; i++)
        if (rk[i] == s->rank || rk[i] == EMBER_PLAN_EVERY_RANK) {
            ids[m] = lr[i];
            c[m++] = e[i].count;
        }
    free(e), free(lr), free(rk);
    if (st != EMBER_OK || m == 0) {
        free(ids), free(c);
        return st;
    }
    *rows = ids;
    *cnt = c;
    *n = m;
    return EMBER_OK;
}

/* ---- precision tiers of a cached shard ---- */

enum { TIER_UNSET = 0xff };

/* The tiers the caller gives over the whole tables (config.cache->tiers), checked on
   every rank alike before anything is made, so every rank refuses the same config. */
static ember_status check_tiers(const ember_sharded_ebc_config *cfg, int rank, int P) {
    static const char fn[] = "ember_sharded_ebc_create";
    const ember_cache_tiers *ti = cfg->cache->tiers;
    if (ti->budget)
        return ember__error(EMBER_ERR_UNSUPPORTED, "%s: rank %d of %d: tiers: a byte budget is not supported on "
                            "shards (give the fractions hot and warm: each rank splits the rows it holds by them)",
                            fn, rank, P);
    if ((ti->maps != NULL) + (ti->counts != NULL) != 1)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: tiers: give either maps (the tier of "
                            "every row of the whole tables) or counts (lookups of the whole tables), %s", fn, rank, P,
                            ti->maps ? "not both" : "neither is set");
    if ((unsigned)ti->rounding >= EMBER_CACHE_ROUNDING_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: tiers: rounding %d is not an "
                            "ember_cache_rounding", fn, rank, P, (int)ti->rounding);
    if (ti->maps && (ti->hot != 0 || ti->warm != 0))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: tiers: hot and warm go with counts, not "
                            "with maps", fn, rank, P);
    if (ti->counts) {
        if (!(ti->hot >= 0 && ti->hot <= 1) || !(ti->warm >= 0 && ti->warm <= 1) || ti->hot + ti->warm > 1 + 1e-12)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: tiers: fractions hot %g and warm %g "
                                "must lie in [0, 1] with hot + warm <= 1", fn, rank, P, ti->hot, ti->warm);
        if (ember_freq_num_tables(ti->counts) != cfg->num_tables)
            return ember__error(EMBER_ERR_SHAPE, "%s: rank %d of %d: tiers: the counts cover %d tables; the "
                                "collection has %d", fn, rank, P, ember_freq_num_tables(ti->counts),
                                cfg->num_tables);
    }
    for (int t = 0; ti->maps && t < cfg->num_tables; t++) {
        const ember_cache_tier_map *m = &ti->maps[t];
        const ember_ebc_table_config *tc = &cfg->tables[t];
        if (!m->tier) continue;
        if (m->rows != tc->rows)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: tiers: maps[%d] has %lld rows; "
                                "table %d has %lld", fn, rank, P, t, (long long)m->rows, t, (long long)tc->rows);
        for (int64_t i = 0; i < m->rows; i++)
            if (m->tier[i] >= EMBER_CACHE_TIER_COUNT ||
                (m->tier[i] != EMBER_CACHE_TIER_HOT && tc->format != EMBER_ROW_FORMAT_F32))
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: tiers: maps[%d].tier[%lld] = %d "
                                    "is %s", fn, rank, P, t, (long long)i, (int)m->tier[i],
                                    m->tier[i] >= EMBER_CACHE_TIER_COUNT ? "not an ember_cache_tier"
                                                                         : "not HOT in a table that is not f32");
    }
    return EMBER_OK;
}

/* The first ceil(f x rows) rows, as the cache counts a fraction. */
static int64_t frac_rows(double f, int64_t rows) {
    double x = ceil(f * (double)rows - 1e-9);
    if (x < 0) x = 0;
    return x >= (double)rows ? rows : (int64_t)x;
}

/*
 * The caller's tiers over the whole tables as tier maps of the shard's tables, local row
 * by local row (tier[l]: malloc'd, or NULL for a table all HOT; the caller frees them).
 * Counts with fractions: the shard's rows ranked by the rank's own counts (local_ranking),
 * then the rows never counted in increasing local row; the first ceil(hot x rows held)
 * HOT, the next ceil(warm x rows held) WARM, the rest COLD, as the cache does in one
 * process with the rank's rows for the table's. Maps: each held row takes its id's tier,
 * and a slot no id maps to here (a hole: its id is hot on another rank) is COLD.
 * Replicated rows (local rows [0, replicated) of a row-wise or minimax table) come first
 * and are HOT whatever the fractions or maps: every rank applies the same step to its
 * copy, and the copies stay equal only uncompressed (each rank rounds with its own seed).
 * Tables that are not f32 stay all HOT.
 */
static ember_status local_tiers(const ember_sharded_ebc *s, const ember_sharded_ebc_config *cfg, uint8_t **tier) {
    static const char fn[] = "ember_sharded_ebc_create";
    const ember_cache_tiers *ti = cfg->cache->tiers;
    enum { CHUNK = 4096 };
    int64_t *ids = NULL, *lr = NULL;
    int *rk = NULL;
    if (ti->maps) {
        ids = malloc(CHUNK * sizeof *ids);
        lr = malloc(CHUNK * sizeof *lr);
        rk = malloc(CHUNK * sizeof *rk);
        if (!ids || !lr || !rk) {
            free(ids), free(lr), free(rk);
            return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: rank %d of %d: tiers", fn, s->rank, s->P);
        }
    }
    ember_status st = EMBER_OK;
    for (int l = 0; l < s->nlocal && st == EMBER_OK; l++) {
        int t = s->ltab[l];
        const stab *x = &s->t[t];
        if (cfg->tables[t].format != EMBER_ROW_FORMAT_F32 || (ti->maps && !ti->maps[t].tier)) continue;
        uint8_t *u = tier[l] = malloc((size_t)x->lrows);
        if (!u) {
            st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: rank %d of %d: tiers of %lld rows of %s", fn, s->rank,
                              s->P, (long long)x->lrows, x->name);
            break;
        }
        memset(u, TIER_UNSET, (size_t)x->lrows);
        int64_t pos = 0;
        for (int64_t r = 0; r < x->rep_rows; r++, pos++) u[r] = EMBER_CACHE_TIER_HOT;
        if (ti->maps) {
            for (int64_t id0 = 0; id0 < x->rows && st == EMBER_OK; id0 += CHUNK) {
                int64_t n = x->rows - id0 < CHUNK ? x->rows - id0 : CHUNK;
                for (int64_t i = 0; i < n; i++) ids[i] = id0 + i;
                st = ember_plan_locate_many(s->plan, t, ids, n, rk, lr);
                for (int64_t i = 0; st == EMBER_OK && i < n; i++)
                    if ((rk[i] == s->rank || rk[i] == EMBER_PLAN_EVERY_RANK) && u[lr[i]] == TIER_UNSET)
                        u[lr[i]] = ti->maps[t].tier[id0 + i];
            }
            for (int64_t r = 0; r < x->lrows; r++)
                if (u[r] == TIER_UNSET) u[r] = EMBER_CACHE_TIER_COLD;
            continue;
        }
        int64_t nh = frac_rows(ti->hot, x->lrows), nw = frac_rows(ti->warm, x->lrows);
        if (nh + nw > x->lrows) nw = x->lrows - nh;
        int64_t *rows = NULL, n = 0;
        uint64_t *cnt = NULL;
        st = local_ranking(s, fn, ti->counts, t, -1, &rows, &cnt, &n);
        for (int64_t i = 0; st == EMBER_OK && i < n; i++)
            if (u[rows[i]] == TIER_UNSET) {
                u[rows[i]] = pos < nh ? EMBER_CACHE_TIER_HOT : pos < nh + nw ? EMBER_CACHE_TIER_WARM
                                                                             : EMBER_CACHE_TIER_COLD;
                pos++;
            }
        free(rows), free(cnt);
        for (int64_t r = 0; r < x->lrows; r++)
            if (u[r] == TIER_UNSET) {
                u[r] = pos < nh ? EMBER_CACHE_TIER_HOT : pos < nh + nw ? EMBER_CACHE_TIER_WARM : EMBER_CACHE_TIER_COLD;
                pos++;
            }
    }
    free(ids), free(lr), free(rk);
    return st;
}

/*
 * The shard behind its own cache: the caller's cache config over the shard's tables
 * (local rows and widths), per-table slot and host-row counts moved to the shard's
 * tables, no look-ahead (see the top of the file), an LMDB store of its own in
 * path/rankRRRR (path is made when missing, unless the stores must exist), and the
 * caller's precision tiers as tier maps of the rows it holds (local_tiers).
 */
static ember_status make_cache(ember_sharded_ebc *s, const ember_sharded_ebc_config *cfg, const ember_ebc_config *ec) {
    static const char fn[] = "ember_sharded_ebc_create";
    ember_cache_config cc = *cfg->cache;
    cc.collection = *ec;
    cc.mm = cc.mm ? cc.mm : cfg->mm;
    cc.lookahead = 0;
    int64_t *slots = NULL, *host = NULL;
    if (cfg->cache->slots || cfg->cache->host_rows) {
        slots = calloc(2 * (size_t)s->nlocal, sizeof *slots);
        if (!slots) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d shard tables", fn, s->nlocal);
        host = slots + s->nlocal;
        for (int l = 0; l < s->nlocal; l++) {
            int t = s->ltab[l];
            int64_t lrows = s->t[t].lrows;
            if (cfg->cache->slots) slots[l] = cfg->cache->slots[t] < lrows ? cfg->cache->slots[t] : lrows;
            if (cfg->cache->host_rows) host[l] = cfg->cache->host_rows[t] < lrows ? cfg->cache->host_rows[t] : lrows;
        }
        cc.slots = cfg->cache->slots ? slots : NULL;
        cc.host_rows = cfg->cache->host_rows ? host : NULL;
    }
    char path[4096];
    ember_status st = EMBER_OK;
    if (cc.store == EMBER_CACHE_STORE_LMDB) {
        if (!cc.path || !cc.path[0])
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: the LMDB store needs a path", fn,
                              s->rank, s->P);
        else if (cc.open != EMBER_CACHE_OPEN_EXISTING && mkdir(cc.path, 0755) != 0 && errno != EEXIST)
            st = ember__error(EMBER_ERR_IO, "%s: rank %d of %d: cannot create the stores' directory %s: %s", fn,
                              s->rank, s->P, cc.path, strerror(errno));
        else if ((size_t)snprintf(path, sizeof path, "%s/rank%04d", cc.path, s->rank) >= sizeof path)
            st = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d: store path %s is too long", fn,
                              s->rank, s->P, cc.path);
        cc.path = path;
    }
    /* precision tiers: the rows this rank holds, ranked by its own counts (local_tiers), and
       stochastic rounding keyed by seed ^ rank: each rank's own stream, the same every run */
    uint8_t **tier = NULL;
    ember_cache_tier_map *maps = NULL;
    ember_cache_tiers lt = {0};
    if (st == EMBER_OK && cfg->cache->tiers) {
        tier = calloc((size_t)s->nlocal, sizeof *tier);
        maps = calloc((size_t)s->nlocal, sizeof *maps);
        st = tier && maps ? local_tiers(s, cfg, tier)
                          : ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: rank %d of %d: tiers of %d shard tables", fn,
                                         s->rank, s->P, s->nlocal);
        for (int l = 0; st == EMBER_OK && l < s->nlocal; l++)
            maps[l] = (ember_cache_tier_map){.tier = tier[l], .rows = s->t[s->ltab[l]].lrows};
        lt = (ember_cache_tiers){.maps = maps, .rounding = cfg->cache->tiers->rounding,
                                 .seed = cfg->cache->tiers->seed ^ (uint64_t)s->rank};
        cc.tiers = &lt;
    }
    if (st == EMBER_OK) {
        st = ember_cache_create(&cc, &s->cache);
        if (st != EMBER_OK) {
            /* the cache's message, with the rank it happened on */
            char why[1024];
            snprintf(why, sizeof why, "%s", ember_last_error());
            const char *p = strstr(why, ": ");
            st = ember__error(st, "%s: rank %d of %d: the shard's cache: %s", fn, s->rank, s->P, p ? p + 2 : why);
        }
    }
    s->lmdb = cc.store == EMBER_CACHE_STORE_LMDB;
    for (int l = 0; tier && l < s->nlocal; l++) free(tier[l]);
    free(tier);
    free(maps);
    free(slots);
    return st;
}

static ember_status make_shard(ember_sharded_ebc *s, const ember_sharded_ebc_config *cfg) {
    static const char fn[] = "ember_sharded_ebc_create";
    int n = 0;
    for (int t = 0; t < s->T; t++) n += s->t[t].lrows > 0;
    s->nlocal = n;
    if (!n) return EMBER_OK;
    ember_ebc_table_config *lt = calloc((size_t)n, sizeof *lt);
    s->ltab = calloc((size_t)n, sizeof *s->ltab);
    s->lfeat = calloc((size_t)n, sizeof *s->lfeat);
    if (!lt || !s->ltab || !s->lfeat) {
        free(lt);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d shard tables", fn, n);
    }
    int k = 0;
    int64_t lout = 0;
    for (int t = 0; t < s->T; t++) {
        stab *x = &s->t[t];
        if (x->lrows <= 0) continue;
        x->local = k;
        x->lout = lout;
        lout += x->lwidth;
        s->ltab[k] = t;
        /* row-wise owners see parts of bags: they pool sums, the mean comes as weights 1/n */
        lt[k] = (ember_ebc_table_config){.name = cfg->tables[t].name,
                                         .rows = x->lrows,
                                         .dim = x->lwidth,
                                         .format = cfg->tables[t].format,
                                         .pooling = x->mode == MODE_ROWS ? EMBER_POOLING_SUM : x->pooling};
        if (x->rep_rows > 0) {
            x->rep_off = s->rep_floats;
            s->rep_floats += x->rep_rows * (x->dim + 1);
        }
        k++;
    }
    s->lout_dim = lout;
    ember_ebc_config ec = {.num_tables = n, .tables = lt, .optim = cfg->optim, .mm = cfg->mm,
                           .tier = EMBER_TIER_HOST, .row_align = cfg->row_align};
    ember_status st = cfg->cache ? make_cache(s, cfg, &ec) : ember_ebc_create(&ec, &s->local);
    if (st == EMBER_OK) s->compute = s->cache ? ember_cache_collection(s->cache) : s->local;
    free(lt);
    return st;
}

/* Every rank passes the same plan and tables: min and max of a hash agree. The same
   all-reduce carries the outcome of each rank's shard (`local`): a rank whose shard or
   cache could not be made fails with its own error, the others naming it, so no rank
   goes on into collectives the failed one will never join. */
static ember_status check_same(ember_sharded_ebc *s, const ember_sharded_ebc_config *cfg, ember_status local) {
    char msg[1024] = "";
    if (local != EMBER_OK) snprintf(msg, sizeof msg, "%s", ember_last_error());
    size_t size = 0;
    ember_status st = ember_plan_encode(cfg->plan, NULL, 0, &size);
    void *enc = st == EMBER_OK ? malloc(size ? size : 1) : NULL;
    if (st == EMBER_OK && !enc) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_sharded_ebc_create: %zu bytes", size);
    if (st == EMBER_OK) st = ember_plan_encode(cfg->plan, enc, size, &size);
    uint64_t h = st == EMBER_OK ? fnv(14695981039346656037ull, enc, size) : 0;
    free(enc);
    EMBER_TRY(st);
    int64_t fail[2] = {local != EMBER_OK ? s->rank + 1 : 0, 0};
    EMBER_TRY(ember_comm_all_reduce(s->comm, fail, fail + 1, 1, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL));
    if (local != EMBER_OK) {
        const char *p = strstr(msg, ": ");
        return ember__error(local, "%s", p ? p + 2 : msg);
    }
    if (fail[1] > 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                            "ember_sharded_ebc_create: rank %d of %d: rank %lld could not make its shard (its error "
                            "says why)",
                            s->rank, s->P, (long long)fail[1] - 1);
    for (int t = 0; t < s->T; t++) {
        const ember_ebc_table_config *tc = &cfg->tables[t];
        int64_t v[4] = {tc->rows, tc->dim, tc->format, tc->pooling};
        h = fnv(h, v, sizeof v);
    }
    int64_t o[2] = {cfg->optim.type, s->T};
    h = fnv(h, o, sizeof o);
    int64_t v[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)}, mx[2];
    EMBER_TRY(ember_comm_all_reduce(s->comm, v, mx, 2, EMBER_DTYPE_I64, EMBER_REDUCE_MAX, NULL));
    if (mx[0] != v[0] || mx[1] != v[1])
        return ember__error(EMBER_ERR_SHAPE,
                            "ember_sharded_ebc_create: rank %d of %d: the ranks' plans or tables differ: build the "
                            "same plan on every rank (or load one file)",
                            s->rank, s->P);
    return EMBER_OK;
}

ember_status ember_sharded_ebc_create(ember_comm *comm, const ember_sharded_ebc_config *cfg,
                                      ember_sharded_ebc **out) {
    static const char fn[] = "ember_sharded_ebc_create";
    EMBER_CHECK_NULL(out, fn);
    *out = NULL;
    EMBER_CHECK_NULL(comm, fn);
    EMBER_CHECK_NULL(cfg, fn);
    EMBER_CHECK_NULL(cfg->plan, fn);
    EMBER_CHECK_NULL(cfg->tables, fn);
    int P = ember_comm_size(comm);
    if (ember_plan_world(cfg->plan) != P)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: the plan is for %d ranks, the communicator has %d", fn,
                            ember_plan_world(cfg->plan), P);
    if (cfg->num_tables != ember_plan_num_tables(cfg->plan) || cfg->num_tables < 1)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %d tables, the plan has %d", fn, cfg->num_tables,
                            ember_plan_num_tables(cfg->plan));
    if (!(cfg->grad_scale >= 0.0) || !isfinite(cfg->grad_scale))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: grad_scale %g must be finite and >= 0", fn,
                            cfg->grad_scale);
    if (ember_device_equal(ember_comm_device(comm), EMBER_CPU) == 0)
        return ember__error(EMBER_ERR_DEVICE, "%s: the communicator's buffers are not in host memory", fn);
    if (cfg->cache && cfg->cache->tiers) /* the same config on every rank: every rank refuses it alike */
        EMBER_TRY(check_tiers(cfg, ember_comm_rank(comm), P));
    if (ember_plan_get_kind(cfg->plan) == EMBER_PLAN_COLUMNWISE) {
        /* a column slice would keep its own row state, row norm or row scale */
        const char *whole = cfg->optim.type == EMBER_SPARSE_OPTIM_ROWWISE_ADAGRAD ? "rowwise Adagrad"
                            : cfg->optim.max_grad_norm > 0                       ? "max_grad_norm"
                                                                                 : NULL;
        for (int t = 0; t < cfg->num_tables && !whole; t++)
            if (cfg->tables[t].format == EMBER_ROW_FORMAT_INT8_ROWWISE) whole = "int8-rowwise rows";
        if (whole)
            return ember__error(EMBER_ERR_UNSUPPORTED,
                                "%s: plan columnwise: %s needs whole rows, which column slices do not hold (take "
                                "tablewise, rowwise or minimax)",
                                fn, whole);
    }
    ember_sharded_ebc *s = calloc(1, sizeof *s);
    if (!s) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
    s->comm = comm;
    s->plan = cfg->plan;
    s->mm = cfg->mm ? cfg->mm : ember_memory_default();
    s->P = P;
    s->rank = ember_comm_rank(comm);
    s->T = cfg->num_tables;
    s->gscale = (float)(cfg->grad_scale > 0 ? cfg->grad_scale : 1.0 / P);
    size_t pt = (size_t)P * (size_t)s->T;
    s->t = calloc((size_t)s->T, sizeof *s->t);
    s->cb = calloc(pt, sizeof *s->cb);
    s->ce = calloc(pt, sizeof *s->ce);
    s->snb = calloc(pt, sizeof(int64_t));
    s->sni = calloc(pt, sizeof(int64_t));
    s->rnb = calloc(pt, sizeof(int64_t));
    s->rni = calloc(pt, sizeof(int64_t));
    s->rhw = calloc(pt, sizeof(int));
    s->reqoff = calloc(pt + 1, sizeof(int64_t));
    s->rsec = calloc(pt, sizeof(int64_t));
    s->bagbase = calloc(pt, sizeof(int64_t));
    s->shw = calloc((size_t)s->T, sizeof(int));
    s->last = calloc((size_t)P, sizeof(int64_t));
    s->cur_b = calloc((size_t)P, sizeof(int64_t));
    s->cur_i = calloc((size_t)P, sizeof(int64_t));
    int ok = s->t && s->cb && s->ce && s->snb && s->sni && s->rnb && s->rni && s->rhw && s->reqoff && s->rsec &&
             s->bagbase && s->shw && s->last && s->cur_b && s->cur_i;
    for (int i = 0; i < 6; i++) ok = ok && (s->cnt[i] = calloc((size_t)P, sizeof(int64_t))) != NULL;
    ember_status st = ok ? EMBER_OK : ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: %d ranks x %d tables", fn, P, s->T);
    if (st == EMBER_OK) st = describe_tables(s, cfg);
    if (st == EMBER_OK) st = make_shard(s, cfg);
    st = check_same(s, cfg, st);
    if (st != EMBER_OK) {
        ember_sharded_ebc_destroy(s);
        return st;
    }
    s->stats.local_tables = s->nlocal;
    for (int t = 0; t < s->T; t++) s->stats.local_rows += s->t[t].lrows;
    s->stats.replicated_floats = s->rep_floats;
    *out = s;
    return EMBER_OK;
}

void ember_sharded_ebc_destroy(ember_sharded_ebc *s) {
    if (!s) return;
    if (s->held) ember_cache_release(s->cache, s->held, 0);
    ember_cache_destroy(s->cache);
    ember_ebc_destroy(s->local);
    buf *bufs[] = {&s->rk,     &s->lr,    &s->send,  &s->recv,  &s->reqbag, &s->offs,     &s->vals,
                   &s->wts,    &s->pooled, &s->psend, &s->precv, &s->gsend, &s->grecv,    &s->grad,
                   &s->fvals,  &s->fwts,  &s->foffs, &s->rep,   &s->rep_offs, &s->rep_vals, &s->rep_grad};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) release(s, bufs[i]);
    for (int i = 0; i < 6; i++) free(s->cnt[i]);
    free(s->t);
    free(s->cb);
    free(s->ce);
    free(s->snb);
    free(s->sni);
    free(s->rnb);
    free(s->rni);
    free(s->rhw);
    free(s->reqoff);
    free(s->rsec);
    free(s->bagbase);
    free(s->shw);
    free(s->last);
    free(s->cur_b);
    free(s->cur_i);
    free(s->ltab);
    free(s->lfeat);
    free(s);
}

int ember_sharded_ebc_num_tables(const ember_sharded_ebc *s) { return s ? s->T : 0; }
int64_t ember_sharded_ebc_output_dim(const ember_sharded_ebc *s) { return s ? s->out_dim : 0; }
ember_ebc *ember_sharded_ebc_local(const ember_sharded_ebc *s) { return s ? s->local : NULL; }
int ember_sharded_ebc_local_table(const ember_sharded_ebc *s, int table) {
    return s && table >= 0 && table < s->T ? s->t[table].local : -1;
}
ember_cache *ember_sharded_ebc_cache(const ember_sharded_ebc *s) { return s ? s->cache : NULL; }

/* Give the cache back the batch held since the last forward; updated: backward ran on it. */
static ember_status drop_held(ember_sharded_ebc *s, int updated) {
    if (!s->held) return EMBER_OK;
    ember_cache_batch *b = s->held;
    s->held = NULL;
    return ember_cache_release(s->cache, b, updated);
}

/* Rows [row, row + n) of shard table l, weights (n, width) or state (n, state floats),
   wherever they live. The cache reads and writes rows with no batch handed out: a
   forward's batch is given back unchanged (backward prepares it again). */
static ember_status local_io(ember_sharded_ebc *s, int l, int64_t row, int64_t n, float *p, int read, int state) {
    if (!s->cache) {
        if (state)
            return read ? ember_ebc_read_state(s->local, l, row, n, p) : ember_ebc_write_state(s->local, l, row, n, p);
        return read ? ember_ebc_read_rows(s->local, l, row, n, p) : ember_ebc_write_rows(s->local, l, row, n, p);
    }
    EMBER_TRY(drop_held(s, 0));
    if (state)
        return read ? ember_cache_read_state(s->cache, l, row, n, p) : ember_cache_write_state(s->cache, l, row, n, p);
    return read ? ember_cache_read_rows(s->cache, l, row, n, p) : ember_cache_write_rows(s->cache, l, row, n, p);
}

static ember_status local_rows_call(const char *fn, ember_sharded_ebc *s, int table, int64_t row, int64_t n,
                                    float *weights, float *state, int read) {
    EMBER_CHECK_NULL(s, fn);
    if (table < 0 || table >= s->T) return ember__error(EMBER_ERR_INDEX, "%s: table %d of %d", fn, table, s->T);
    const stab *x = &s->t[table];
    if (x->local < 0)
        return ember__error(EMBER_ERR_INDEX, "%s: rank %d of %d holds no rows of %s", fn, s->rank, s->P, x->name);
    if (row < 0 || n < 0 || row > x->lrows - n)
        return ember__error(EMBER_ERR_INDEX, "%s: rank %d of %d: local rows [%lld, %lld) of %s outside [0, %lld)", fn,
                            s->rank, s->P, (long long)row, (long long)(row + n), x->name, (long long)x->lrows);
    if (weights) EMBER_TRY(local_io(s, x->local, row, n, weights, read, 0));
    if (state) EMBER_TRY(local_io(s, x->local, row, n, state, read, 1));
    return EMBER_OK;
}

ember_status ember_sharded_ebc_read_local(ember_sharded_ebc *s, int table, int64_t row, int64_t n, float *weights,
                                          float *state) {
    return local_rows_call("ember_sharded_ebc_read_local", s, table, row, n, weights, state, 1);
}

ember_status ember_sharded_ebc_write_local(ember_sharded_ebc *s, int table, int64_t row, int64_t n,
                                           const float *weights, const float *state) {
    /* only read from when writing */
    return local_rows_call("ember_sharded_ebc_write_local", s, table, row, n, (float *)weights, (float *)state, 0);
}

ember_status ember_sharded_ebc_checkpoint(ember_sharded_ebc *s, int64_t step) {
    EMBER_CHECK_NULL(s, "ember_sharded_ebc_checkpoint");
    if (!s->cache || !s->lmdb) return EMBER_OK;
    EMBER_TRY(drop_held(s, 0));
    return ember_cache_checkpoint(s->cache, step);
}

/*
 * Warm the shard's cache from counts of the whole tables: per shard table, the head of
 * the rank's own ranking (local_ranking over the table's 8 x world x slots hottest ids,
 * the mapping the tiers rank by), as many rows as the table has slots, with their
 * counts. Warm-up changes which rows are cached, never the results.
 */
ember_status ember_sharded_ebc_warmup_counts(ember_sharded_ebc *s, const struct ember_freq *counts) {
    static const char fn[] = "ember_sharded_ebc_warmup_counts";
    EMBER_CHECK_NULL(s, fn);
    EMBER_CHECK_NULL(counts, fn);
    if (ember_freq_num_tables(counts) != s->T)
        return ember__error(EMBER_ERR_SHAPE, "%s: rank %d of %d: the counts cover %d tables; the collection has %d",
                            fn, s->rank, s->P, ember_freq_num_tables(counts), s->T);
    if (!s->cache) return EMBER_OK;
    EMBER_TRY(drop_held(s, 0));
    ember_status st = EMBER_OK;
    for (int l = 0; l < s->nlocal && st == EMBER_OK; l++) {
        int t = s->ltab[l];
        int64_t slots = ember_cache_slots(s->cache, l), m = 0, *rows = NULL;
        uint64_t *cnt = NULL;
        st = local_ranking(s, fn, counts, t, slots * 8 * s->P, &rows, &cnt, &m);
        if (m > slots) m = slots;
        if (st == EMBER_OK && m) st = ember_cache_warmup(s->cache, l, rows, cnt, m);
        free(rows), free(cnt);
    }
    return st;
}

ember_status ember_sharded_ebc_get_stats(const ember_sharded_ebc *s, ember_sharded_ebc_stats *out) {
    EMBER_CHECK_NULL(s, "ember_sharded_ebc_get_stats");
    EMBER_CHECK_NULL(out, "ember_sharded_ebc_get_stats");
    *out = s->stats;
    return EMBER_OK;
}

/* ---- rows ---- */

typedef ember_status (*run_fn)(ember_sharded_ebc *s, int t, int64_t id0, int64_t row0, int64_t n, void *arg);

/* Call fn for each run of ids in [first, first + count) held here whose local rows are
   consecutive. Replicated rows count as held. */
static ember_status for_held_runs(ember_sharded_ebc *s, int t, int64_t first, int64_t count, run_fn fn, void *arg) {
    const stab *x = &s->t[t];
    if (x->local < 0 || count == 0) return EMBER_OK;
    if (x->mode != MODE_ROWS) return fn(s, t, first, first, count, arg); /* local row = id */
    int64_t id0 = -1, row0 = 0, n = 0;
    for (int64_t id = first; id < first + count; id++) {
        int r;
        int64_t lr;
        EMBER_TRY(ember_plan_locate(s->plan, t, id, &r, &lr));
        int mine = r == s->rank || r == EMBER_PLAN_EVERY_RANK;
        if (n > 0 && (!mine || lr != row0 + n)) {
            EMBER_TRY(fn(s, t, id0, row0, n, arg));
            n = 0;
        }
        if (!mine) continue;
        if (n == 0) id0 = id, row0 = lr;
        n++;
    }
    return n > 0 ? fn(s, t, id0, row0, n, arg) : EMBER_OK;
}

static ember_status check_rows(const char *fn, const ember_sharded_ebc *s, int table, int64_t first, int64_t count,
                               const void *p) {
    EMBER_CHECK_NULL(s, fn);
    if (count > 0) EMBER_CHECK_NULL(p, fn);
    if (table < 0 || table >= s->T) return ember__error(EMBER_ERR_INDEX, "%s: table %d of %d", fn, table, s->T);
    if (first < 0 || count < 0 || first > s->t[table].rows - count)
        return ember__error(EMBER_ERR_INDEX, "%s: %s rows [%lld, %lld) outside [0, %lld)", fn, s->t[table].name,
                            (long long)first, (long long)(first + count), (long long)s->t[table].rows);
    return EMBER_OK;
}

typedef struct rows_arg {
    float *whole;   /* (count, dim) */
    int64_t first;  /* id of whole's row 0 */
    int read;       /* 1: shard -> whole */
    float *tmp;     /* column-wise staging */
} rows_arg;

static ember_status rows_run(ember_sharded_ebc *s, int t, int64_t id0, int64_t row0, int64_t n, void *p) {
    rows_arg *a = p;
    const stab *x = &s->t[t];
    float *w = a->whole + (id0 - a->first) * x->dim;
    /* a replicated row is read from rank 0 only, so the zero-filled sum holds it once */
    if (a->read && x->mode == MODE_ROWS && row0 < x->rep_rows && s->rank != 0) {
        int64_t skip = x->rep_rows - row0 < n ? x->rep_rows - row0 : n;
        if (skip == n) return EMBER_OK;
        return rows_run(s, t, id0 + skip, row0 + skip, n - skip, p);
    }
    if (x->lwidth == x->dim) return local_io(s, x->local, row0, n, w, a->read, 0);
    /* a column slice: stage the rows' slices */
    int c0 = s->cb[t * s->P + s->rank], wd = x->lwidth;
    const int64_t chunk = 1024;
    for (int64_t r = 0; r < n; r += chunk) {
        int64_t m = n - r < chunk ? n - r : chunk;
        if (a->read) {
            EMBER_TRY(local_io(s, x->local, row0 + r, m, a->tmp, 1, 0));
            for (int64_t i = 0; i < m; i++) memcpy(w + (r + i) * x->dim + c0, a->tmp + i * wd, (size_t)wd * 4);
        } else {
            for (int64_t i = 0; i < m; i++) memcpy(a->tmp + i * wd, w + (r + i) * x->dim + c0, (size_t)wd * 4);
            EMBER_TRY(local_io(s, x->local, row0 + r, m, a->tmp, 0, 0));
        }
    }
    return EMBER_OK;
}

static ember_status rows_io(ember_sharded_ebc *s, int t, int64_t first, int64_t count, float *whole, int read) {
    rows_arg a = {.whole = whole, .first = first, .read = read};
    if (s->t[t].local >= 0 && s->t[t].lwidth != s->t[t].dim) {
        a.tmp = malloc(1024 * (size_t)s->t[t].lwidth * sizeof *a.tmp);
        if (!a.tmp) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_sharded_ebc rows: staging");
    }
    ember_status st = for_held_runs(s, t, first, count, rows_run, &a);
    free(a.tmp);
    return st;
}

ember_status ember_sharded_ebc_write_rows(ember_sharded_ebc *s, int table, int64_t first, int64_t count,
                                          const float *src) {
    EMBER_TRY(check_rows("ember_sharded_ebc_write_rows", s, table, first, count, src));
    return rows_io(s, table, first, count, (float *)src, 0); /* only read from when writing */
}

ember_status ember_sharded_ebc_read_rows(ember_sharded_ebc *s, int table, int64_t first, int64_t count, float *dst) {
    EMBER_TRY(check_rows("ember_sharded_ebc_read_rows", s, table, first, count, dst));
    size_t n = (size_t)count * (size_t)s->t[table].dim;
    memset(dst, 0, n * sizeof *dst);
    ember_status st = rows_io(s, table, first, count, dst, 1);
    /* the ranks stay in step: a local failure still joins the sum, then reports */
    ember_status cst = ember_comm_all_reduce(s->comm, dst, dst, (int64_t)n, EMBER_DTYPE_F32, EMBER_REDUCE_SUM, NULL);
    return st != EMBER_OK ? st : cst;
}

typedef struct init_arg {
    ember_rng rng; /* offset: word of (row 0, column 0) of the table */
    float lo, hi;
    float *tmp;    /* (chunk, dim) */
} init_arg;

static ember_status init_run(ember_sharded_ebc *s, int t, int64_t id0, int64_t row0, int64_t n, void *p) {
    init_arg *a = p;
    const stab *x = &s->t[t];
    const int64_t chunk = 1024;
    for (int64_t r = 0; r < n; r += chunk) {
        int64_t m = n - r < chunk ? n - r : chunk;
        ember_tensor *v = NULL;
        EMBER_TRY(ember_tensor_wrap(a->tmp, EMBER_DTYPE_F32, 2, (int64_t[]){m, x->dim}, NULL, EMBER_CPU, &v));
        ember_rng g = {.seed = a->rng.seed, .offset = a->rng.offset + (uint64_t)(id0 + r) * (uint64_t)x->dim};
        ember_status st = ember_rng_uniform(&g, v, a->lo, a->hi);
        ember_tensor_destroy(v);
        EMBER_TRY(st);
        rows_arg ra = {.whole = a->tmp, .first = id0 + r, .read = 0, .tmp = a->tmp + chunk * x->dim};
        EMBER_TRY(rows_run(s, t, id0 + r, row0 + r, m, &ra));
    }
    return EMBER_OK;
}

ember_status ember_sharded_ebc_init_uniform(ember_sharded_ebc *s, ember_rng *rng, float lo, float hi) {
    static const char fn[] = "ember_sharded_ebc_init_uniform";
    EMBER_CHECK_NULL(s, fn);
    EMBER_CHECK_NULL(rng, fn);
    if (!isfinite(lo) || !isfinite(hi) || hi < lo)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: range [%g, %g) is not valid", fn, (double)lo, (double)hi);
    uint64_t base = rng->offset;
    ember_status st = EMBER_OK;
    for (int t = 0; t < s->T && st == EMBER_OK; t++) {
        const stab *x = &s->t[t];
        if (x->local >= 0) {
            init_arg a = {.rng = {.seed = rng->seed, .offset = base}, .lo = lo, .hi = hi};
            a.tmp = malloc(2 * 1024 * (size_t)x->dim * sizeof *a.tmp);
            st = a.tmp ? for_held_runs(s, t, 0, x->rows, init_run, &a)
                       : ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: staging", fn);
            free(a.tmp);
        }
        base += (uint64_t)x->rows * (uint64_t)x->dim;
    }
    if (st == EMBER_OK) rng->offset = base;
    return st;
}

/* ---- forward ---- */

static ember_status check_out(const char *fn, const char *what, const ember_sharded_ebc *s, int64_t B,
                              const ember_tensor *x) {
    EMBER_CHECK_NULL(x, fn);
    char d[96];
    if (ember_tensor_dtype(x) != EMBER_DTYPE_F32)
        return ember__error(EMBER_ERR_DTYPE, "%s: %s is %s, not f32", fn, what, ember_tensor_describe(x, d, sizeof d));
    if (ember_tensor_device(x).type != EMBER_DEVICE_CPU)
        return ember__error(EMBER_ERR_DEVICE, "%s: %s is %s, not in host memory", fn, what,
                            ember_tensor_describe(x, d, sizeof d));
    if (ember_tensor_ndim(x) != 2 || ember_tensor_dim(x, 0) != B || ember_tensor_dim(x, 1) != s->out_dim)
        return ember__error(EMBER_ERR_SHAPE, "%s: %s is %s, expected (%lld, %lld)", fn, what,
                            ember_tensor_describe(x, d, sizeof d), (long long)B, (long long)s->out_dim);
    if (s->out_dim > 1 && ember_tensor_stride(x, 1) != 1)
        return ember__error(EMBER_ERR_STATE, "%s: %s's rows are not contiguous", fn, what);
    if (B > 1 && ember_tensor_stride(x, 0) < s->out_dim)
        return ember__error(EMBER_ERR_STATE, "%s: %s's rows overlap", fn, what);
    return EMBER_OK;
}

static ember_status check_batch(const char *fn, ember_sharded_ebc *s, const ember_jagged *b,
                                const ember_ebc_call *call) {
    EMBER_CHECK_NULL(b, fn);
    if (b->num_features != s->T)
        return ember__error(EMBER_ERR_SHAPE, "%s: the batch has %d features, the collection %d tables", fn,
                            b->num_features, s->T);
    if (b->batch < 0) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: batch %lld", fn, (long long)b->batch);
    if (call && call->rows)
        return ember__error(EMBER_ERR_UNSUPPORTED, "%s: call->rows (cache slots) is not supported on shards", fn);
    if (!call || !call->trusted) {
        int64_t *rows = malloc((size_t)s->T * sizeof *rows);
        if (!rows) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s", fn);
        for (int t = 0; t < s->T; t++) rows[t] = s->t[t].rows;
        ember_status st = ember_jagged_validate(b, rows);
        free(rows);
        EMBER_TRY(st);
    }
    for (int t = 0; t < s->T; t++)
        if (b->features[t].weights && s->t[t].pooling == EMBER_POOLING_MEAN)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %s: per-sample weights need sum pooling", fn,
                                s->t[t].name);
    return EMBER_OK;
}

/* Fail with a message saved before collectives ran ("STATUS: text"). */
static ember_status rethrow(ember_status st, const char *msg) {
    const char *p = strstr(msg, ": ");
    return ember__error(st, "%s", p ? p + 2 : msg);
}

/* Split this rank's bags by owner: counts, then the ids payload and the bag lists. */
static ember_status route(ember_sharded_ebc *s, const ember_jagged *b) {
    const int P = s->P, T = s->T;
    const int64_t B = b->batch;
    int64_t nid = 0;
    for (int t = 0; t < T; t++) nid += b->features[t].offsets[B] - b->features[t].offsets[0];
    EMBER_TRY(reserve(s, &s->rk, (size_t)nid * sizeof(int) + 1));
    EMBER_TRY(reserve(s, &s->lr, (size_t)nid * sizeof(int64_t) + 1));
    int *rk = s->rk.p;
    int64_t *lr = s->lr.p;
    memset(s->snb, 0, (size_t)P * (size_t)T * sizeof *s->snb);
    memset(s->sni, 0, (size_t)P * (size_t)T * sizeof *s->sni);
    /* owners and counts */
    int64_t pos = 0;
    for (int t = 0; t < T; t++) {
        const ember_jagged_feature *f = &b->features[t];
        const stab *x = &s->t[t];
        const int64_t k0 = f->offsets[0], n = f->offsets[B] - k0;
        s->shw[t] = f->weights != NULL || (x->mode == MODE_ROWS && x->pooling == EMBER_POOLING_MEAN);
        if (x->mode == MODE_ROWS) {
            EMBER_TRY(ember_plan_locate_many(s->plan, t, f->values + k0, n, rk + pos, lr + pos));
            for (int64_t k = 0; k < n; k++)
                if (rk[pos + k] == EMBER_PLAN_EVERY_RANK) rk[pos + k] = s->rank; /* replicated: served here */
        }
        for (int d = 0; d < P; d++) s->last[d] = -1;
        for (int64_t bag = 0; bag < B; bag++) {
            const int64_t a = f->offsets[bag], e = f->offsets[bag + 1];
            if (a == e) continue;
            if (x->mode == MODE_WHOLE) {
                s->snb[x->owner * T + t]++;
                s->sni[x->owner * T + t] += e - a;
            } else if (x->mode == MODE_COLUMNS) {
                for (int d = 0; d < P; d++)
                    if (width_of(s, t, d) > 0) s->snb[d * T + t]++, s->sni[d * T + t] += e - a;
            } else {
                for (int64_t k = a; k < e; k++) {
                    int d = rk[pos + k - k0];
                    s->sni[d * T + t]++;
                    if (s->last[d] != bag) s->last[d] = bag, s->snb[d * T + t]++;
                }
            }
        }
        pos += n;
    }
    /* sizes: payload per destination, bag lists in (d, t) order */
    int64_t *len = s->cnt[0], total = 0;
    s->reqoff[0] = 0;
    for (int d = 0; d < P; d++) {
        len[d] = 0;
        for (int t = 0; t < T; t++) {
            int64_t nb = s->snb[d * T + t], ni = s->sni[d * T + t];
            len[d] += 3 + nb + ni + (s->shw[t] ? (ni + 1) / 2 : 0);
            s->reqoff[d * T + t + 1] = s->reqoff[d * T + t] + nb;
        }
        total += len[d];
    }
    EMBER_TRY(reserve(s, &s->send, (size_t)total * 8 + 8));
    EMBER_TRY(reserve(s, &s->reqbag, (size_t)s->reqoff[(size_t)P * T] * 8 + 8));
    int64_t *send = s->send.p, *reqbag = s->reqbag.p;
    /* section of (d, t): header, lengths, rows, weights */
    int64_t *sec = s->cnt[1]; /* running start of d's next section */
    for (int64_t d = 0, at = 0; d < P; d++) sec[d] = at, at += len[d];
    pos = 0;
    for (int t = 0; t < T; t++) {
        const ember_jagged_feature *f = &b->features[t];
        const stab *x = &s->t[t];
        const int64_t k0 = f->offsets[0], n = f->offsets[B] - k0;
        const int hw = s->shw[t];
        for (int d = 0; d < P; d++) {
            int64_t *h = send + sec[d];
            h[0] = s->snb[d * T + t];
            h[1] = s->sni[d * T + t];
            h[2] = hw;
            s->cur_b[d] = 0;
            s->cur_i[d] = 0;
            s->last[d] = -1;
        }
        for (int64_t bag = 0; bag < B; bag++) {
            const int64_t a = f->offsets[bag], e = f->offsets[bag + 1];
            if (a == e) continue;
            if (x->mode != MODE_ROWS) {
                for (int d = 0; d < P; d++) {
                    if (x->mode == MODE_WHOLE ? d != x->owner : width_of(s, t, d) == 0) continue;
                    int64_t *h = send + sec[d], nb = h[0], ni = h[1];
                    int64_t *lens = h + 3, *rows = lens + nb;
                    float *w = (float *)(rows + ni);
                    reqbag[s->reqoff[d * T + t] + s->cur_b[d]] = bag;
                    lens[s->cur_b[d]++] = e - a;
                    memcpy(rows + s->cur_i[d], f->values + a, (size_t)(e - a) * 8);
                    if (hw) memcpy(w + s->cur_i[d], f->weights + a, (size_t)(e - a) * 4);
                    s->cur_i[d] += e - a;
                }
                continue;
            }
            const float mean = x->pooling == EMBER_POOLING_MEAN ? 1.0f / (float)(e - a) : 1.0f;
            for (int64_t k = a; k < e; k++) {
                int d = rk[pos + k - k0];
                int64_t *h = send + sec[d], nb = h[0], ni = h[1];
                int64_t *lens = h + 3, *rows = lens + nb;
                float *w = (float *)(rows + ni);
                if (s->last[d] != bag) {
                    s->last[d] = bag;
                    reqbag[s->reqoff[d * T + t] + s->cur_b[d]] = bag;
                    lens[s->cur_b[d]++] = 0;
                }
                lens[s->cur_b[d] - 1]++;
                rows[s->cur_i[d]] = lr[pos + k - k0];
                if (hw) w[s->cur_i[d]] = f->weights ? f->weights[k] : mean;
                s->cur_i[d]++;
            }
        }
        for (int d = 0; d < P; d++) {
            int64_t nb = s->snb[d * T + t], ni = s->sni[d * T + t];
            EMBER_ASSERT(s->cur_b[d] == nb && s->cur_i[d] == ni);
            sec[d] += 3 + nb + ni + (hw ? (ni + 1) / 2 : 0);
        }
        pos += n;
    }
    return EMBER_OK;
}

/* The shard's batch as the kernels take it: the local rows themselves, or prepared by
   the cache (ids remapped to slots; call->rows the slot arrays), held until backward. */
static ember_status local_batch(ember_sharded_ebc *s, const ember_jagged *jb, const ember_jagged **run,
                                ember_ebc_call *call) {
    *run = jb;
    if (!s->cache) return EMBER_OK;
    if (!s->held) EMBER_TRY(ember_cache_prepare(s->cache, jb, &s->held));
    *run = &s->held->jagged;
    call->rows = s->held->rows;
    return EMBER_OK;
}

/* The owner's side: parse what arrived into one batch over the shard and pool it. */
static ember_status own_forward(ember_sharded_ebc *s, const int64_t *rc) {
    static const char fn[] = "ember_sharded_ebc_forward";
    const int P = s->P, T = s->T;
    const int64_t *recv = s->recv.p;
    int64_t at = 0;
    EMBER_TRY(drop_held(s, 0)); /* a forward that no backward followed (inference) */
    for (int src = 0; src < P; src++) {
        int64_t end = at + rc[src];
        for (int t = 0; t < T; t++) {
            if (at + 3 > end) return ember__error(EMBER_ERR_STATE, "%s: rank %d's ids message is truncated", fn, src);
            int64_t nb = recv[at], ni = recv[at + 1];
            int hw = (int)recv[at + 2];
            if (nb < 0 || ni < 0 || (nb > 0 && s->t[t].local < 0))
                return ember__error(EMBER_ERR_STATE, "%s: rank %d sent %lld bags of %s, not held here: the ranks' "
                                    "plans differ", fn, src, (long long)nb, s->t[t].name);
            s->rnb[src * T + t] = nb;
            s->rni[src * T + t] = ni;
            s->rhw[src * T + t] = hw;
            s->rsec[src * T + t] = at;
            at += 3 + nb + ni + (hw ? (ni + 1) / 2 : 0);
        }
        if (at != end) return ember__error(EMBER_ERR_STATE, "%s: rank %d's ids message has a bad length", fn, src);
    }
    /* the shard's batch: per shard table, the sources' bags in rank order */
    int64_t Bpad = 0, tot_i = 0;
    int anyw = 0;
    for (int l = 0; l < s->nlocal; l++) {
        int t = s->ltab[l];
        int64_t nb = 0;
        for (int src = 0; src < P; src++) {
            nb += s->rnb[src * T + t];
            tot_i += s->rni[src * T + t];
            anyw |= s->rhw[src * T + t] && s->rnb[src * T + t] > 0;
        }
        if (nb > Bpad) Bpad = nb;
    }
    s->Bpad = Bpad;
    EMBER_TRY(reserve(s, &s->offs, (size_t)(Bpad + 1) * (size_t)(s->nlocal ? s->nlocal : 1) * 8));
    EMBER_TRY(reserve(s, &s->vals, (size_t)tot_i * 8 + 8));
    EMBER_TRY(reserve(s, &s->wts, anyw ? (size_t)tot_i * 4 + 4 : 4));
    int64_t *offs = s->offs.p, *vals = s->vals.p;
    float *wts = s->wts.p;
    int64_t vpos = 0;
    for (int l = 0; l < s->nlocal; l++) {
        int t = s->ltab[l];
        int64_t *off = offs + (size_t)l * (size_t)(Bpad + 1);
        int64_t nbag = 0, v0 = vpos;
        int w_here = 0;
        for (int src = 0; src < P; src++) w_here |= s->rhw[src * T + t] && s->rnb[src * T + t] > 0;
        off[0] = 0;
        for (int src = 0; src < P; src++) {
            const int64_t *h = recv + s->rsec[src * T + t];
            int64_t nb = h[0], ni = h[1];
            const int64_t *lens = h + 3, *rows = lens + nb;
            const float *w = (const float *)(rows + ni);
            s->bagbase[src * T + t] = nbag;
            for (int64_t i = 0; i < nb; i++, nbag++) off[nbag + 1] = off[nbag] + lens[i];
            memcpy(vals + vpos, rows, (size_t)ni * 8);
            if (w_here) {
                if (h[2])
                    memcpy(wts + vpos, w, (size_t)ni * 4);
                else
                    for (int64_t i = 0; i < ni; i++) wts[vpos + i] = 1.0f;
            }
            vpos += ni;
        }
        for (int64_t i = nbag; i < Bpad; i++) off[i + 1] = off[nbag];
        s->lfeat[l] = (ember_jagged_feature){
            .values = vals + v0, .offsets = off, .weights = w_here ? wts + v0 : NULL, .length = vpos - v0};
    }
    if (!s->nlocal) return EMBER_OK;
    EMBER_TRY(reserve(s, &s->pooled, (size_t)Bpad * (size_t)s->lout_dim * 4 + 4));
    ember_jagged jb = {.batch = Bpad, .num_features = s->nlocal, .features = s->lfeat};
    const ember_jagged *run;
    ember_ebc_call call = {.trusted = 1};
    EMBER_TRY(local_batch(s, &jb, &run, &call));
    ember_tensor *pt = NULL;
    EMBER_TRY(ember_tensor_wrap(s->pooled.p, EMBER_DTYPE_F32, 2, (int64_t[]){Bpad, s->lout_dim}, NULL, EMBER_CPU, &pt));
    ember_status st = ember_ebc_forward(s->compute, run, pt, &call);
    ember_tensor_destroy(pt);
    return st;
}

/* Counts (floats) of the pooled rows and their gradients: owner -> asker, per rank. */
static void pooled_counts(const ember_sharded_ebc *s, int64_t *own_send, int64_t *ask_recv) {
    const int P = s->P, T = s->T;
    for (int d = 0; d < P; d++) {
        own_send[d] = 1; /* the flag */
        ask_recv[d] = 1;
        for (int t = 0; t < T; t++) {
            own_send[d] += s->rnb[d * T + t] * s->t[t].lwidth;
            ask_recv[d] += s->snb[d * T + t] * width_of(s, t, d);
        }
    }
}

ember_status ember_sharded_ebc_forward(ember_sharded_ebc *s, const ember_jagged *batch, ember_tensor *out,
                                       const ember_ebc_call *call) {
    static const char fn[] = "ember_sharded_ebc_forward";
    EMBER_CHECK_NULL(s, fn);
    const int P = s->P, T = s->T;
    s->fwd_ok = 0;
    ember_status lst = check_batch(fn, s, batch, call);
    if (lst == EMBER_OK) lst = check_out(fn, "out", s, batch->batch, out);
    if (lst == EMBER_OK) lst = route(s, batch);
    /* 1. counts; -1 says this rank refused its batch */
    int64_t *sc = s->cnt[0], *rc = s->cnt[2];
    if (lst != EMBER_OK)
        for (int d = 0; d < P; d++) sc[d] = -1;
    char msg[512];
    if (lst != EMBER_OK) snprintf(msg, sizeof msg, "%s", ember_last_error());
    EMBER_TRY(ember_comm_all_to_all(s->comm, sc, rc, 1, EMBER_DTYPE_I64, NULL));
    int bad = -1;
    for (int d = 0; d < P && bad < 0; d++)
        if (rc[d] < 0) bad = d;
    if (lst != EMBER_OK) return rethrow(lst, msg);
    if (bad >= 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d refused its batch (its error says why); "
                            "nothing was looked up", fn, bad, P);
    /* 2. ids */
    int64_t tot = 0;
    for (int d = 0; d < P; d++) tot += rc[d];
    EMBER_TRY(reserve(s, &s->recv, (size_t)tot * 8 + 8));
    EMBER_TRY(ember_comm_all_to_all_v(s->comm, s->send.p, sc, NULL, s->recv.p, rc, NULL, EMBER_DTYPE_I64, NULL));
    /* 3. pool on the owner */
    ember_status ost = own_forward(s, rc);
    int64_t *os = s->cnt[3], *ar = s->cnt[4];
    /* a failed owner still answers, with the flag set: ranks learn of it together */
    if (ost != EMBER_OK) snprintf(msg, sizeof msg, "%s", ember_last_error());
    pooled_counts(s, os, ar);
    int64_t ptot = 0, atot = 0;
    for (int d = 0; d < P; d++) ptot += os[d], atot += ar[d];
    EMBER_TRY(reserve(s, &s->psend, (size_t)ptot * 4));
    EMBER_TRY(reserve(s, &s->precv, (size_t)atot * 4));
    float *ps = s->psend.p;
    const float *pooled = s->pooled.p;
    for (int d = 0; d < P; d++) {
        for (int t = 0; t < T; t++) {
            const stab *x = &s->t[t];
            int64_t nb = s->rnb[d * T + t];
            if (!nb) continue;
            if (ost != EMBER_OK) {
                memset(ps, 0, (size_t)(nb * x->lwidth) * 4);
                ps += nb * x->lwidth;
                continue;
            }
            const float *src = pooled + (size_t)s->bagbase[d * T + t] * (size_t)s->lout_dim + x->lout;
            for (int64_t i = 0; i < nb; i++, ps += x->lwidth, src += s->lout_dim)
                memcpy(ps, src, (size_t)x->lwidth * 4);
        }
        *ps++ = ost == EMBER_OK ? 0.0f : 1.0f;
    }
    /* 4. pooled rows back to the askers */
    EMBER_TRY(ember_comm_all_to_all_v(s->comm, s->psend.p, os, NULL, s->precv.p, ar, NULL, EMBER_DTYPE_F32, NULL));
    if (ost != EMBER_OK) return rethrow(ost, msg);
    const float *pr = s->precv.p;
    {
        const float *flag = pr;
        for (int d = 0; d < P; d++) {
            flag += ar[d];
            if (flag[-1] != 0.0f)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d could not pool its shard (its "
                                    "error says why)", fn, d, P);
        }
    }
    /* assemble: zeros, then each owner's rows in rank order */
    const int64_t B = batch->batch, ld = B > 1 ? ember_tensor_stride(out, 0) : s->out_dim;
    float *o = ember_tensor_data(out);
    for (int64_t bag = 0; bag < B; bag++) memset(o + bag * ld, 0, (size_t)s->out_dim * 4);
    const int64_t *reqbag = s->reqbag.p;
    for (int d = 0; d < P; d++) {
        for (int t = 0; t < T; t++) {
            const stab *x = &s->t[t];
            int64_t nb = s->snb[d * T + t];
            int w = width_of(s, t, d);
            int64_t col = x->out_off + (x->mode == MODE_COLUMNS ? s->cb[t * P + d] : 0);
            const int64_t *bl = reqbag + s->reqoff[d * T + t];
            for (int64_t i = 0; i < nb; i++, pr += w) {
                float *dst = o + bl[i] * ld + col;
                if (x->mode == MODE_ROWS)
                    for (int j = 0; j < w; j++) dst[j] += pr[j];
                else
                    memcpy(dst, pr, (size_t)w * 4);
            }
        }
        pr++; /* flag */
    }
    /* statistics (other ranks only) */
    ember_sharded_ebc_stats *st = &s->stats;
    st->bags_sent = st->bags_received = st->ids_sent = st->ids_received = 0;
    st->bytes_sent = st->bytes_received = 0;
    for (int d = 0; d < P; d++) {
        if (d == s->rank) continue;
        for (int t = 0; t < T; t++) {
            st->bags_sent += s->snb[d * T + t];
            st->ids_sent += s->sni[d * T + t];
            st->bags_received += s->rnb[d * T + t];
            st->ids_received += s->rni[d * T + t];
        }
        st->bytes_sent += 8 * (sc[d] + 1) + 4 * os[d];
        st->bytes_received += 8 * (rc[d] + 1) + 4 * ar[d];
    }
    s->B = B;
    s->fwd_ok = 1;
    return EMBER_OK;
}

/* ---- backward ---- */

/*
 * Gradients of replicated rows (local rows [0, rep_rows), asked only by this rank):
 * taken out of the shard's batch into a dense (rep_rows, dim + 1) buffer per table
 * (the last column counts the row's uses), summed over ranks by one all-reduce, then
 * applied on every rank by a second backward call whose bags are single rows with
 * the summed gradient, so every copy takes the same step. Behind a cache, run is the
 * prepared batch (the same positions, ids remapped to slots): the rows kept for the
 * first call are its slots.
 */
static ember_status split_replicated(ember_sharded_ebc *s, const float *g, const ember_jagged *run, ember_jagged *jb) {
    int64_t tot = 0;
    for (int l = 0; l < s->nlocal; l++) tot += s->lfeat[l].length;
    EMBER_TRY(reserve(s, &s->fvals, (size_t)tot * 8 + 8));
    EMBER_TRY(reserve(s, &s->fwts, (size_t)tot * 4 + 4));
    EMBER_TRY(reserve(s, &s->foffs, (size_t)(s->Bpad + 1) * (size_t)s->nlocal * 8));
    EMBER_TRY(reserve(s, &s->rep, (size_t)s->rep_floats * 4));
    float *rep = s->rep.p;
    memset(rep, 0, (size_t)s->rep_floats * 4);
    int64_t *fv = s->fvals.p, *fo = s->foffs.p, vpos = 0;
    float *fw = s->fwts.p;
    for (int l = 0; l < s->nlocal; l++) {
        ember_jagged_feature *f = &s->lfeat[l];
        const int64_t *slot = run->features == s->lfeat ? NULL : run->features[l].values;
        const stab *x = &s->t[s->ltab[l]];
        int64_t *off = fo + (size_t)l * (size_t)(s->Bpad + 1), v0 = vpos;
        off[0] = 0;
        for (int64_t bag = 0; bag < s->Bpad; bag++) {
            const float *gy = g + bag * s->lout_dim + x->lout;
            for (int64_t k = f->offsets[bag]; k < f->offsets[bag + 1]; k++) {
                int64_t row = f->values[k];
                float c = f->weights ? f->weights[k] : 1.0f;
                if (row < x->rep_rows) {
                    float *acc = rep + x->rep_off + row * (x->dim + 1);
                    for (int j = 0; j < x->dim; j++) acc[j] = acc[j] + c * gy[j];
                    acc[x->dim] += 1.0f;
                } else {
                    fv[vpos] = slot ? slot[k] : row;
                    fw[vpos] = c;
                    vpos++;
                }
            }
            off[bag + 1] = vpos - v0;
        }
        s->lfeat[l] = (ember_jagged_feature){
            .values = fv + v0, .offsets = off, .weights = f->weights ? fw + v0 : NULL, .length = vpos - v0};
    }
    *jb = (ember_jagged){.batch = s->Bpad, .num_features = s->nlocal, .features = s->lfeat};
    return EMBER_OK;
}

/* Apply the all-reduced gradients of the replicated rows that any rank used. */
static ember_status apply_replicated(ember_sharded_ebc *s, const ember_ebc_call *c) {
    const float *rep = s->rep.p;
    int64_t nb = 0, tot = 0;
    for (int l = 0; l < s->nlocal; l++) {
        const stab *x = &s->t[s->ltab[l]];
        int64_t n = 0;
        for (int64_t r = 0; r < x->rep_rows; r++) n += rep[x->rep_off + r * (x->dim + 1) + x->dim] > 0.0f;
        if (n > nb) nb = n;
        tot += n;
    }
    EMBER_TRY(reserve(s, &s->rep_offs, (size_t)(nb + 1) * (size_t)s->nlocal * 8));
    EMBER_TRY(reserve(s, &s->rep_vals, (size_t)tot * 8 + 8));
    EMBER_TRY(reserve(s, &s->rep_grad, (size_t)nb * (size_t)s->lout_dim * 4 + 4));
    int64_t *ro = s->rep_offs.p, *rv = s->rep_vals.p, vpos = 0;
    float *rg = s->rep_grad.p;
    memset(rg, 0, (size_t)nb * (size_t)s->lout_dim * 4);
    for (int l = 0; l < s->nlocal; l++) {
        const stab *x = &s->t[s->ltab[l]];
        int64_t *off = ro + (size_t)l * (size_t)(nb + 1), v0 = vpos, k = 0;
        off[0] = 0;
        for (int64_t r = 0; r < x->rep_rows; r++) {
            const float *acc = rep + x->rep_off + r * (x->dim + 1);
            if (!(acc[x->dim] > 0.0f)) continue;
            rv[vpos++] = r;
            memcpy(rg + k * s->lout_dim + x->lout, acc, (size_t)x->dim * 4);
            off[k + 1] = k + 1;
            k++;
        }
        for (int64_t i = k; i < nb; i++) off[i + 1] = k;
        s->lfeat[l] = (ember_jagged_feature){.values = rv + v0, .offsets = off, .length = vpos - v0};
    }
    ember_tensor *gt = NULL;
    EMBER_TRY(ember_tensor_wrap(rg, EMBER_DTYPE_F32, 2, (int64_t[]){nb, s->lout_dim}, NULL, EMBER_CPU, &gt));
    ember_jagged jb = {.batch = nb, .num_features = s->nlocal, .features = s->lfeat};
    ember_status st = EMBER_OK;
    if (!s->cache) {
        st = ember_ebc_backward(s->local, &jb, gt, c);
    } else if (tot > 0) {
        /* the rows through the cache as a batch of their own (the step's was released) */
        const ember_jagged *run;
        ember_ebc_call lc = *c;
        st = local_batch(s, &jb, &run, &lc);
        if (st == EMBER_OK) st = ember_ebc_backward(s->compute, run, gt, &lc);
        ember_status rs = drop_held(s, 1);
        if (st == EMBER_OK) st = rs;
    }
    ember_tensor_destroy(gt);
    return st;
}

ember_status ember_sharded_ebc_backward(ember_sharded_ebc *s, const ember_tensor *grad_out,
                                        const ember_ebc_call *call) {
    static const char fn[] = "ember_sharded_ebc_backward";
    EMBER_CHECK_NULL(s, fn);
    const int P = s->P, T = s->T;
    if (!s->fwd_ok) return ember__error(EMBER_ERR_STATE, "%s: no forward since the last backward", fn);
    ember_status lst = EMBER_OK;
    if (!call) lst = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: argument 'call' is NULL", fn);
    else if (call->rows)
        lst = ember__error(EMBER_ERR_UNSUPPORTED, "%s: call->rows (cache slots) is not supported on shards", fn);
    else if (!(call->lr >= 0.0f) || !isfinite(call->lr))
        lst = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: learning rate %g must be finite and >= 0", fn,
                           (double)call->lr);
    else if (call->step < 0)
        lst = ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: step %lld is negative", fn, (long long)call->step);
    if (lst == EMBER_OK) lst = check_out(fn, "grad_out", s, s->B, grad_out);
    char msg[512] = "";
    if (lst != EMBER_OK) snprintf(msg, sizeof msg, "%s", ember_last_error());
    s->fwd_ok = 0;
    /* 1. dL/d(pooled) rows to the owners, scaled; the counts are the forward's */
    int64_t *as = s->cnt[3], *orc = s->cnt[4];
    pooled_counts(s, orc, as); /* asker sends what it received, owner receives what it sent */
    int64_t atot = 0, otot = 0;
    for (int d = 0; d < P; d++) atot += as[d], otot += orc[d];
    EMBER_TRY(reserve(s, &s->gsend, (size_t)atot * 4));
    EMBER_TRY(reserve(s, &s->grecv, (size_t)otot * 4));
    float *gs = s->gsend.p;
    const float *g = lst == EMBER_OK ? ember_tensor_data(grad_out) : NULL;
    const int64_t ld = lst == EMBER_OK && s->B > 1 ? ember_tensor_stride(grad_out, 0) : s->out_dim;
    const int64_t *reqbag = s->reqbag.p;
    const float scale = s->gscale;
    for (int d = 0; d < P; d++) {
        for (int t = 0; t < T; t++) {
            const stab *x = &s->t[t];
            int64_t nb = s->snb[d * T + t];
            int w = width_of(s, t, d);
            int64_t col = x->out_off + (x->mode == MODE_COLUMNS ? s->cb[t * P + d] : 0);
            const int64_t *bl = reqbag + s->reqoff[d * T + t];
            for (int64_t i = 0; i < nb; i++, gs += w) {
                if (!g) {
                    memset(gs, 0, (size_t)w * 4);
                    continue;
                }
                const float *src = g + bl[i] * ld + col;
                if (scale == 1.0f)
                    memcpy(gs, src, (size_t)w * 4);
                else
                    for (int j = 0; j < w; j++) gs[j] = src[j] * scale;
            }
        }
        *gs++ = lst == EMBER_OK ? 0.0f : 1.0f;
    }
    EMBER_TRY(ember_comm_all_to_all_v(s->comm, s->gsend.p, as, NULL, s->grecv.p, orc, NULL, EMBER_DTYPE_F32, NULL));
    const float *gr = s->grecv.p;
    int bad = -1;
    {
        const float *flag = gr;
        for (int d = 0; d < P; d++) {
            flag += orc[d];
            if (flag[-1] != 0.0f && bad < 0) bad = d;
        }
    }
    if (lst != EMBER_OK) return rethrow(lst, msg);
    if (bad >= 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: rank %d of %d refused its gradient (its error says why); "
                            "no row was updated", fn, bad, P);
    /* 2. the owner's gradient rows, aligned with the batch it pooled */
    int64_t step = call->step > 0 ? call->step : s->steps + 1;
    ember_ebc_call c = {.lr = call->lr, .step = step, .trusted = 1};
    ember_status st = EMBER_OK;
    if (s->nlocal) {
        EMBER_TRY(reserve(s, &s->grad, (size_t)s->Bpad * (size_t)s->lout_dim * 4 + 4));
        float *gm = s->grad.p;
        memset(gm, 0, (size_t)s->Bpad * (size_t)s->lout_dim * 4);
        for (int d = 0; d < P; d++) {
            for (int t = 0; t < T; t++) {
                const stab *x = &s->t[t];
                int64_t nb = s->rnb[d * T + t];
                float *dst = gm + (size_t)s->bagbase[d * T + t] * (size_t)s->lout_dim + x->lout;
                for (int64_t i = 0; i < nb; i++, gr += x->lwidth, dst += s->lout_dim)
                    memcpy(dst, gr, (size_t)x->lwidth * 4);
            }
            gr++; /* flag */
        }
        ember_jagged jb = {.batch = s->Bpad, .num_features = s->nlocal, .features = s->lfeat};
        /* behind a cache, the forward's batch (prepared again if row reads gave it back) */
        const ember_jagged *run;
        ember_ebc_call lc = c;
        st = local_batch(s, &jb, &run, &lc);
        if (st == EMBER_OK && s->rep_floats > 0) {
            st = split_replicated(s, gm, run, &jb);
            run = &jb;
        }
        ember_tensor *gt = NULL;
        if (st == EMBER_OK)
            st = ember_tensor_wrap(gm, EMBER_DTYPE_F32, 2, (int64_t[]){s->Bpad, s->lout_dim}, NULL, EMBER_CPU, &gt);
        if (st == EMBER_OK) st = ember_ebc_backward(s->compute, run, gt, &lc);
        ember_tensor_destroy(gt);
        /* the rows may have been updated even when the call failed: they are dirty */
        ember_status rs = drop_held(s, 1);
        if (st == EMBER_OK) st = rs;
    }
    /* 3. replicated rows: every rank holds them, so every rank joins */
    if (s->rep_floats > 0) {
        if (st != EMBER_OK) memset(s->rep.p, 0, (size_t)s->rep_floats * 4);
        ember_status cst = ember_comm_all_reduce(s->comm, s->rep.p, s->rep.p, s->rep_floats, EMBER_DTYPE_F32,
                                                 EMBER_REDUCE_SUM, NULL);
        if (st == EMBER_OK) st = cst;
        if (st == EMBER_OK) st = apply_replicated(s, &c);
        s->stats.bytes_sent += 4 * s->rep_floats;
        s->stats.bytes_received += 4 * s->rep_floats;
    }
    for (int d = 0; d < P; d++)
        if (d != s->rank) s->stats.bytes_sent += 4 * as[d], s->stats.bytes_received += 4 * orc[d];
    if (st == EMBER_OK) s->steps = step;
    return st;
}
