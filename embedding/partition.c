/*
 * embedding/partition.c: sharding plans (include/ember/partition.h).
 *
 * The minimax partitioner is greedy LPT (longest processing time first) over the
 * hot head of the counted rows, on top of a memory-balanced range split of everything
 * else. Why this split: LPT is within 4/3 - 1/(3m) of the optimum (Graham 1969) and
 * its error is at most the last item it places, so the head only needs the rows large
 * enough to matter; the long tail of rare rows evens itself out across contiguous
 * ranges, which cost world + 1 integers per table instead of a hash entry per row.
 * The head starts at the rows taking at least 1/64 of a device's mean load and grows
 * 4x a round while the balance misses its target; replication of the hottest blocks is
 * tried only when no head size meets it, and kept only if it lowers the maximum.
 *
 * Shard layout of table t on rank r: [replicated blocks | r's hot blocks, hottest first
 * | r's cold id range]. Ranges are over raw ids, so hot ids inside a cold range leave
 * unused slots ("holes"); that keeps the cold lookup to one subtraction.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember/partition.h"
#include "engine/internal.h"

#define MAX_TABLES 32768
#define MAX_ROWS (INT64_C(1) << 48)
#define MAX_DIM (1 << 20)
#define MAX_ROW_BYTES (INT64_C(1) << 26)
#define MAX_TABLE_BYTES (INT64_C(1) << 46)
#define MAX_BLOCK_ROWS (INT64_C(1) << 20)
#define ROW_MASK ((UINT64_C(1) << 48) - 1)
#define EMPTY_KEY (-1)

enum { MODE_WHOLE, MODE_COLUMNS, MODE_ROWS };

typedef struct ptable {
    char name[32];
    int64_t rows;
    int dim;
    int64_t row_bytes;
    double pooling;
    int mode;
    double total;       /* counted lookups of the table */
    double rep_lookups; /* of those, on replicated rows */
    double *lookups;    /* (P) load served per rank */
    int owner;          /* MODE_WHOLE */
    int32_t *cols;      /* (2P) MODE_COLUMNS: begin, end per rank */
    int64_t *bounds;    /* (P + 1) MODE_ROWS: cold range of rank d is [bounds[d], bounds[d+1]) */
    int64_t *hot_rows;  /* (P) */
    int64_t *holes;     /* (P) */
    int64_t rep_rows;
    /* hot and replicated blocks in layout order: replicated first, then by rank */
    int64_t nlist;
    int64_t *list_block;
    int32_t *list_rank;
    /* hash of block -> packed (rank + 1) << 48 | local row of the block's first row */
    int64_t hcap;
    int hshift; /* 64 - log2(hcap) */
    int64_t *hkeys;
    uint64_t *hvals;
} ptable;

struct ember_plan {
    ember_memory *mm;
    ember_plan_kind kind;
    int world, num_tables;
    int64_t block_rows;
    size_t *budget; /* (P) 0 = unlimited */
    ptable *t;
};

static const char *kind_names[EMBER_PLAN_KIND_COUNT] = {"tablewise", "rowwise", "columnwise", "minimax"};

const char *ember_plan_kind_name(ember_plan_kind k) {
    return (unsigned)k < EMBER_PLAN_KIND_COUNT ? kind_names[k] : "unknown";
}

ember_status ember_plan_kind_parse(const char *name, ember_plan_kind *out) {
    EMBER_CHECK_NULL(name, "ember_plan_kind_parse");
    EMBER_CHECK_NULL(out, "ember_plan_kind_parse");
    for (int k = 0; k < EMBER_PLAN_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (ember_plan_kind)k;
            return EMBER_OK;
        }
    return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                        "ember_plan_kind_parse: '%s' is not tablewise, rowwise, columnwise or minimax", name);
}

/* ---- memory ---- */

static ember_memory *mm_of(ember_memory *mm) { return mm ? mm : ember_memory_default(); }

/* n elements of sz bytes, zeroed (n may be 0: a 1-byte allocation). */
static ember_status zalloc(ember_memory *mm, size_t n, size_t sz, void *out) {
    size_t bytes;
    if (!ember__mul_size(n, sz, &bytes))
        return ember__error(EMBER_ERR_OVERFLOW, "ember_plan: %zu x %zu bytes", n, sz);
    void *p;
    EMBER_TRY(ember_memory_alloc(mm_of(mm), EMBER_TIER_HOST, EMBER_MEM_OTHER, bytes ? bytes : 1, &p));
    memset(p, 0, bytes ? bytes : 1);
    *(void **)out = p;
    return EMBER_OK;
}

static void zfree(ember_memory *mm, void *p) {
    if (p) ember_memory_free(mm_of(mm), p);
}

static void ptable_free(ember_memory *mm, ptable *t) {
    zfree(mm, t->lookups);
    zfree(mm, t->cols);
    zfree(mm, t->bounds);
    zfree(mm, t->hot_rows);
    zfree(mm, t->holes);
    zfree(mm, t->list_block);
    zfree(mm, t->list_rank);
    zfree(mm, t->hkeys);
    zfree(mm, t->hvals);
}

void ember_plan_destroy(ember_plan *plan) {
    if (!plan) return;
    ember_memory *mm = plan->mm;
    for (int i = 0; plan->t && i < plan->num_tables; i++) ptable_free(mm, &plan->t[i]);
    zfree(mm, plan->t);
    zfree(mm, plan->budget);
    zfree(mm, plan);
}

static ember_status plan_alloc(ember_memory *mm, ember_plan_kind kind, int world, int num_tables, int64_t block_rows,
                               ember_plan **out) {
    ember_plan *p = NULL;
    EMBER_TRY(zalloc(mm, 1, sizeof *p, &p));
    p->mm = mm;
    p->kind = kind;
    p->world = world;
    p->num_tables = num_tables;
    p->block_rows = block_rows;
    ember_status st = zalloc(mm, (size_t)world, sizeof *p->budget, &p->budget);
    if (st == EMBER_OK) st = zalloc(mm, (size_t)num_tables, sizeof *p->t, &p->t);
    if (st != EMBER_OK) {
        ember_plan_destroy(p);
        return st;
    }
    *out = p;
    return EMBER_OK;
}

/* Per-table arrays every mode has; mode-specific ones come from the builders. */
static ember_status ptable_alloc(ember_memory *mm, ptable *t, int P, int mode) {
    t->mode = mode;
    EMBER_TRY(zalloc(mm, (size_t)P, sizeof *t->lookups, &t->lookups));
    EMBER_TRY(zalloc(mm, (size_t)P, sizeof *t->hot_rows, &t->hot_rows));
    EMBER_TRY(zalloc(mm, (size_t)P, sizeof *t->holes, &t->holes));
    if (mode == MODE_COLUMNS) EMBER_TRY(zalloc(mm, 2 * (size_t)P, sizeof *t->cols, &t->cols));
    if (mode == MODE_ROWS) EMBER_TRY(zalloc(mm, (size_t)P + 1, sizeof *t->bounds, &t->bounds));
    return EMBER_OK;
}

/* ---- the id map ---- */

static inline uint64_t hash_block(int64_t b) { return (uint64_t)b * UINT64_C(0x9E3779B97F4A7C15); }

static inline int64_t block_real_rows(const ptable *t, int64_t br, int64_t b) {
    int64_t first = b * br;
    return t->rows - first < br ? t->rows - first : br;
}

/* Lay out the listed blocks (local rows, per-rank counts, holes) and build the hash.
 * Returns EMBER_ERR_FORMAT on a repeated block (only reachable from decode). */
static ember_status ptable_finish_rows(ember_memory *mm, ptable *t, int P, int64_t br) {
    t->rep_rows = 0;
    for (int d = 0; d < P; d++) t->hot_rows[d] = t->holes[d] = 0;
    t->hcap = 0;
    if (t->nlist == 0) return EMBER_OK;
    int64_t cap = 16;
    while (cap < 2 * t->nlist) cap *= 2;
    t->hcap = cap;
    EMBER_TRY(zalloc(mm, (size_t)cap, sizeof *t->hkeys, &t->hkeys));
    EMBER_TRY(zalloc(mm, (size_t)cap, sizeof *t->hvals, &t->hvals));
    for (int64_t i = 0; i < cap; i++) t->hkeys[i] = EMPTY_KEY;
    for (int64_t i = 0; i < t->nlist; i++)
        if (t->list_rank[i] < 0) t->rep_rows += block_real_rows(t, br, t->list_block[i]);
    int shift = 64;
    for (int64_t c = cap; c > 1; c >>= 1) shift--;
    t->hshift = shift;
    int64_t rep_off = 0; /* replicated blocks are a prefix of the list (build and decode ensure it) */
    for (int64_t i = 0; i < t->nlist; i++) {
        int64_t b = t->list_block[i];
        int r = t->list_rank[i];
        int64_t n = block_real_rows(t, br, b);
        int64_t local;
        if (r < 0) {
            local = rep_off;
            rep_off += n;
        } else {
            local = t->rep_rows + t->hot_rows[r];
            t->hot_rows[r] += n;
        }
        uint64_t h = hash_block(b) >> shift;
        while (t->hkeys[h] != EMPTY_KEY) {
            if (t->hkeys[h] == b)
                return ember__error(EMBER_ERR_FORMAT, "ember_plan: table %s: block %lld listed twice", t->name,
                                    (long long)b);
            h = (h + 1) & (uint64_t)(cap - 1);
        }
        t->hkeys[h] = b;
        t->hvals[h] = ((uint64_t)(r + 1) << 48) | (uint64_t)local;
        /* holes: the block's ids inside cold ranges */
        int64_t lo = b * br, hi = lo + n;
        int a = 0, z = P;
        while (z - a > 1) {
            int m = (a + z) / 2;
            if (t->bounds[m] <= lo) a = m;
            else z = m;
        }
        for (int d = a; d < P && t->bounds[d] < hi; d++) {
            int64_t s = lo > t->bounds[d] ? lo : t->bounds[d];
            int64_t e = hi < t->bounds[d + 1] ? hi : t->bounds[d + 1];
            if (e > s) t->holes[d] += e - s;
        }
    }
    return EMBER_OK;
}

static inline int cold_rank(const ptable *t, int P, int64_t id) {
    int a = 0, z = P;
    while (z - a > 1) {
        int m = (a + z) / 2;
        if (t->bounds[m] <= id) a = m;
        else z = m;
    }
    return a;
}

static inline void locate_rows(const ptable *t, int P, int64_t br, int64_t id, int *rank, int64_t *row) {
    if (t->hcap) {
        int64_t b = id / br;
        uint64_t h = hash_block(b) >> t->hshift;
        while (t->hkeys[h] != EMPTY_KEY) {
            if (t->hkeys[h] == b) {
                uint64_t v = t->hvals[h];
                *rank = (int)(v >> 48) - 1;
                *row = (int64_t)(v & ROW_MASK) + (id - b * br);
                return;
            }
            h = (h + 1) & (uint64_t)(t->hcap - 1);
        }
    }
    int d = cold_rank(t, P, id);
    *rank = d;
    *row = t->rep_rows + t->hot_rows[d] + (id - t->bounds[d]);
}

ember_status ember_plan_locate(const ember_plan *plan, int table, int64_t id, int *rank, int64_t *local_row) {
    EMBER_CHECK_NULL(plan, "ember_plan_locate");
    EMBER_CHECK_NULL(rank, "ember_plan_locate");
    EMBER_CHECK_NULL(local_row, "ember_plan_locate");
    if (table < 0 || table >= plan->num_tables)
        return ember__error(EMBER_ERR_INDEX, "ember_plan_locate: table %d of %d", table, plan->num_tables);
    const ptable *t = &plan->t[table];
    if (id < 0 || id >= t->rows)
        return ember__error(EMBER_ERR_INDEX, "ember_plan_locate: table %s id %lld outside [0, %lld)", t->name,
                            (long long)id, (long long)t->rows);
    switch (t->mode) {
    case MODE_WHOLE: *rank = t->owner; *local_row = id; break;
    case MODE_COLUMNS: *rank = EMBER_PLAN_EVERY_RANK; *local_row = id; break;
    default: locate_rows(t, plan->world, plan->block_rows, id, rank, local_row); break;
    }
    return EMBER_OK;
}

ember_status ember_plan_locate_many(const ember_plan *plan, int table, const int64_t *ids, int64_t n, int *ranks,
                                    int64_t *local_rows) {
    EMBER_CHECK_NULL(plan, "ember_plan_locate_many");
    if (n < 0 || (n > 0 && (!ids || !ranks || !local_rows)))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_locate_many: %lld ids with NULL arrays",
                            (long long)n);
    if (table < 0 || table >= plan->num_tables)
        return ember__error(EMBER_ERR_INDEX, "ember_plan_locate_many: table %d of %d", table, plan->num_tables);
    const ptable *t = &plan->t[table];
    for (int64_t i = 0; i < n; i++) {
        int64_t id = ids[i];
        if (id < 0 || id >= t->rows)
            return ember__error(EMBER_ERR_INDEX, "ember_plan_locate_many: table %s id %lld at position %lld outside [0, %lld)",
                                t->name, (long long)id, (long long)i, (long long)t->rows);
        if (t->mode == MODE_WHOLE) {
            ranks[i] = t->owner;
            local_rows[i] = id;
        } else if (t->mode == MODE_COLUMNS) {
            ranks[i] = EMBER_PLAN_EVERY_RANK;
            local_rows[i] = id;
        } else {
            locate_rows(t, plan->world, plan->block_rows, id, &ranks[i], &local_rows[i]);
        }
    }
    return EMBER_OK;
}

ember_plan_kind ember_plan_get_kind(const ember_plan *plan) { return plan ? plan->kind : EMBER_PLAN_KIND_COUNT; }
int ember_plan_world(const ember_plan *plan) { return plan ? plan->world : 0; }
int ember_plan_num_tables(const ember_plan *plan) { return plan ? plan->num_tables : 0; }

/* ---- shards and statistics ---- */

static void shard_of(const ember_plan *plan, const ptable *t, int d, ember_plan_shard *s) {
    memset(s, 0, sizeof *s);
    s->lookups = t->lookups[d];
    s->col_begin = 0;
    s->col_end = t->dim;
    switch (t->mode) {
    case MODE_WHOLE:
        if (t->owner == d) {
            s->local_rows = t->rows;
            s->cold_end = 0;
            s->bytes = t->rows * t->row_bytes;
        } else {
            s->col_end = 0;
        }
        break;
    case MODE_COLUMNS: {
        int b = t->cols[2 * d], e = t->cols[2 * d + 1];
        s->col_begin = b;
        s->col_end = e;
        if (e > b) {
            s->local_rows = t->rows;
            /* a row's bytes split by columns, rounded up per row */
            int64_t per_row = (t->row_bytes * (int64_t)(e - b) + t->dim - 1) / t->dim;
            s->bytes = t->rows * per_row;
        } else {
            s->col_begin = s->col_end = 0;
        }
        break;
    }
    default:
        s->replicated_rows = t->rep_rows;
        s->hot_rows = t->hot_rows[d];
        s->cold_begin = t->bounds[d];
        s->cold_end = t->bounds[d + 1];
        s->hole_rows = t->holes[d];
        s->local_rows = t->rep_rows + t->hot_rows[d] + (s->cold_end - s->cold_begin);
        s->bytes = s->local_rows * t->row_bytes;
        break;
    }
    (void)plan;
}

ember_status ember_plan_get_shard(const ember_plan *plan, int table, int rank, ember_plan_shard *out) {
    EMBER_CHECK_NULL(plan, "ember_plan_get_shard");
    EMBER_CHECK_NULL(out, "ember_plan_get_shard");
    if (table < 0 || table >= plan->num_tables || rank < 0 || rank >= plan->world)
        return ember__error(EMBER_ERR_INDEX, "ember_plan_get_shard: table %d of %d, rank %d of %d", table,
                            plan->num_tables, rank, plan->world);
    shard_of(plan, &plan->t[table], rank, out);
    return EMBER_OK;
}

/* Share of table t's lookups that rank d serves from rows it owns (not replicated). */
static double owned_share(const ember_plan *plan, const ptable *t, int d) {
    int P = plan->world;
    if (t->total > 0) {
        double s = (t->lookups[d] - t->rep_lookups / P) / t->total;
        return s < 0 ? 0 : s > 1 ? 1 : s;
    }
    switch (t->mode) {
    case MODE_WHOLE: return t->owner == d ? 1.0 : 0.0;
    case MODE_ROWS: {
        double owned = (double)(t->hot_rows[d] + (t->bounds[d + 1] - t->bounds[d]) - t->holes[d]);
        return owned / (double)t->rows;
    }
    default: return 0;
    }
}

static double table_comm(const ember_plan *plan, const ptable *t, int d, double B) {
    int P = plan->world;
    if (P == 1) return 0;
    double L = t->pooling, D = t->dim, bytes = 0;
    if (t->mode == MODE_COLUMNS) {
        int holders = 0;
        for (int e = 0; e < P; e++) holders += t->cols[2 * e + 1] > t->cols[2 * e];
        double w = t->cols[2 * d + 1] - t->cols[2 * d];
        int holds = w > 0;
        bytes += B * L * 8 * (holders - holds);          /* ids sent */
        if (holds) bytes += (P - 1) * B * L * 8;          /* ids received */
        double pooled = (holds ? (P - 1) * B * w * 4 : 0) + B * (D - w) * 4;
        return bytes + 2 * pooled;
    }
    double r = t->total > 0 ? t->rep_lookups / t->total : (double)t->rep_rows / (double)t->rows;
    double sd = owned_share(plan, t, d);
    double remote = 1 - r - sd;
    bytes += B * L * (remote > 0 ? remote : 0) * 8 + (P - 1) * B * L * sd * 8;
    double qd = 1 - pow(1 - sd, L), qother = 0;
    for (int e = 0; e < P; e++)
        if (e != d) qother += 1 - pow(1 - owned_share(plan, t, e), L);
    bytes += 2 * ((P - 1) * B * qd * D * 4 + B * qother * D * 4);
    bytes += 4.0 * (P - 1) / P * (double)t->rep_rows * D * 4;
    return bytes;
}

ember_status ember_plan_get_stats(const ember_plan *plan, int64_t batch_size, ember_plan_stats *out,
                                  ember_plan_device_stats *devices) {
    EMBER_CHECK_NULL(plan, "ember_plan_get_stats");
    EMBER_CHECK_NULL(out, "ember_plan_get_stats");
    if (batch_size <= 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_get_stats: batch_size %lld (> 0)",
                            (long long)batch_size);
    int P = plan->world;
    memset(out, 0, sizeof *out);
    out->kind = plan->kind;
    out->world = P;
    out->num_tables = plan->num_tables;
    out->block_rows = plan->block_rows;
    out->fits = 1;
    double sum_comm = 0, sum_load = 0;
    for (int i = 0; i < plan->num_tables; i++) {
        const ptable *t = &plan->t[i];
        out->total_lookups += t->total;
        if (t->mode == MODE_ROWS) {
            out->map_bytes += (size_t)t->hcap * 16 + (size_t)(P + 1) * 8 + (size_t)P * 8;
            for (int64_t k = 0; k < t->nlist; k++) {
                if (t->list_rank[k] < 0) out->replicated_blocks++;
                else out->hot_blocks++;
            }
        } else {
            out->map_bytes += t->mode == MODE_COLUMNS ? (size_t)P * 8 : 4;
        }
    }
    for (int d = 0; d < P; d++) {
        ember_plan_device_stats ds = {.budget = plan->budget[d]};
        for (int i = 0; i < plan->num_tables; i++) {
            const ptable *t = &plan->t[i];
            ember_plan_shard s;
            shard_of(plan, t, d, &s);
            ds.lookups += s.lookups;
            ds.rows += s.local_rows;
            ds.bytes += s.bytes;
            ds.replicated_rows += s.replicated_rows;
            ds.hot_rows += s.hot_rows;
            ds.hole_rows += s.hole_rows;
            ds.comm_bytes += table_comm(plan, t, d, (double)batch_size);
        }
        if (devices) devices[d] = ds;
        if (ds.lookups > out->max_lookups) out->max_lookups = ds.lookups;
        if (ds.bytes > out->max_bytes) out->max_bytes = ds.bytes;
        if (ds.comm_bytes > out->max_comm_bytes) out->max_comm_bytes = ds.comm_bytes;
        out->total_bytes += ds.bytes;
        out->hole_rows += ds.hole_rows;
        sum_comm += ds.comm_bytes;
        sum_load += ds.lookups;
        if (ds.budget && (size_t)ds.bytes > ds.budget) {
            out->fits = 0;
            out->over_budget++;
        }
    }
    out->mean_lookups = sum_load / P;
    out->mean_comm_bytes = sum_comm / P;
    out->imbalance = out->mean_lookups > 0 ? out->max_lookups / out->mean_lookups : 1.0;
    return EMBER_OK;
}

/* ---- text ---- */

static void fmt_bytes(char *buf, size_t n, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int k = 0;
    while (b >= 1024 && k < 5) {
        b /= 1024;
        k++;
    }
    snprintf(buf, n, k ? "%.2f %s" : "%.0f %s", b, u[k]);
}

ember_status ember_plan_write_text(const ember_plan *plan, int64_t batch_size, FILE *f) {
    EMBER_CHECK_NULL(plan, "ember_plan_write_text");
    EMBER_CHECK_NULL(f, "ember_plan_write_text");
    int P = plan->world;
    ember_plan_device_stats *ds = NULL;
    EMBER_TRY(zalloc(plan->mm, (size_t)P, sizeof *ds, &ds));
    ember_plan_stats s;
    ember_status st = ember_plan_get_stats(plan, batch_size, &s, ds);
    if (st != EMBER_OK) {
        zfree(plan->mm, ds);
        return st;
    }
    char b1[32], b2[32], b3[32];
    fmt_bytes(b1, sizeof b1, (double)s.map_bytes);
    fprintf(f, "plan %s: world %d, %d tables, block %lld rows, %lld hot + %lld replicated blocks, map %s per rank\n",
            ember_plan_kind_name(plan->kind), P, plan->num_tables, (long long)plan->block_rows, (long long)s.hot_blocks,
            (long long)s.replicated_blocks, b1);
    fprintf(f, "imbalance %.4f (max %.6g / mean %.6g lookups), %s\n", s.imbalance, s.max_lookups, s.mean_lookups,
            s.fits ? "fits every budget" : "OVER BUDGET");
    fprintf(f, "%6s %14s %8s %14s %12s %12s %14s\n", "rank", "lookups", "share", "rows", "bytes", "budget",
            "comm/step");
    for (int d = 0; d < P; d++) {
        fmt_bytes(b1, sizeof b1, (double)ds[d].bytes);
        if (ds[d].budget) fmt_bytes(b2, sizeof b2, (double)ds[d].budget);
        else snprintf(b2, sizeof b2, "-");
        fmt_bytes(b3, sizeof b3, ds[d].comm_bytes);
        fprintf(f, "%6d %14.6g %7.2f%% %14lld %12s %12s %14s%s\n", d, ds[d].lookups,
                s.total_lookups > 0 ? 100 * ds[d].lookups / s.total_lookups : 0.0, (long long)ds[d].rows, b1, b2, b3,
                ds[d].budget && (size_t)ds[d].bytes > ds[d].budget ? "  over budget" : "");
    }
    for (int i = 0; i < plan->num_tables; i++) {
        const ptable *t = &plan->t[i];
        fprintf(f, "table %-8s rows %lld dim %d: ", t->name, (long long)t->rows, t->dim);
        if (t->mode == MODE_WHOLE) {
            fprintf(f, "rank %d\n", t->owner);
        } else if (t->mode == MODE_COLUMNS) {
            for (int d = 0; d < P; d++)
                if (t->cols[2 * d + 1] > t->cols[2 * d])
                    fprintf(f, "cols [%d,%d)->%d ", t->cols[2 * d], t->cols[2 * d + 1], d);
            fprintf(f, "\n");
        } else {
            int64_t hot = 0, rep = 0;
            for (int64_t k = 0; k < t->nlist; k++) {
                if (t->list_rank[k] < 0) rep++;
                else hot++;
            }
            fprintf(f, "%lld hot, %lld replicated blocks; ranges", (long long)hot, (long long)rep);
            int shown = P < 8 ? P : 8;
            for (int d = 0; d < shown; d++)
                fprintf(f, " [%lld,%lld)", (long long)t->bounds[d], (long long)t->bounds[d + 1]);
            fprintf(f, "%s\n", shown < P ? " ..." : "");
        }
    }
    zfree(plan->mm, ds);
    if (ferror(f)) return ember__error(EMBER_ERR_IO, "ember_plan_write_text: write failed");
    return EMBER_OK;
}

/* ======================================================================== */
/* Building                                                                  */
/* ======================================================================== */

typedef struct idcnt {
    int64_t id;
    uint64_t cnt;
} idcnt;

typedef struct item {
    uint64_t cnt;
    int32_t table;
    int64_t block;
    int64_t bytes;
} item;

/* Counts of one table, by id (merged), and by block. */
typedef struct tcounts {
    idcnt *ent;   /* sorted by id, distinct, cnt > 0 */
    int64_t n;
    int64_t *blk_first; /* (nblk) index into ent of each counted block's first id */
    int64_t *blk_item;  /* (nblk) index of the block in the sorted items */
    int64_t nblk;
    double total;
} tcounts;

typedef struct ctx {
    const ember_plan_params *p;
    ember_memory *mm;
    int P, T;
    int64_t br;
    size_t *budget;  /* (P) effective: SIZE_MAX when unlimited */
    int unlimited;   /* every budget unlimited */
    tcounts *tc;     /* (T) */
    item *items;     /* sorted by count desc */
    int64_t nitems;
    double total;
    /* candidate working arrays */
    int32_t *owner;  /* (nitems) rank, -1 replicated, -2 cold */
    double *load;    /* (P) */
    double *tload;   /* (T * P) per table per rank */
    double *trep;    /* (T) replicated lookups */
    int64_t *bounds; /* (T * (P + 1)) */
    int64_t *freeb;  /* (P) bytes left */
    double *frac;    /* (P + 1) cumulative cold fractions */
    double *avail;   /* (P) */
    size_t rep_cap;  /* replicated bytes per rank at most */
    unsigned char *small; /* (T) tables whose rows may be replicated */
    int32_t *heap, *aside; /* (P) */
} ctx;

static int cmp_idcnt(const void *a, const void *b) {
    const idcnt *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_item(const void *a, const void *b) {
    const item *x = a, *y = b;
    if (x->cnt != y->cnt) return x->cnt > y->cnt ? -1 : 1;
    if (x->table != y->table) return x->table < y->table ? -1 : 1;
    return x->block < y->block ? -1 : x->block > y->block;
}

static ember_status check_params(const ember_plan_params *p) {
    if ((unsigned)p->kind >= EMBER_PLAN_KIND_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: kind %d", (int)p->kind);
    if (p->world < 1 || p->world > EMBER_PLAN_MAX_WORLD)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: world %d (1..%d)", p->world,
                            EMBER_PLAN_MAX_WORLD);
    if (p->num_tables < 1 || p->num_tables > MAX_TABLES || !p->tables)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: %d tables (1..%d, tables not NULL)",
                            p->num_tables, MAX_TABLES);
    if (p->block_rows < 0 || p->block_rows > MAX_BLOCK_ROWS)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: block_rows %lld (0..%lld)",
                            (long long)p->block_rows, (long long)MAX_BLOCK_ROWS);
    if ((unsigned)p->replicate >= EMBER_PLAN_REPLICATE_COUNT || (unsigned)p->budget >= EMBER_PLAN_BUDGET_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: replicate %d, budget %d", (int)p->replicate,
                            (int)p->budget);
    if (p->max_hot_blocks < 0)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: max_hot_blocks %lld",
                            (long long)p->max_hot_blocks);
    if (p->target_imbalance != 0 && !(p->target_imbalance >= 1.0 && p->target_imbalance < 1e6))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: target_imbalance %g (>= 1)",
                            p->target_imbalance);
    for (int i = 0; i < p->num_tables; i++) {
        const ember_plan_table *t = &p->tables[i];
        const char *nm = t->name ? t->name : "";
        if (t->rows < 1 || t->rows > MAX_ROWS)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: table %d (%s): rows %lld (1..2^48)", i,
                                nm, (long long)t->rows);
        if (t->dim < 1 || t->dim > MAX_DIM)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: table %d (%s): dim %d (1..2^20)", i, nm,
                                t->dim);
        int64_t rb = t->row_bytes ? t->row_bytes : (int64_t)t->dim * 4;
        if (rb < 1 || rb > MAX_ROW_BYTES || t->rows > MAX_TABLE_BYTES / rb)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "ember_plan_build: table %d (%s): row_bytes %lld (1..2^26, table at most 2^46 bytes)", i,
                                nm, (long long)t->row_bytes);
        if (t->pooling < 0 || !isfinite(t->pooling) || t->pooling > 1e6)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: table %d (%s): pooling %g", i, nm,
                                t->pooling);
        if (t->num_counted < 0 || (t->num_counted > 0 && (!t->ids || !t->counts)))
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "ember_plan_build: table %d (%s): %lld counted ids with NULL ids or counts", i, nm,
                                (long long)t->num_counted);
    }
    if (p->freq && ember_freq_num_tables(p->freq) < p->num_tables) {
        int uses = 0;
        for (int i = ember_freq_num_tables(p->freq); i < p->num_tables; i++) uses |= p->tables[i].ids == NULL;
        if (uses)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_build: freq has %d tables, the plan %d",
                                ember_freq_num_tables(p->freq), p->num_tables);
    }
    return EMBER_OK;
}

static int64_t table_row_bytes(const ember_plan_table *t) { return t->row_bytes ? t->row_bytes : (int64_t)t->dim * 4; }

/* Read, validate, merge and total the counts of every table. */
static ember_status gather_counts(ctx *c) {
    const ember_plan_params *p = c->p;
    for (int i = 0; i < c->T; i++) {
        const ember_plan_table *pt = &p->tables[i];
        tcounts *tc = &c->tc[i];
        int64_t n = 0;
        if (pt->ids) {
            n = pt->num_counted;
            EMBER_TRY(zalloc(c->mm, (size_t)n, sizeof *tc->ent, &tc->ent));
            for (int64_t k = 0; k < n; k++) tc->ent[k] = (idcnt){pt->ids[k], pt->counts[k]};
        } else if (p->freq) {
            ember_freq_table_stats fs;
            EMBER_TRY(ember_freq_get_table_stats(p->freq, i, &fs));
            ember_freq_entry *fe = NULL;
            EMBER_TRY(zalloc(c->mm, (size_t)fs.entries, sizeof *fe, &fe));
            ember_status st = ember_freq_top(p->freq, i, fs.entries, fe, &n);
            if (st == EMBER_OK) st = zalloc(c->mm, (size_t)n, sizeof *tc->ent, &tc->ent);
            if (st == EMBER_OK)
                for (int64_t k = 0; k < n; k++) tc->ent[k] = (idcnt){fe[k].id, fe[k].count};
            zfree(c->mm, fe);
            EMBER_TRY(st);
        }
        for (int64_t k = 0; k < n; k++)
            if (tc->ent[k].id < 0 || tc->ent[k].id >= pt->rows)
                return ember__error(EMBER_ERR_INDEX,
                                    "ember_plan_build: table %d (%s): counted id %lld outside its %lld rows (give the "
                                    "table's real row count, or count hashed ids)",
                                    i, pt->name ? pt->name : "", (long long)tc->ent[k].id, (long long)pt->rows);
        if (n > 1) qsort(tc->ent, (size_t)n, sizeof *tc->ent, cmp_idcnt); /* ent may be NULL when n = 0 */
        int64_t m = 0;
        for (int64_t k = 0; k < n; k++) {
            if (tc->ent[k].cnt == 0) continue;
            if (m > 0 && tc->ent[m - 1].id == tc->ent[k].id) tc->ent[m - 1].cnt += tc->ent[k].cnt;
            else tc->ent[m++] = tc->ent[k];
        }
        tc->n = m;
        int64_t nb = 0;
        for (int64_t k = 0; k < m; k++) {
            tc->total += (double)tc->ent[k].cnt;
            if (k == 0 || tc->ent[k].id / c->br != tc->ent[k - 1].id / c->br) nb++;
        }
        tc->nblk = nb;
        c->total += tc->total;
    }
    return EMBER_OK;
}

/* Blocks of every table as items, sorted by count (minimax only), and per table the
 * first counted id of each block and the block's position among the sorted items. */
static ember_status make_items(ctx *c) {
    int64_t n = 0;
    for (int i = 0; i < c->T; i++) n += c->tc[i].nblk;
    EMBER_TRY(zalloc(c->mm, (size_t)n, sizeof *c->items, &c->items));
    int64_t k = 0;
    for (int i = 0; i < c->T; i++) {
        tcounts *tc = &c->tc[i];
        EMBER_TRY(zalloc(c->mm, (size_t)tc->nblk, sizeof *tc->blk_first, &tc->blk_first));
        EMBER_TRY(zalloc(c->mm, (size_t)tc->nblk, sizeof *tc->blk_item, &tc->blk_item));
        int64_t rb = table_row_bytes(&c->p->tables[i]);
        int64_t rows = c->p->tables[i].rows;
        int64_t b = -1, nb = 0;
        for (int64_t e = 0; e < tc->n; e++) {
            int64_t blk = tc->ent[e].id / c->br;
            if (blk != b) {
                b = blk;
                int64_t real = rows - blk * c->br < c->br ? rows - blk * c->br : c->br;
                c->items[k++] = (item){.cnt = 0, .table = i, .block = blk, .bytes = real * rb};
                tc->blk_first[nb++] = e;
            }
            c->items[k - 1].cnt += tc->ent[e].cnt;
        }
    }
    c->nitems = n;
    if (n > 1) qsort(c->items, (size_t)n, sizeof *c->items, cmp_item);
    for (int64_t j = 0; j < n; j++) {
        tcounts *tc = &c->tc[c->items[j].table];
        int64_t blk = c->items[j].block, lo = 0, hi = tc->nblk - 1;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (tc->ent[tc->blk_first[mid]].id / c->br < blk) lo = mid + 1;
            else hi = mid;
        }
        tc->blk_item[lo] = j;
    }
    return EMBER_OK;
}

/* Heap of ranks keyed by (load, rank): the least loaded on top. */
static inline int heap_less(const ctx *c, int a, int b) {
    return c->load[a] < c->load[b] || (c->load[a] == c->load[b] && a < b);
}

static void heap_push(ctx *c, int *n, int r) {
    int i = (*n)++;
    c->heap[i] = r;
    while (i > 0) {
        int up = (i - 1) / 2;
        if (!heap_less(c, c->heap[i], c->heap[up])) break;
        int x = c->heap[i];
        c->heap[i] = c->heap[up];
        c->heap[up] = x;
        i = up;
    }
}

static int heap_pop(ctx *c, int *n) {
    int top = c->heap[0];
    c->heap[0] = c->heap[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && heap_less(c, c->heap[l], c->heap[m])) m = l;
        if (r < *n && heap_less(c, c->heap[r], c->heap[m])) m = r;
        if (m == i) break;
        int x = c->heap[i];
        c->heap[i] = c->heap[m];
        c->heap[m] = x;
        i = m;
    }
    return top;
}

/* The least loaded rank with bytes free (bytes 0: any). -1 when none has room and the
 * budget is strict; with REPORT, the least loaded rank. The chosen rank is out of the
 * heap; the caller pushes it back. */
static int pick_rank(ctx *c, int *hn, int64_t bytes) {
    int naside = 0, got = -1;
    while (*hn > 0) {
        int r = heap_pop(c, hn);
        if (c->freeb[r] >= bytes) {
            got = r;
            break;
        }
        c->aside[naside++] = r;
    }
    if (got < 0 && naside > 0 && c->p->budget == EMBER_PLAN_BUDGET_REPORT) {
        got = c->aside[0];
        c->aside[0] = c->aside[--naside];
    }
    for (int k = 0; k < naside; k++) heap_push(c, hn, c->aside[k]);
    return got;
}

/* Cold fractions: each rank's share of every table's ids, so that the room left after
 * the cold ranges (and the replicated rows) is the same on every rank. */
static void cold_fractions(ctx *c, int64_t rep_bytes, int64_t extra_bytes) {
    int P = c->P;
    double cold = 0;
    for (int i = 0; i < c->T; i++) cold += (double)c->p->tables[i].rows * (double)table_row_bytes(&c->p->tables[i]);
    double *avail = c->avail;
    double maxb = 0;
    for (int d = 0; d < P; d++)
        if (c->budget[d] != SIZE_MAX && (double)c->budget[d] > maxb) maxb = (double)c->budget[d];
    for (int d = 0; d < P; d++) {
        double b = c->budget[d] == SIZE_MAX ? maxb : (double)c->budget[d];
        avail[d] = b - (double)rep_bytes;
        if (avail[d] < 0) avail[d] = 0;
    }
    double sum_avail = 0;
    for (int d = 0; d < P; d++) sum_avail += avail[d];
    double *share = c->frac; /* share[d], then made cumulative */
    if (c->unlimited || sum_avail <= cold + (double)extra_bytes || cold <= 0) {
        /* equal shares: no budget, or budgets that cannot all be met (REPORT) */
        for (int d = 0; d < P; d++) share[d] = sum_avail > 0 && !c->unlimited ? avail[d] / sum_avail : 1.0 / P;
    } else {
        /* water-filling: cold_d = avail_d - F, ranks where that is negative get none */
        int active = P;
        for (int d = 0; d < P; d++) share[d] = 1;
        for (;;) {
            double sa = 0;
            for (int d = 0; d < P; d++)
                if (share[d] > 0) sa += avail[d];
            double F = (sa - cold) / active;
            int changed = 0;
            for (int d = 0; d < P; d++)
                if (share[d] > 0 && avail[d] - F <= 0) {
                    share[d] = 0;
                    active--;
                    changed = 1;
                }
            if (!changed || active == 0) {
                for (int d = 0; d < P; d++) share[d] = share[d] > 0 ? (avail[d] - F) / cold : 0;
                break;
            }
        }
    }
    double cum = 0;
    for (int d = 0; d < P; d++) {
        double s = share[d];
        share[d] = cum;
        cum += s;
    }
    share[P] = 1.0;
    for (int d = 0; d <= P; d++)
        if (share[d] > 1) share[d] = 1;
}

/* One candidate: the first h items are the head, items with count > thr among them
 * are replicated (within the per-rank replication budget). Fills owner, load, tload,
 * trep and bounds. Returns EMBER_OK and *ok = 0 when the head does not fit (STRICT). */
static ember_status assign(ctx *c, int64_t h, double thr, int *ok, double *max_load, int64_t *rep_bytes_out) {
    int P = c->P, T = c->T;
    *ok = 1;
    size_t rep_cap = c->rep_cap;
    double mean = c->total / P;
    int64_t rep_bytes = 0, head_bytes = 0;
    for (int64_t j = 0; j < c->nitems; j++) {
        if (j >= h) {
            c->owner[j] = -2;
            continue;
        }
        c->owner[j] = 0;
        /* only blocks of small tables (the whole table within the replication budget),
         * or blocks that alone exceed a rank's mean load and so cannot be balanced */
        const item *it = &c->items[j];
        int eligible = c->small[it->table] || (double)it->cnt > mean;
        if (c->p->replicate == EMBER_PLAN_REPLICATE_AUTO && eligible && (double)it->cnt > thr &&
            (size_t)(rep_bytes + it->bytes) <= rep_cap) {
            c->owner[j] = -1;
            rep_bytes += c->items[j].bytes;
        } else {
            head_bytes += c->items[j].bytes;
        }
    }
    *rep_bytes_out = rep_bytes;
    cold_fractions(c, rep_bytes, head_bytes);
    memset(c->tload, 0, (size_t)T * (size_t)P * sizeof *c->tload);
    memset(c->trep, 0, (size_t)T * sizeof *c->trep);
    for (int d = 0; d < P; d++) {
        c->load[d] = 0;
        c->freeb[d] = c->budget[d] == SIZE_MAX ? INT64_MAX : (int64_t)(c->budget[d] > (size_t)INT64_MAX ? INT64_MAX : c->budget[d]);
        c->freeb[d] -= rep_bytes;
    }
    /* cold ranges, aligned to blocks, and the lookups of the counted ids in them */
    for (int i = 0; i < T; i++) {
        const ember_plan_table *pt = &c->p->tables[i];
        int64_t *bd = c->bounds + (size_t)i * (size_t)(P + 1);
        int64_t nb = (pt->rows + c->br - 1) / c->br;
        bd[0] = 0;
        for (int d = 1; d < P; d++) {
            int64_t b = (int64_t)floor(c->frac[d] * (double)nb + 0.5);
            if (b > nb) b = nb;
            int64_t r = b * c->br;
            if (r > pt->rows) r = pt->rows;
            if (r < bd[d - 1]) r = bd[d - 1];
            bd[d] = r;
        }
        bd[P] = pt->rows;
        int64_t rb = table_row_bytes(pt);
        for (int d = 0; d < P; d++) c->freeb[d] -= (bd[d + 1] - bd[d]) * rb;
        tcounts *tc = &c->tc[i];
        int d = 0;
        for (int64_t k = 0; k < tc->nblk; k++) {
            int64_t it = tc->blk_item[k];
            if (c->owner[it] != -2) continue;
            int64_t e_end = k + 1 < tc->nblk ? tc->blk_first[k + 1] : tc->n;
            for (int64_t e = tc->blk_first[k]; e < e_end; e++) {
                while (tc->ent[e].id >= bd[d + 1]) d++;
                c->tload[(size_t)i * P + d] += (double)tc->ent[e].cnt;
            }
        }
        for (int d2 = 0; d2 < P; d2++) c->load[d2] += c->tload[(size_t)i * P + d2];
    }
    /* replicated: count / P everywhere */
    for (int64_t j = 0; j < h && j < c->nitems; j++)
        if (c->owner[j] == -1) c->trep[c->items[j].table] += (double)c->items[j].cnt;
    for (int i = 0; i < T; i++)
        for (int d = 0; d < P; d++) {
            c->tload[(size_t)i * P + d] += c->trep[i] / P;
            c->load[d] += c->trep[i] / P;
        }
    /* LPT over the head */
    int hn = 0;
    for (int d = 0; d < P; d++) heap_push(c, &hn, d);
    for (int64_t j = 0; j < h && j < c->nitems; j++) {
        if (c->owner[j] == -1) continue;
        int r = pick_rank(c, &hn, c->items[j].bytes);
        if (r < 0) {
            *ok = 0;
            return EMBER_OK;
        }
        c->owner[j] = r;
        c->load[r] += (double)c->items[j].cnt;
        c->tload[(size_t)c->items[j].table * P + r] += (double)c->items[j].cnt;
        c->freeb[r] -= c->items[j].bytes;
        heap_push(c, &hn, r);
    }
    double mx = 0;
    for (int d = 0; d < P; d++) {
        if (c->load[d] > mx) mx = c->load[d];
        if (c->p->budget == EMBER_PLAN_BUDGET_STRICT && c->freeb[d] < 0) *ok = 0;
    }
    *max_load = mx;
    return EMBER_OK;
}

static ember_status build_minimax(ctx *c, ember_plan *plan) {
    int P = c->P, T = c->T;
    EMBER_TRY(make_items(c));
    EMBER_TRY(zalloc(c->mm, (size_t)c->nitems, sizeof *c->owner, &c->owner));
    double target = c->p->target_imbalance > 0 ? c->p->target_imbalance : 1.01;
    int64_t cap = c->p->max_hot_blocks ? c->p->max_hot_blocks : (INT64_C(1) << 22);
    if (cap > c->nitems) cap = c->nitems;
    double mean = c->total / P;
    /* the head starts with the blocks taking >= 1/64 of a rank's mean load */
    int64_t h0 = 0;
    while (h0 < c->nitems && (double)c->items[h0].cnt * 64 >= mean) h0++;
    if (h0 < 64) h0 = 64;
    if (h0 > cap) h0 = cap;
    double thrs[3] = {INFINITY, mean, (target - 1) * mean};
    int nthr = c->p->replicate == EMBER_PLAN_REPLICATE_AUTO && P > 1 ? 3 : 1;
    int found = 0;
    double best = INFINITY;
    int64_t best_h = 0, best_rep = 0;
    double best_thr = INFINITY;
    for (int k = 0; k < nthr; k++) {
        if (found && best <= target * mean) break; /* balanced without (more) replication */
        int64_t h = h0;
        for (;;) {
            int ok;
            double mx;
            int64_t rep;
            EMBER_TRY(assign(c, h, thrs[k], &ok, &mx, &rep));
            if (ok && (!found || mx < best * (1 - 1e-12) || (mx <= best && rep < best_rep))) {
                found = 1;
                best = mx;
                best_h = h;
                best_thr = thrs[k];
                best_rep = rep;
            }
            if ((ok && mx <= target * mean) || h >= cap) break;
            h = h * 4 < cap ? h * 4 : cap;
        }
    }
    if (!found) {
        /* name the tightest rank for the message */
        double need = 0;
        for (int i = 0; i < T; i++) need += (double)c->p->tables[i].rows * (double)table_row_bytes(&c->p->tables[i]);
        double have = 0;
        for (int d = 0; d < P; d++) have += (double)c->budget[d];
        return ember__error(EMBER_ERR_OUT_OF_MEMORY,
                            "ember_plan_build: minimax: the tables (%.4g bytes, plus the hot rows placed apart from "
                            "their ranges) do not fit %d devices with %.4g bytes in all",
                            need, P, have);
    }
    int ok;
    double mx;
    int64_t rep;
    EMBER_TRY(assign(c, best_h, best_thr, &ok, &mx, &rep));
    /* materialise: per table, replicated blocks, then each rank's blocks hottest first */
    int64_t *nlist = NULL;
    EMBER_TRY(zalloc(c->mm, (size_t)T, sizeof *nlist, &nlist));
    for (int64_t j = 0; j < best_h && j < c->nitems; j++) nlist[c->items[j].table]++;
    ember_status st = EMBER_OK;
    for (int i = 0; i < T && st == EMBER_OK; i++) {
        ptable *t = &plan->t[i];
        st = ptable_alloc(plan->mm, t, P, MODE_ROWS);
        if (st == EMBER_OK) st = zalloc(plan->mm, (size_t)nlist[i], sizeof *t->list_block, &t->list_block);
        if (st == EMBER_OK) st = zalloc(plan->mm, (size_t)nlist[i], sizeof *t->list_rank, &t->list_rank);
        if (st != EMBER_OK) break;
        memcpy(t->bounds, c->bounds + (size_t)i * (size_t)(P + 1), (size_t)(P + 1) * sizeof *t->bounds);
        memcpy(t->lookups, c->tload + (size_t)i * P, (size_t)P * sizeof *t->lookups);
        t->rep_lookups = c->trep[i];
    }
    /* order: rank -1 first, then 0..P-1, hottest first inside (a counting sort over ranks) */
    for (int pass = -1; pass < P && st == EMBER_OK; pass++)
        for (int64_t j = 0; j < best_h && j < c->nitems; j++) {
            if (c->owner[j] != pass) continue;
            ptable *t = &plan->t[c->items[j].table];
            t->list_block[t->nlist] = c->items[j].block;
            t->list_rank[t->nlist] = pass;
            t->nlist++;
        }
    zfree(c->mm, nlist);
    for (int i = 0; i < T && st == EMBER_OK; i++) st = ptable_finish_rows(plan->mm, &plan->t[i], P, c->br);
    return st;
}

static ember_status build_rowwise(ctx *c, ember_plan *plan) {
    int P = c->P;
    for (int i = 0; i < c->T; i++) {
        ptable *t = &plan->t[i];
        EMBER_TRY(ptable_alloc(plan->mm, t, P, MODE_ROWS));
        for (int d = 0; d <= P; d++) t->bounds[d] = t->rows / P * d + t->rows % P * d / P;
        const tcounts *tc = &c->tc[i];
        int d = 0;
        for (int64_t e = 0; e < tc->n; e++) {
            while (tc->ent[e].id >= t->bounds[d + 1]) d++;
            t->lookups[d] += (double)tc->ent[e].cnt;
        }
        EMBER_TRY(ptable_finish_rows(plan->mm, t, P, c->br));
    }
    return EMBER_OK;
}

typedef struct rload {
    double load;
    int rank;
} rload;

static int cmp_rload(const void *a, const void *b) {
    const rload *x = a, *y = b;
    if (x->load != y->load) return x->load < y->load ? -1 : 1;
    return x->rank - y->rank;
}

/* Slices of min(world, dim) columns; the wider slices (dim % n of them, one column
 * wider) of each table go to the least loaded ranks so far. */
static ember_status build_columnwise(ctx *c, ember_plan *plan) {
    int P = c->P;
    rload *order = NULL;
    EMBER_TRY(zalloc(c->mm, (size_t)P, sizeof *order, &order));
    for (int d = 0; d < P; d++) c->load[d] = 0;
    for (int i = 0; i < c->T; i++) {
        ptable *t = &plan->t[i];
        ember_status st = ptable_alloc(plan->mm, t, P, MODE_COLUMNS);
        if (st != EMBER_OK) {
            zfree(c->mm, order);
            return st;
        }
        int ns = t->dim < P ? t->dim : P, col = 0;
        for (int d = 0; d < P; d++) order[d] = (rload){c->load[d], d};
        qsort(order, (size_t)P, sizeof *order, cmp_rload);
        /* ranks in order of load take slices in order of width; columns stay in rank order */
        for (int k = 0; k < ns; k++) {
            int d = order[k].rank;
            int w = t->dim / ns + (k < t->dim % ns);
            t->cols[2 * d + 1] = w; /* width for now */
        }
        for (int d = 0; d < P; d++) {
            int w = t->cols[2 * d + 1];
            t->cols[2 * d] = w ? col : 0;
            t->cols[2 * d + 1] = w ? col + w : 0;
            col += w;
            t->lookups[d] = c->tc[i].total * w / t->dim;
            c->load[d] += t->lookups[d];
        }
    }
    zfree(c->mm, order);
    return EMBER_OK;
}

typedef struct tkey {
    double lookups;
    int64_t bytes;
    int table;
} tkey;

static int cmp_tkey(const void *a, const void *b) {
    const tkey *x = a, *y = b;
    if (x->lookups != y->lookups) return x->lookups > y->lookups ? -1 : 1;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    return x->table - y->table;
}

static ember_status build_tablewise(ctx *c, ember_plan *plan) {
    int P = c->P;
    tkey *k = NULL;
    EMBER_TRY(zalloc(c->mm, (size_t)c->T, sizeof *k, &k));
    /* the load to balance: counted lookups; without any counts, each table's expected
       lookups per sample (its pooling), so the tables still spread over the ranks
       (largest first) instead of all landing on the first least-loaded rank */
    const int counted = c->total > 0;
    for (int i = 0; i < c->T; i++)
        k[i] = (tkey){counted ? c->tc[i].total : plan->t[i].pooling, plan->t[i].rows * plan->t[i].row_bytes, i};
    qsort(k, (size_t)c->T, sizeof *k, cmp_tkey);
    int hn = 0;
    for (int d = 0; d < P; d++) {
        c->load[d] = 0;
        c->freeb[d] = c->budget[d] == SIZE_MAX || c->budget[d] > (size_t)INT64_MAX ? INT64_MAX : (int64_t)c->budget[d];
        heap_push(c, &hn, d);
    }
    ember_status st = EMBER_OK;
    for (int j = 0; j < c->T && st == EMBER_OK; j++) {
        ptable *t = &plan->t[k[j].table];
        st = ptable_alloc(plan->mm, t, P, MODE_WHOLE);
        if (st != EMBER_OK) break;
        int r = pick_rank(c, &hn, k[j].bytes);
        if (r < 0) {
            st = ember__error(EMBER_ERR_OUT_OF_MEMORY,
                              "ember_plan_build: tablewise: table %s (%lld bytes) fits no device's remaining budget",
                              t->name, (long long)k[j].bytes);
            break;
        }
        t->owner = r;
        t->lookups[r] = counted ? k[j].lookups : 0;
        c->load[r] += k[j].lookups;
        c->freeb[r] -= k[j].bytes;
        heap_push(c, &hn, r);
    }
    zfree(c->mm, k);
    return st;
}

static void ctx_free(ctx *c) {
    for (int i = 0; c->tc && i < c->T; i++) {
        zfree(c->mm, c->tc[i].ent);
        zfree(c->mm, c->tc[i].blk_first);
        zfree(c->mm, c->tc[i].blk_item);
    }
    zfree(c->mm, c->tc);
    zfree(c->mm, c->items);
    zfree(c->mm, c->owner);
    zfree(c->mm, c->load);
    zfree(c->mm, c->tload);
    zfree(c->mm, c->trep);
    zfree(c->mm, c->bounds);
    zfree(c->mm, c->freeb);
    zfree(c->mm, c->frac);
    zfree(c->mm, c->avail);
    zfree(c->mm, c->small);
    zfree(c->mm, c->heap);
    zfree(c->mm, c->aside);
    zfree(c->mm, c->budget);
}

ember_status ember_plan_build(const ember_plan_params *p, ember_plan **out) {
    EMBER_CHECK_NULL(p, "ember_plan_build");
    EMBER_CHECK_NULL(out, "ember_plan_build");
    *out = NULL;
    EMBER_TRY(check_params(p));
    ctx c = {.p = p, .mm = p->mm, .P = p->world, .T = p->num_tables, .br = p->block_rows ? p->block_rows : 1};
    if (p->kind != EMBER_PLAN_MINIMAX) c.br = 1;
    int P = c.P, T = c.T;
    ember_plan *plan = NULL;
    ember_status st = plan_alloc(p->mm, p->kind, P, T, c.br, &plan);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)P, sizeof *c.budget, &c.budget);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)T, sizeof *c.tc, &c.tc);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)P, sizeof *c.load, &c.load);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)T * (size_t)P, sizeof *c.tload, &c.tload);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)T, sizeof *c.trep, &c.trep);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)T * (size_t)(P + 1), sizeof *c.bounds, &c.bounds);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)P, sizeof *c.freeb, &c.freeb);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)P + 1, sizeof *c.frac, &c.frac);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)P, sizeof *c.avail, &c.avail);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)T, sizeof *c.small, &c.small);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)P, sizeof *c.heap, &c.heap);
    if (st == EMBER_OK) st = zalloc(c.mm, (size_t)P, sizeof *c.aside, &c.aside);
    if (st != EMBER_OK) goto fail;
    c.unlimited = 1;
    for (int d = 0; d < P; d++) {
        size_t b = p->device_bytes ? p->device_bytes[d] : p->device_mem;
        plan->budget[d] = b;
        c.budget[d] = b ? b : SIZE_MAX;
        if (b) c.unlimited = 0;
    }
    c.rep_cap = p->replicate_max_bytes;
    if (!c.rep_cap) {
        size_t minb = SIZE_MAX;
        for (int d = 0; d < P; d++)
            if (c.budget[d] < minb) minb = c.budget[d];
        c.rep_cap = minb == SIZE_MAX ? (size_t)64 << 20 : minb / 16;
    }
    for (int i = 0; i < T; i++)
        c.small[i] = (double)p->tables[i].rows * (double)table_row_bytes(&p->tables[i]) <= (double)c.rep_cap;
    for (int i = 0; i < T; i++) {
        const ember_plan_table *pt = &p->tables[i];
        ptable *t = &plan->t[i];
        if (pt->name) snprintf(t->name, sizeof t->name, "%s", pt->name);
        else snprintf(t->name, sizeof t->name, "t%d", i);
        t->rows = pt->rows;
        t->dim = pt->dim;
        t->row_bytes = table_row_bytes(pt);
        t->pooling = pt->pooling > 0 ? pt->pooling : 1.0;
    }
    if ((st = gather_counts(&c)) != EMBER_OK) goto fail;
    for (int i = 0; i < T; i++) plan->t[i].total = c.tc[i].total;
    switch (p->kind) {
    case EMBER_PLAN_TABLEWISE: st = build_tablewise(&c, plan); break;
    case EMBER_PLAN_ROWWISE: st = build_rowwise(&c, plan); break;
    case EMBER_PLAN_COLUMNWISE: st = build_columnwise(&c, plan); break;
    default: st = build_minimax(&c, plan); break;
    }
    if (st != EMBER_OK) goto fail;
    if (p->budget == EMBER_PLAN_BUDGET_STRICT && !c.unlimited) {
        for (int d = 0; d < P; d++) {
            if (!plan->budget[d]) continue;
            int64_t bytes = 0;
            for (int i = 0; i < T; i++) {
                ember_plan_shard s;
                shard_of(plan, &plan->t[i], d, &s);
                bytes += s.bytes;
            }
            if ((size_t)bytes > plan->budget[d]) {
                st = ember__error(EMBER_ERR_OUT_OF_MEMORY,
                                  "ember_plan_build: %s: device %d needs %lld bytes, its budget is %zu",
                                  ember_plan_kind_name(p->kind), d, (long long)bytes, plan->budget[d]);
                goto fail;
            }
        }
    }
    ctx_free(&c);
    *out = plan;
    return EMBER_OK;
fail:
    ctx_free(&c);
    ember_plan_destroy(plan);
    return st;
}

/* ======================================================================== */
/* Serialisation                                                             */
/* ======================================================================== */

static const char MAGIC[8] = {'E', 'M', 'B', 'R', 'P', 'L', 'A', 'N'};


typedef struct wr {
    unsigned char *buf; /* NULL: count only */
    size_t pos;
} wr;

static void put(wr *w, const void *p, size_t n) {
    if (w->buf) memcpy(w->buf + w->pos, p, n);
    w->pos += n;
}
static void put_u64(wr *w, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 8);
}
static void put_u32(wr *w, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 4);
}
static void put_f64(wr *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(w, u);
}

static void encode(const ember_plan *plan, wr *w) {
    int P = plan->world;
    put(w, MAGIC, 8);
    put_u32(w, EMBER_PLAN_VERSION);
    put_u32(w, (uint32_t)plan->kind);
    put_u32(w, (uint32_t)P);
    put_u32(w, (uint32_t)plan->num_tables);
    put_u64(w, (uint64_t)plan->block_rows);
    for (int d = 0; d < P; d++) put_u64(w, (uint64_t)plan->budget[d]);
    for (int i = 0; i < plan->num_tables; i++) {
        const ptable *t = &plan->t[i];
        size_t nl = strlen(t->name);
        unsigned char l = (unsigned char)nl;
        put(w, &l, 1);
        put(w, t->name, nl);
        put_u64(w, (uint64_t)t->rows);
        put_u32(w, (uint32_t)t->dim);
        put_u64(w, (uint64_t)t->row_bytes);
        put_f64(w, t->pooling);
        put_f64(w, t->total);
        put_f64(w, t->rep_lookups);
        for (int d = 0; d < P; d++) put_f64(w, t->lookups[d]);
        if (t->mode == MODE_WHOLE) {
            put_u32(w, (uint32_t)t->owner);
        } else if (t->mode == MODE_COLUMNS) {
            for (int d = 0; d < 2 * P; d++) put_u32(w, (uint32_t)t->cols[d]);
        } else {
            for (int d = 0; d <= P; d++) put_u64(w, (uint64_t)t->bounds[d]);
            put_u64(w, (uint64_t)t->nlist);
            for (int64_t k = 0; k < t->nlist; k++) {
                put_u64(w, (uint64_t)t->list_block[k]);
                put_u32(w, (uint32_t)t->list_rank[k]);
            }
        }
    }
}

ember_status ember_plan_encode(const ember_plan *plan, void *buf, size_t cap, size_t *size) {
    EMBER_CHECK_NULL(plan, "ember_plan_encode");
    EMBER_CHECK_NULL(size, "ember_plan_encode");
    wr w = {0};
    encode(plan, &w);
    *size = w.pos + 8;
    if (!buf) return EMBER_OK;
    if (cap < *size)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_encode: buffer of %zu bytes, the plan needs %zu", cap,
                            *size);
    w = (wr){.buf = buf};
    encode(plan, &w);
    uint64_t h = ember__fnv1a(EMBER__FNV_INIT, buf, w.pos);
    put_u64(&w, h);
    return EMBER_OK;
}

typedef struct rd {
    const unsigned char *p;
    size_t pos, end;
    int bad;
} rd;

static int get(rd *r, void *out, size_t n) {
    if (r->bad || r->end - r->pos < n) {
        r->bad = 1;
        memset(out, 0, n);
        return 0;
    }
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return 1;
}
static uint64_t get_u64(rd *r) {
    unsigned char b[8];
    get(r, b, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}
static uint32_t get_u32(rd *r) {
    unsigned char b[4];
    get(r, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static double get_f64(rd *r) {
    uint64_t u = get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}
static int has(const rd *r, uint64_t n, uint64_t each) {
    return !r->bad && (each == 0 || n <= (r->end - r->pos) / each);
}

#define BAD(...) ember__error(EMBER_ERR_FORMAT, __VA_ARGS__)

static ember_status decode_table(rd *r, ember_plan *plan, int i) {
    int P = plan->world;
    ptable *t = &plan->t[i];
    unsigned char nl;
    get(r, &nl, 1);
    if (nl > 31) return BAD("ember_plan_decode: table %d name of %u bytes at byte %zu (31 at most)", i, nl, r->pos);
    get(r, t->name, nl);
    t->name[nl] = '\0';
    if (strlen(t->name) != nl) return BAD("ember_plan_decode: table %d name holds a NUL byte", i);
    size_t at = r->pos;
    uint64_t rows = get_u64(r);
    uint32_t dim = get_u32(r);
    uint64_t rb = get_u64(r);
    t->pooling = get_f64(r);
    t->total = get_f64(r);
    t->rep_lookups = get_f64(r);
    if (r->bad) return BAD("ember_plan_decode: truncated in table %d", i);
    if (rows < 1 || rows > (uint64_t)MAX_ROWS || dim < 1 || dim > MAX_DIM || rb < 1 || rb > (uint64_t)MAX_ROW_BYTES ||
        rows > (uint64_t)(MAX_TABLE_BYTES / (int64_t)rb))
        return BAD("ember_plan_decode: table %s at byte %zu: rows %llu, dim %u, row_bytes %llu out of range", t->name, at,
                   (unsigned long long)rows, dim, (unsigned long long)rb);
    if (!(t->pooling > 0 && t->pooling <= 1e6) || !(t->total >= 0 && isfinite(t->total)) ||
        !(t->rep_lookups >= 0 && t->rep_lookups <= t->total))
        return BAD("ember_plan_decode: table %s: pooling %g, lookups %g, replicated %g out of range", t->name, t->pooling,
                   t->total, t->rep_lookups);
    t->rows = (int64_t)rows;
    t->dim = (int)dim;
    t->row_bytes = (int64_t)rb;
    int mode = plan->kind == EMBER_PLAN_TABLEWISE ? MODE_WHOLE : plan->kind == EMBER_PLAN_COLUMNWISE ? MODE_COLUMNS : MODE_ROWS;
    if (!has(r, (uint64_t)P, 8)) return BAD("ember_plan_decode: truncated in table %s loads", t->name);
    EMBER_TRY(ptable_alloc(plan->mm, t, P, mode));
    for (int d = 0; d < P; d++) {
        t->lookups[d] = get_f64(r);
        if (!(t->lookups[d] >= 0 && isfinite(t->lookups[d])))
            return BAD("ember_plan_decode: table %s rank %d: load %g", t->name, d, t->lookups[d]);
    }
    if (mode == MODE_WHOLE) {
        uint32_t o = get_u32(r);
        if (r->bad) return BAD("ember_plan_decode: truncated in table %s", t->name);
        if (o >= (uint32_t)P) return BAD("ember_plan_decode: table %s owner %u of %d ranks", t->name, o, P);
        t->owner = (int)o;
    } else if (mode == MODE_COLUMNS) {
        if (!has(r, 2 * (uint64_t)P, 4)) return BAD("ember_plan_decode: truncated in table %s columns", t->name);
        int64_t covered = 0;
        for (int d = 0; d < P; d++) {
            uint32_t b = get_u32(r), e = get_u32(r);
            if (b > e || e > dim)
                return BAD("ember_plan_decode: table %s rank %d columns [%u, %u) of %u", t->name, d, b, e, dim);
            t->cols[2 * d] = (int32_t)b;
            t->cols[2 * d + 1] = (int32_t)e;
            covered += e - b;
        }
        /* the non-empty slices, ordered by first column, must tile [0, dim) */
        if (covered != (int64_t)dim)
            return BAD("ember_plan_decode: table %s slices cover %lld of %u columns", t->name, (long long)covered, dim);
        rload *sl = NULL;
        EMBER_TRY(zalloc(plan->mm, (size_t)P, sizeof *sl, &sl));
        int ns = 0;
        for (int d = 0; d < P; d++)
            if (t->cols[2 * d + 1] > t->cols[2 * d]) sl[ns++] = (rload){(double)t->cols[2 * d], d};
        if (ns > 1) qsort(sl, (size_t)ns, sizeof *sl, cmp_rload);
        int at_col = 0, tiled = 1;
        for (int k = 0; k < ns && tiled; k++) {
            tiled = t->cols[2 * sl[k].rank] == at_col;
            at_col = t->cols[2 * sl[k].rank + 1];
        }
        zfree(plan->mm, sl);
        if (!tiled || at_col != (int)dim)
            return BAD("ember_plan_decode: table %s column slices overlap or leave a gap", t->name);
    } else {
        if (!has(r, (uint64_t)P + 1, 8)) return BAD("ember_plan_decode: truncated in table %s ranges", t->name);
        for (int d = 0; d <= P; d++) {
            t->bounds[d] = (int64_t)get_u64(r);
            if (t->bounds[d] < 0 || t->bounds[d] > t->rows || (d > 0 && t->bounds[d] < t->bounds[d - 1]))
                return BAD("ember_plan_decode: table %s range bound %d = %lld out of order", t->name, d,
                           (long long)t->bounds[d]);
        }
        if (t->bounds[0] != 0 || t->bounds[P] != t->rows)
            return BAD("ember_plan_decode: table %s ranges cover [%lld, %lld), not its %lld rows", t->name,
                       (long long)t->bounds[0], (long long)t->bounds[P], (long long)t->rows);
        uint64_t n = get_u64(r);
        int64_t nb = (t->rows + plan->block_rows - 1) / plan->block_rows;
        if (!has(r, n, 12) || n > (uint64_t)nb)
            return BAD("ember_plan_decode: table %s: %llu hot blocks (of %lld) at byte %zu", t->name,
                       (unsigned long long)n, (long long)nb, r->pos);
        if (n > 0 && plan->kind != EMBER_PLAN_MINIMAX)
            return BAD("ember_plan_decode: table %s: a %s plan lists hot blocks", t->name, ember_plan_kind_name(plan->kind));
        t->nlist = (int64_t)n;
        EMBER_TRY(zalloc(plan->mm, (size_t)n, sizeof *t->list_block, &t->list_block));
        EMBER_TRY(zalloc(plan->mm, (size_t)n, sizeof *t->list_rank, &t->list_rank));
        int seen_owned = 0;
        for (uint64_t k = 0; k < n; k++) {
            uint64_t b = get_u64(r);
            int32_t rk = (int32_t)get_u32(r);
            if (b >= (uint64_t)nb || rk < -1 || rk >= P)
                return BAD("ember_plan_decode: table %s hot entry %llu: block %llu of %lld, rank %d of %d", t->name,
                           (unsigned long long)k, (unsigned long long)b, (long long)nb, rk, P);
            if (rk < 0 && seen_owned)
                return BAD("ember_plan_decode: table %s: replicated block %llu after owned ones", t->name,
                           (unsigned long long)b);
            seen_owned |= rk >= 0;
            t->list_block[k] = (int64_t)b;
            t->list_rank[k] = rk;
        }
        EMBER_TRY(ptable_finish_rows(plan->mm, t, P, plan->block_rows));
    }
    return EMBER_OK;
}

ember_status ember_plan_decode(const void *buf, size_t size, ember_memory *mm, ember_plan **out) {
    EMBER_CHECK_NULL(out, "ember_plan_decode");
    *out = NULL;
    if (!buf && size) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "ember_plan_decode: NULL buffer");
    const unsigned char *b = buf;
    if (size < 8 + 4 + 16 + 8 + 8 || memcmp(b, MAGIC, 8) != 0)
        return BAD("ember_plan_decode: not an ember plan (magic \"EMBRPLAN\" missing, %zu bytes)", size);
    rd r = {.p = b, .pos = 8, .end = size - 8};
    uint32_t version = get_u32(&r);
    if (version != EMBER_PLAN_VERSION)
        return BAD("ember_plan_decode: version %u, this ember reads version %d", version, EMBER_PLAN_VERSION);
    uint64_t want = 0;
    for (int i = 0; i < 8; i++) want |= (uint64_t)b[size - 8 + i] << (8 * i);
    uint64_t got = ember__fnv1a(EMBER__FNV_INIT, b, size - 8);
    if (want != got)
        return ember__error(EMBER_ERR_CHECKSUM, "ember_plan_decode: checksum %016llx, stored %016llx",
                            (unsigned long long)got, (unsigned long long)want);
    uint32_t kind = get_u32(&r), world = get_u32(&r), nt = get_u32(&r);
    uint64_t br = get_u64(&r);
    if (kind >= EMBER_PLAN_KIND_COUNT || world < 1 || world > EMBER_PLAN_MAX_WORLD || nt < 1 || nt > MAX_TABLES ||
        br < 1 || br > (uint64_t)MAX_BLOCK_ROWS || (kind != EMBER_PLAN_MINIMAX && br != 1))
        return BAD("ember_plan_decode: kind %u, world %u, %u tables, block_rows %llu out of range", kind, world, nt,
                   (unsigned long long)br);
    /* every rank and table takes file bytes, so the arrays below are bounded by size */
    if (!has(&r, world, 8) || !has(&r, nt, 8 * (uint64_t)world + 40))
        return BAD("ember_plan_decode: %u ranks and %u tables do not fit in %zu bytes", world, nt, size);
    ember_plan *plan;
    EMBER_TRY(plan_alloc(mm, (ember_plan_kind)kind, (int)world, (int)nt, (int64_t)br, &plan));
    for (uint32_t d = 0; d < world; d++) plan->budget[d] = (size_t)get_u64(&r);
    ember_status st = EMBER_OK;
    for (uint32_t i = 0; i < nt && st == EMBER_OK; i++) st = decode_table(&r, plan, (int)i);
    if (st == EMBER_OK && r.pos != r.end)
        st = BAD("ember_plan_decode: %zu bytes after the last table", r.end - r.pos);
    if (st != EMBER_OK) {
        ember_plan_destroy(plan);
        return st;
    }
    *out = plan;
    return EMBER_OK;
}

ember_status ember_plan_save(const ember_plan *plan, const char *path) {
    EMBER_CHECK_NULL(plan, "ember_plan_save");
    EMBER_CHECK_NULL(path, "ember_plan_save");
    size_t n;
    EMBER_TRY(ember_plan_encode(plan, NULL, 0, &n));
    void *buf = NULL;
    EMBER_TRY(zalloc(plan->mm, n, 1, &buf));
    ember_status st = ember_plan_encode(plan, buf, n, &n);
    size_t plen = strlen(path);
    char *tmp = NULL;
    if (st == EMBER_OK) st = zalloc(plan->mm, plen + 32, 1, &tmp);
    if (st == EMBER_OK) {
        snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (!f) {
            st = ember__error(EMBER_ERR_IO, "ember_plan_save: cannot create %s: %s", tmp, strerror(errno));
        } else {
            int ok = fwrite(buf, 1, n, f) == n;
            ok = fflush(f) == 0 && ok;
            ok = fsync(fileno(f)) == 0 && ok;
            ok = fclose(f) == 0 && ok;
            if (!ok) st = ember__error(EMBER_ERR_IO, "ember_plan_save: writing %s: %s", tmp, strerror(errno));
            else if (rename(tmp, path) != 0)
                st = ember__error(EMBER_ERR_IO, "ember_plan_save: rename %s to %s: %s", tmp, path, strerror(errno));
            if (st != EMBER_OK) remove(tmp);
        }
    }
    zfree(plan->mm, tmp);
    zfree(plan->mm, buf);
    return st;
}

ember_status ember_plan_load(const char *path, ember_memory *mm, ember_plan **out) {
    EMBER_CHECK_NULL(path, "ember_plan_load");
    EMBER_CHECK_NULL(out, "ember_plan_load");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ember__error(EMBER_ERR_IO, "ember_plan_load: cannot open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return ember__error(EMBER_ERR_IO, "ember_plan_load: cannot seek %s", path);
    }
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (len < 0) {
        fclose(f);
        return ember__error(EMBER_ERR_IO, "ember_plan_load: cannot size %s", path);
    }
    void *buf = NULL;
    ember_status st = zalloc(mm, (size_t)len, 1, &buf);
    if (st != EMBER_OK) {
        fclose(f);
        return st;
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    if (got != (size_t)len) st = ember__error(EMBER_ERR_IO, "ember_plan_load: short read of %s", path);
    else st = ember_plan_decode(buf, got, mm, out);
    zfree(mm, buf);
    if (st != EMBER_OK && st != EMBER_ERR_IO && st != EMBER_ERR_OUT_OF_MEMORY) {
        /* name the file: the decoder's message without its status prefix */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ember_last_error());
        const char *rest = strstr(msg, ": ");
        return ember__error(st, "%s (file %s)", rest ? rest + 2 : msg, path);
    }
    return st;
}
