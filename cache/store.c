/*
 * The tiered host store (DESIGN.md section 4, stage 2 of frequency-aware sharding):
 * each row of an f32 table lives in the host store as HOT (f32), WARM (f16) or COLD
 * (int8-rowwise), weights and optimizer state alike, and the device slots above it
 * always hold f32 records. A row is expanded when it is read up and recompressed when
 * it is written down, so everything above this file sees the layouts it always did.
 *
 * Where a row is. Each tier's rows are packed in one array, in id order; a rank
 * directory of 32 bytes per 64 rows (which rows are HOT, which WARM, and how many of
 * each come before) finds a row's index in its tier with two popcounts: half a byte
 * per row, against the 4 or 8 of an index per row.
 *
 * Rounding. Stochastic rounding needs random numbers that a rerun reproduces. They are
 * Philox words of the tiers' seed at an offset hashed from (table, row, the record's
 * bits): compressing the same values of the same row gives the same bits however often
 * and whenever it happens (a flush, an eviction, a row write), so the store is a
 * function of what was written, and distinct values draw independent words, which is
 * what makes the rounding unbiased.
 *
 * The state follows the weights where that is safe, and says so where it is not:
 *   Adagrad, rowwise Adagrad: f16 in WARM rows; int8-rowwise in COLD rows, one scale
 *     and bias per accumulator vector (f16 for vectors of 8 floats or fewer, rowwise
 *     Adagrad's one value, where int8 with its 8-byte header would be no smaller). An
 *     accumulator rounded low, even to 0, cannot make a step blow up: the update adds
 *     g^2 before it divides, so |step| <= lr whatever the stored value. It stays
 *     non-negative (the int8 bias is the vector's minimum; codes only add to it).
 *   Adam, AdamW: bf16 in WARM and COLD rows. Adam divides m by sqrt(v) after v decays,
 *     so a v rounded to 0 (int8 codes of a small element next to large ones, or f16
 *     underflow below 6e-8, common for embedding gradients) turns m / eps into a step
 *     of thousands. bf16 keeps f32's exponent range per element, so v is never
 *     flushed to 0 and m keeps its relative precision (2^-9).
 * f16 rounds values beyond its range to +-65504, never to infinity.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "ember/datasets.h"
#include "ember/partition.h"
#include "embedding/ebc_math.h"
#include "engine/internal.h"

#define UNSET 0xFF

const char *ember_cache_tier_name(ember_cache_tier t) {
    static const char *names[EMBER_CACHE_TIER_COUNT] = {"hot", "warm", "cold"};
    return (unsigned)t < EMBER_CACHE_TIER_COUNT ? names[t] : "invalid";
}

/* ---- layout ---- */

/* Format of a compressed vector of n floats in a tier: int8-rowwise only where it is
   smaller than f16 (n > 8). */
static int vec_format(ember_cache_tier k, int n) {
    if (k == EMBER_CACHE_TIER_WARM) return EMBER_ROW_FORMAT_F16;
    return n > 8 ? EMBER_ROW_FORMAT_INT8_ROWWISE : EMBER_ROW_FORMAT_F16;
}

static void layout(const ember__ctable *tb, int optim, ember__tstore *s) {
    const int dim = tb->dim, sf = tb->state_floats;
    const int adam = optim == EMBER_SPARSE_OPTIM_ADAM || optim == EMBER_SPARSE_OPTIM_ADAMW;
    s->rows = tb->rows;
    s->seglen = sf == 0 ? 0 : sf % dim == 0 ? dim : sf;
    s->nseg = sf == 0 ? 0 : sf / s->seglen;
    s->state_fmt[EMBER_CACHE_TIER_HOT] = EMBER_ROW_FORMAT_F32;
    s->state_fmt[EMBER_CACHE_TIER_WARM] = adam ? EMBER_ROW_FORMAT_BF16 : EMBER_ROW_FORMAT_F16;
    s->state_fmt[EMBER_CACHE_TIER_COLD] = adam ? EMBER_ROW_FORMAT_BF16 : vec_format(EMBER_CACHE_TIER_COLD, s->seglen);
    s->wb[EMBER_CACHE_TIER_HOT] = ember__row_weight_bytes(tb->format, dim);
    s->rb[EMBER_CACHE_TIER_HOT] = s->wb[EMBER_CACHE_TIER_HOT] + 4 * (size_t)sf;
    for (int k = EMBER_CACHE_TIER_WARM; k < EMBER_CACHE_TIER_COUNT; k++) {
        s->wb[k] = ember__row_weight_bytes(vec_format((ember_cache_tier)k, dim), dim);
        s->rb[k] = s->wb[k] + (s->nseg ? (size_t)s->nseg * ember__row_weight_bytes(s->state_fmt[k], s->seglen) : 0);
    }
}

ember_cache_tier ember__tstore_tier(const ember__tstore *s, int64_t id) {
    if (!s->dir) return EMBER_CACHE_TIER_HOT;
    const ember__tword *w = &s->dir[id >> 6];
    uint64_t bit = 1ull << (id & 63);
    return (w->hot & bit) ? EMBER_CACHE_TIER_HOT : (w->warm & bit) ? EMBER_CACHE_TIER_WARM : EMBER_CACHE_TIER_COLD;
}

/* Tier of row id and its index there. */
static inline int locate(const ember__tstore *s, int64_t id, int64_t *idx) {
    if (!s->dir) {
        *idx = id;
        return EMBER_CACHE_TIER_HOT;
    }
    const ember__tword *w = &s->dir[id >> 6];
    uint64_t bit = 1ull << (id & 63), below = bit - 1;
    int64_t h = w->hot_before + __builtin_popcountll(w->hot & below);
    if (w->hot & bit) {
        *idx = h;
        return EMBER_CACHE_TIER_HOT;
    }
    int64_t m = w->warm_before + __builtin_popcountll(w->warm & below);
    if (w->warm & bit) {
        *idx = m;
        return EMBER_CACHE_TIER_WARM;
    }
    *idx = id - h - m;
    return EMBER_CACHE_TIER_COLD;
}

/* ---- rows in and out ---- */

void ember__tstore_get(const ember_cache *c, int t, int64_t id, char *rec) {
    const ember__ctable *tb = &c->t[t];
    const ember__tstore *s = &tb->ts;
    int64_t i;
    int k = locate(s, id, &i);
    const char *src = s->data[k] + (size_t)i * s->rb[k];
    float *state = (float *)(rec + tb->state_offset);
    if (k == EMBER_CACHE_TIER_HOT) {
        memcpy(rec, src, s->wb[k]);
        memcpy(state, src + s->wb[k], 4 * (size_t)tb->state_floats);
        return;
    }
    ember__row_load(src, vec_format((ember_cache_tier)k, tb->dim), tb->dim, (float *)rec);
    int sfmt = s->state_fmt[k];
    size_t vb = ember__row_weight_bytes(sfmt, s->seglen);
    for (int g = 0; g < s->nseg; g++)
        ember__row_load(src + s->wb[k] + (size_t)g * vb, sfmt, s->seglen, state + (size_t)g * (size_t)s->seglen);
}

static inline uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        h = mix64(h ^ x);
    }
    if (i < n) {
        uint64_t x = 0;
        memcpy(&x, p + i, n - i);
        h = mix64(h ^ x ^ ((uint64_t)(n - i) << 56));
    }
    return h;
}

/* Compress a record into a WARM or COLD row (dst). */
static void compress_row(const ember__ctable *tb, const ember__tstore *s, int k, int stochastic, uint64_t seed,
                         uint64_t key, const char *rec, char *dst) {
    const float *w = (const float *)rec, *state = (const float *)(rec + tb->state_offset);
    int wf = vec_format((ember_cache_tier)k, tb->dim), sfmt = s->state_fmt[k];
    /* the parameters are valid by construction: nothing to fail */
    (void)ember_rows_compress(&(ember_compress_params){.format = (ember_row_format)wf, .dim = tb->dim,
                                                       .stochastic = stochastic, .seed = seed, .offset = key},
                              w, 1, dst);
    if (s->nseg)
        (void)ember_rows_compress(&(ember_compress_params){.format = (ember_row_format)sfmt, .dim = s->seglen,
                                                           .stochastic = stochastic, .seed = seed,
                                                           .offset = key + (uint64_t)tb->dim},
                                  state, s->nseg, dst + s->wb[k]);
}

void ember__tstore_put(const ember_cache *c, int t, int64_t id, const char *rec) {
    const ember__ctable *tb = &c->t[t];
    const ember__tstore *s = &tb->ts;
    int64_t i;
    int k = locate(s, id, &i);
    char *dst = s->data[k] + (size_t)i * s->rb[k];
    if (k == EMBER_CACHE_TIER_HOT) {
        memcpy(dst, rec, s->wb[k]);
        memcpy(dst + s->wb[k], rec + tb->state_offset, 4 * (size_t)tb->state_floats);
        return;
    }
    uint64_t key = 0;
    if (c->tier_stochastic) {
        key = mix64(((uint64_t)(uint32_t)t << 44) ^ (uint64_t)id ^ 0x5EEDC0DE00000000ull);
        key = hash_bytes(key, rec, 4 * (size_t)tb->dim);
        key = hash_bytes(key, rec + tb->state_offset, 4 * (size_t)tb->state_floats);
    }
    compress_row(tb, s, k, c->tier_stochastic, c->tier_seed, key, rec, dst);
}

void ember__tstore_init_rows(ember_cache *c) {
    for (int t = 0; t < c->nt; t++) {
        const ember__ctable *tb = &c->t[t];
        char *rec = c->tier_rec;
        for (int64_t id = 0; id < tb->rows; id++) {
            ember__row_generate(c, t, id, rec);
            ember__tstore_put(c, t, id, rec);
        }
    }
}

void ember__tstore_bytes(const ember_cache *c, int64_t *tier_rows, int64_t *tier_bytes, int64_t *map_bytes) {
    for (int k = 0; k < EMBER_CACHE_TIER_COUNT; k++) tier_rows[k] = tier_bytes[k] = 0;
    *map_bytes = 0;
    for (int t = 0; t < c->nt; t++) {
        const ember__tstore *s = &c->t[t].ts;
        for (int k = 0; k < EMBER_CACHE_TIER_COUNT; k++) {
            tier_rows[k] += s->n[k];
            tier_bytes[k] += s->n[k] * (int64_t)s->rb[k];
        }
        if (s->dir) *map_bytes += (int64_t)((s->rows + 63) / 64) * (int64_t)sizeof(ember__tword);
    }
}

/* ---- building the tiers ---- */

/* Ranked rows: (count, table, id), highest count first, then table and id ascending. */
typedef struct ranked {
    uint64_t count;
    int64_t id;
    int table;
} ranked;

static int ranked_cmp(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    if (x->table != y->table) return x->table < y->table ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The counted rows of table t (all of them, or the top k when k >= 0), ids checked. */
static ember_status counted_rows(const ember_cache *c, const ember_freq *f, int t, int64_t k, ranked **out,
                                 int64_t *n) {
    static const char fn[] = "ember_cache_create";
    const ember__ctable *tb = &c->t[t];
    ember_freq_table_stats fs;
    EMBER_TRY(ember_freq_get_table_stats(f, t, &fs));
    int64_t want = k >= 0 && k < fs.entries ? k : fs.entries;
    *out = NULL;
    *n = 0;
    if (want <= 0) return EMBER_OK;
    ember_freq_entry *e = malloc((size_t)want * sizeof *e);
    ranked *r = malloc((size_t)want * sizeof *r);
    if (!e || !r) {
        free(e);
        free(r);
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tiers: %lld counted rows of table %d", fn,
                            (long long)want, t);
    }
    int64_t got = 0;
    ember_status st = ember_freq_top(f, t, want, e, &got);
    for (int64_t i = 0; i < got && st == EMBER_OK; i++) {
        if (e[i].id < 0 || e[i].id >= tb->rows)
            st = ember__error(EMBER_ERR_INDEX, "%s: tiers: table %d (\"%s\"): counted id %lld is outside [0, %lld)",
                              fn, t, tb->name, (long long)e[i].id, (long long)tb->rows);
        r[i] = (ranked){.count = e[i].count, .id = e[i].id, .table = t};
    }
    free(e);
    if (st != EMBER_OK) {
        free(r);
        return st;
    }
    *out = r;
    *n = got;
    return EMBER_OK;
}

static int64_t frac_rows(double f, int64_t rows) {
    double x = ceil(f * (double)rows - 1e-9);
    if (x < 0) x = 0;
    return x >= (double)rows ? rows : (int64_t)x;
}

/* Tiers of table t from the fractions: the top of the ranking HOT, then WARM. */
static ember_status assign_fractions(const ember_cache *c, const ember_cache_tiers *ti, int t, uint8_t *tier) {
    const int64_t rows = c->t[t].rows;
    int64_t nh = frac_rows(ti->hot, rows), nw = frac_rows(ti->warm, rows);
    if (nh + nw > rows) nw = rows - nh;
    ranked *r = NULL;
    int64_t n = 0;
    EMBER_TRY(counted_rows(c, ti->counts, t, nh + nw, &r, &n));
    memset(tier, UNSET, (size_t)rows);
    int64_t pos = 0;
    for (int64_t i = 0; i < n && pos < nh + nw; i++)
        if (tier[r[i].id] == UNSET) tier[r[i].id] = pos++ < nh ? EMBER_CACHE_TIER_HOT : EMBER_CACHE_TIER_WARM;
    free(r);
    /* then the rows never counted, in increasing id */
    for (int64_t id = 0; id < rows; id++) {
        if (tier[id] != UNSET) continue;
        tier[id] = pos < nh ? EMBER_CACHE_TIER_HOT : pos < nh + nw ? EMBER_CACHE_TIER_WARM : EMBER_CACHE_TIER_COLD;
        pos++;
    }
    return EMBER_OK;
}

/* Tiers of a group of tables of one shape (dim, state) under a byte budget: their rows
   ranked together, split by ember_tiers_split. */
static ember_status assign_budget_group(const ember_cache *c, const ember_cache_tiers *ti, const int *group, int ng,
                                        double budget, uint8_t **tier) {
    static const char fn[] = "ember_cache_create";
    const ember__ctable *t0 = &c->t[group[0]];
    int64_t total = 0, ncounted = 0;
    ranked *all = NULL;
    ember_status st = EMBER_OK;
    for (int g = 0; g < ng && st == EMBER_OK; g++) {
        int t = group[g];
        total += c->t[t].rows;
        ranked *r = NULL;
        int64_t n = 0;
        st = counted_rows(c, ti->counts, t, -1, &r, &n);
        if (st != EMBER_OK || n == 0) {
            free(r);
            continue;
        }
        ranked *grown = realloc(all, (size_t)(ncounted + n) * sizeof *all);
        if (!grown) {
            free(r);
            st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tiers: %lld counted rows", fn, (long long)(ncounted + n));
            break;
        }
        all = grown;
        memcpy(all + ncounted, r, (size_t)n * sizeof *r);
        ncounted += n;
        free(r);
    }
    uint64_t *counts = st == EMBER_OK ? calloc((size_t)total, sizeof *counts) : NULL;
    if (st == EMBER_OK && !counts)
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tiers: counts of %lld rows", fn, (long long)total);
    ember_tier_split split = {0};
    if (st == EMBER_OK) {
        if (ncounted > 0) qsort(all, (size_t)ncounted, sizeof *all, ranked_cmp);
        for (int64_t i = 0; i < ncounted; i++) counts[i] = all[i].count;
        ember__tstore probe;
        layout(t0, c->optim, &probe);
        int64_t sf = t0->state_floats;
        st = ember_tiers_split(&(ember_tier_params){
                                   .rows = total, .counts = counts, .dim = t0->dim, .state_bytes = 4 * sf,
                                   .budget = budget <= 0 ? 0 : (size_t)budget,
                                   .state_bytes_f16 = (int64_t)(probe.rb[EMBER_CACHE_TIER_WARM] -
                                                                probe.wb[EMBER_CACHE_TIER_WARM]),
                                   .state_bytes_int8 = (int64_t)(probe.rb[EMBER_CACHE_TIER_COLD] -
                                                                 probe.wb[EMBER_CACHE_TIER_COLD])},
                               &split);
        if (st != EMBER_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ember_last_error());
            const char *name = ember_status_name(st), *text = msg;
            size_t nl = strlen(name);
            if (strncmp(msg, name, nl) == 0 && msg[nl] == ':' && msg[nl + 1] == ' ') text = msg + nl + 2;
            st = ember__error(st, "%s: tiers: the %d table(s) of dim %d from table %d (\"%s\") under a budget of "
                              "%.0f bytes: %s", fn, ng, t0->dim, group[0], t0->name, budget, text);
        }
    }
    free(counts);
    if (st == EMBER_OK) {
        int64_t h = split.hot_rows, w = split.warm_rows, pos = 0;
        for (int g = 0; g < ng; g++) memset(tier[g], UNSET, (size_t)c->t[group[g]].rows);
        /* group[] is in increasing table order: find a table's slot */
        for (int64_t i = 0; i < ncounted; i++) {
            int g = 0;
            while (group[g] != all[i].table) g++;
            if (tier[g][all[i].id] != UNSET) continue;
            tier[g][all[i].id] = pos < h ? EMBER_CACHE_TIER_HOT : pos < h + w ? EMBER_CACHE_TIER_WARM
                                                                              : EMBER_CACHE_TIER_COLD;
            pos++;
        }
        for (int g = 0; g < ng; g++)
            for (int64_t id = 0; id < c->t[group[g]].rows; id++) {
                if (tier[g][id] != UNSET) continue;
                tier[g][id] = pos < h ? EMBER_CACHE_TIER_HOT : pos < h + w ? EMBER_CACHE_TIER_WARM
                                                                           : EMBER_CACHE_TIER_COLD;
                pos++;
            }
    }
    free(all);
    return st;
}

static ember_status check_tiers(const ember_cache *c, const ember_cache_tiers *ti) {
    static const char fn[] = "ember_cache_create";
    int ways = (ti->maps != NULL) + (ti->counts != NULL);
    if (ways != 1)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: give either maps (the tier of every row) or "
                            "counts (rows ranked by frequency), %s", fn, ways ? "not both" : "neither is set");
    if ((unsigned)ti->rounding >= EMBER_CACHE_ROUNDING_COUNT)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: rounding %d is not an ember_cache_rounding", fn,
                            (int)ti->rounding);
    if (ti->maps && (ti->hot != 0 || ti->warm != 0 || ti->budget))
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: hot, warm and budget go with counts, not with "
                            "maps", fn);
    if (ti->counts) {
        if (!(ti->hot >= 0 && ti->hot <= 1) || !(ti->warm >= 0 && ti->warm <= 1) || ti->hot + ti->warm > 1 + 1e-12)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: fractions hot %g and warm %g must lie in "
                                "[0, 1] with hot + warm <= 1", fn, ti->hot, ti->warm);
        if (ti->budget && (ti->hot != 0 || ti->warm != 0))
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: give the fractions hot and warm or a "
                                "budget, not both", fn);
        int nf = ember_freq_num_tables(ti->counts);
        if (nf != c->nt)
            return ember__error(EMBER_ERR_SHAPE, "%s: tiers: the counts cover %d tables; the cache has %d", fn, nf,
                                c->nt);
    }
    for (int t = 0; ti->maps && t < c->nt; t++) {
        const ember_cache_tier_map *m = &ti->maps[t];
        const ember__ctable *tb = &c->t[t];
        if (!m->tier) continue;
        if (m->rows != tb->rows)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: maps[%d] has %lld rows; table %d (\"%s\") "
                                "has %lld", fn, t, (long long)m->rows, t, tb->name, (long long)tb->rows);
        for (int64_t i = 0; i < m->rows; i++) {
            if (m->tier[i] >= EMBER_CACHE_TIER_COUNT)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: maps[%d].tier[%lld] = %d is not an "
                                    "ember_cache_tier", fn, t, (long long)i, (int)m->tier[i]);
            if (m->tier[i] != EMBER_CACHE_TIER_HOT && tb->format != EMBER_ROW_FORMAT_F32)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: tiers: maps[%d].tier[%lld] is %s, but table %d "
                                    "(\"%s\") is stored %s: only f32 tables are tiered", fn, t, (long long)i,
                                    ember_cache_tier_name((ember_cache_tier)m->tier[i]), t, tb->name,
                                    ember_row_format_name((ember_row_format)tb->format));
        }
    }
    return EMBER_OK;
}

/* Table t's store from its tier per row (NULL: all HOT): directory, arrays, and every
   row at weights 0 and the initial state. */
static ember_status build_table(ember_cache *c, int t, const uint8_t *tier) {
    static const char fn[] = "ember_cache_create";
    ember__ctable *tb = &c->t[t];
    ember__tstore *s = &tb->ts;
    layout(tb, c->optim, s);
    int any = 0;
    for (int64_t i = 0; tier && i < tb->rows && !any; i++) any = tier[i] != EMBER_CACHE_TIER_HOT;
    if (!any) {
        s->n[EMBER_CACHE_TIER_HOT] = tb->rows;
    } else {
        int64_t nw = (tb->rows + 63) / 64;
        EMBER_TRY(ember_memory_alloc(c->mm, EMBER_TIER_HOST, EMBER_MEM_CACHE, (size_t)nw * sizeof *s->dir,
                                     (void **)&s->dir));
        int64_t hb = 0, wbf = 0;
        for (int64_t w = 0; w < nw; w++) {
            ember__tword d = {.hot_before = hb, .warm_before = wbf};
            for (int64_t i = w * 64; i < tb->rows && i < w * 64 + 64; i++) {
                uint64_t bit = 1ull << (i & 63);
                if (tier[i] == EMBER_CACHE_TIER_HOT) d.hot |= bit;
                else if (tier[i] == EMBER_CACHE_TIER_WARM) d.warm |= bit;
            }
            hb += __builtin_popcountll(d.hot);
            wbf += __builtin_popcountll(d.warm);
            s->dir[w] = d;
        }
        s->n[EMBER_CACHE_TIER_HOT] = hb;
        s->n[EMBER_CACHE_TIER_WARM] = wbf;
        s->n[EMBER_CACHE_TIER_COLD] = tb->rows - hb - wbf;
    }
    /* the initial record (weights 0, state initial), compressed to nearest once per tier */
    char *rec = c->tier_rec;
    memset(rec, 0, tb->rb);
    float *state = (float *)(rec + tb->state_offset);
    for (int j = 0; j < tb->state_floats; j++) state[j] = c->state0;
    for (int k = 0; k < EMBER_CACHE_TIER_COUNT; k++) {
        if (s->n[k] == 0) continue;
        size_t bytes;
        if (!ember__mul_size((size_t)s->n[k], s->rb[k], &bytes))
            return ember__error(EMBER_ERR_OVERFLOW, "%s: table %d: %lld %s rows", fn, t, (long long)s->n[k],
                                ember_cache_tier_name((ember_cache_tier)k));
        ember_status st = ember_memory_alloc(c->mm, EMBER_TIER_HOST, EMBER_MEM_PARAMETER, bytes, (void **)&s->data[k]);
        if (st != EMBER_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ember_last_error());
            return ember__error(st, "%s: table %d (\"%s\"): the host store's %lld %s rows: %s", fn, t, tb->name,
                                (long long)s->n[k], ember_cache_tier_name((ember_cache_tier)k), msg);
        }
        char *first = s->data[k];
        if (k == EMBER_CACHE_TIER_HOT) {
            memcpy(first, rec, s->wb[k]);
            memcpy(first + s->wb[k], state, 4 * (size_t)tb->state_floats);
        } else {
            compress_row(tb, s, k, 0, 0, 0, rec, first);
        }
        /* doubling copies fill the rest */
        size_t have = s->rb[k];
        while (have < bytes) {
            size_t m = have < bytes - have ? have : bytes - have;
            memcpy(first + have, first, m);
            have += m;
        }
    }
    return EMBER_OK;
}

ember_status ember__tstore_create(ember_cache *c, const ember_cache_tiers *ti) {
    static const char fn[] = "ember_cache_create";
    EMBER_TRY(check_tiers(c, ti));
    size_t maxrb = 16;
    int64_t maxrows = 1;
    for (int t = 0; t < c->nt; t++) {
        maxrb = c->t[t].rb > maxrb ? c->t[t].rb : maxrb;
        maxrows = c->t[t].rows > maxrows ? c->t[t].rows : maxrows;
    }
    c->tier_rec = malloc(maxrb);
    if (!c->tier_rec) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tiers", fn);
    c->tier_stochastic = ti->rounding == EMBER_CACHE_ROUNDING_STOCHASTIC;
    c->tier_seed = ti->seed;
    ember_status st = EMBER_OK;
    if (ti->maps) {
        for (int t = 0; t < c->nt && st == EMBER_OK; t++) st = build_table(c, t, ti->maps[t].tier);
        return st;
    }
    if (!ti->budget) {
        uint8_t *tier = malloc((size_t)maxrows);
        if (!tier) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tiers: %lld rows", fn, (long long)maxrows);
        for (int t = 0; t < c->nt && st == EMBER_OK; t++) {
            if (c->t[t].format != EMBER_ROW_FORMAT_F32) {
                st = build_table(c, t, NULL);
                continue;
            }
            st = assign_fractions(c, ti, t, tier);
            if (st == EMBER_OK) st = build_table(c, t, tier);
        }
        free(tier);
        return st;
    }
    /* budget: groups of f32 tables of one shape, each a share of the budget by its f32 bytes */
    int *group = malloc((size_t)c->nt * sizeof *group);
    uint8_t **tiers = calloc((size_t)c->nt, sizeof *tiers);
    char *done = calloc((size_t)c->nt, 1);
    if (!group || !tiers || !done) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tiers", fn);
    double f32_all = 0;
    for (int t = 0; t < c->nt; t++)
        if (c->t[t].format == EMBER_ROW_FORMAT_F32) {
            ember__tstore probe;
            layout(&c->t[t], c->optim, &probe);
            f32_all += (double)c->t[t].rows * (double)probe.rb[EMBER_CACHE_TIER_HOT];
        }
    for (int t = 0; t < c->nt && st == EMBER_OK; t++) {
        if (done[t]) continue;
        if (c->t[t].format != EMBER_ROW_FORMAT_F32) {
            done[t] = 1;
            st = build_table(c, t, NULL);
            continue;
        }
        int ng = 0;
        double f32_group = 0;
        for (int u = t; u < c->nt; u++)
            if (!done[u] && c->t[u].format == EMBER_ROW_FORMAT_F32 && c->t[u].dim == c->t[t].dim &&
                c->t[u].state_floats == c->t[t].state_floats) {
                ember__tstore probe;
                layout(&c->t[u], c->optim, &probe);
                f32_group += (double)c->t[u].rows * (double)probe.rb[EMBER_CACHE_TIER_HOT];
                group[ng++] = u;
                done[u] = 1;
            }
        for (int g = 0; g < ng && st == EMBER_OK; g++) {
            tiers[g] = malloc((size_t)c->t[group[g]].rows);
            if (!tiers[g]) st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: tiers", fn);
        }
        double share = ng == 0 ? 0 : (double)ti->budget * (f32_all > 0 ? f32_group / f32_all : 1.0);
        if (st == EMBER_OK) st = assign_budget_group(c, ti, group, ng, floor(share), tiers);
        for (int g = 0; g < ng && st == EMBER_OK; g++) st = build_table(c, group[g], tiers[g]);
        for (int g = 0; g < ng; g++) {
            free(tiers[g]);
            tiers[g] = NULL;
        }
    }
    free(group);
    free(tiers);
    free(done);
    return st;
}

void ember__tstore_free(ember_cache *c) {
    for (int t = 0; c->t && t < c->nt; t++) {
        ember__tstore *s = &c->t[t].ts;
        if (s->dir) ember_memory_free(c->mm, s->dir);
        for (int k = 0; k < EMBER_CACHE_TIER_COUNT; k++)
            if (s->data[k]) ember_memory_free(c->mm, s->data[k]);
        memset(s, 0, sizeof *s);
    }
    free(c->tier_rec);
    c->tier_rec = NULL;
}
