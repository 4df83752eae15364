/*
 * cache suite: training steps of Criteo-Kaggle-shaped embedding tables (the 26 Kaggle
 * cardinalities, 33.8M rows, dim 16, Adagrad) on one-hot Zipf lookups (s = 1.15: about
 * 1% of a large table's rows take 90% of its lookups), batch 16384, through the cache
 * at 0.5%, 1.5%, 5% and 100% of every table's rows (at least 3 batches' worth of
 * slots per table, so small tables are wholly cached), over the host store and over
 * LMDB, with look-ahead 1. One call of the timed op is one step: the next batch
 * submitted, the current one prepared (hits, victims, write-back, reads, remap),
 * forward, backward with the fused update, release. "resident" is the same loop on a
 * resident collection, no cache. Peer: bench/peers/cache.py, the same loop in PyTorch
 * with full-size nn.EmbeddingBag(sparse=True) + Adagrad (its resident baseline).
 *
 * Metrics: rows (looked-up ids per second, both sides); for the cached cases also
 * cache_vs_resident (rows/s over ember's own resident rows/s), hit_rate and
 * unique_hit_rate (over the timed steps), moved (MB per step over every link) and
 * hidden (the fraction of the worker's prepare time that overlapped the step). The
 * cache is warm-started from frequency counts of batches before the timed ones, then
 * run for a few steps; timed steps use batches it has not seen.
 *
 * --device cuda: the device cache (and the resident collection) in GPU memory, the
 * prepare on host threads, each step synchronised so the host clock times it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/internal.h"

#define NT 26
#define DIM 16
#define ZIPF_S 1.15
#define SCATTER 2654435761ull
#define LR 0.01f

static const int64_t KAGGLE[NT] = {1460,  583,  10131227, 2202608, 305,  24,      12517, 633,    3,
                                   93145, 5683, 8351593,  3194,    27,   14992,   5461306, 10,   5652,
                                   2173,  4,    7046547,  18,      15,   286181,  105,   142572};

/* splitmix64: the ids are a pure function of (table, batch, sample), the same in the peer */
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Zipf rank from the continuous inverse CDF of x^-s on [1, N + 1), scattered over the
   table (the hot rows are not the first ones), as bench/peers/cache.py computes it. */
static int64_t zipf_id(uint64_t key, int64_t rows) {
    double u = (double)(mix64(key) >> 11) * (1.0 / 9007199254740992.0);
    double a = 1.0 - ZIPF_S, top = pow((double)rows + 1.0, a) - 1.0;
    int64_t r = (int64_t)floor(pow(top * u + 1.0, 1.0 / a)) - 1;
    if (r < 0) r = 0;
    if (r >= rows) r = rows - 1;
    return (int64_t)(((uint64_t)r * SCATTER) % (uint64_t)rows);
}

typedef struct data {
    int64_t rows[NT];
    int64_t B;
    int nb;                    /* batches in the pool */
    int64_t *ids;              /* (nb, NT, B) */
    int64_t *off;              /* (B + 1,) one id per bag */
    ember_jagged_feature *f;   /* (nb, NT) */
    ember_jagged *j;           /* (nb,) */
    /* --device cuda: the collection's memory, and the pool again in GPU memory for the
       resident case (the cache takes host batches: its prepare runs on the host) */
    ember_memory *mm;
    ember_tensor *dids, *doff;
    ember_jagged_feature *df;
    ember_jagged *dj;
} data;

static ember_status data_upload(data *d) {
    size_t n = (size_t)d->nb * NT * (size_t)d->B;
    EMBER_TRY(ember_memory_create(&(ember_memory_config){.device = EMBER_CUDA(0)}, &d->mm));
    ember_tensor *h = NULL;
    ember_status st = ember_tensor_wrap(d->ids, EMBER_DTYPE_I64, 1, (int64_t[]){(int64_t)n}, NULL, EMBER_CPU, &h);
    if (st == EMBER_OK) st = ember_tensor_clone(h, EMBER_TIER_DEVICE, d->mm, &d->dids);
    ember_tensor_destroy(h);
    h = NULL;
    if (st == EMBER_OK)
        st = ember_tensor_wrap(d->off, EMBER_DTYPE_I64, 1, (int64_t[]){d->B + 1}, NULL, EMBER_CPU, &h);
    if (st == EMBER_OK) st = ember_tensor_clone(h, EMBER_TIER_DEVICE, d->mm, &d->doff);
    ember_tensor_destroy(h);
    EMBER_TRY(st);
    d->df = malloc((size_t)d->nb * NT * sizeof *d->df);
    d->dj = malloc((size_t)d->nb * sizeof *d->dj);
    if (!d->df || !d->dj) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench cache: device batches");
    const int64_t *ids = ember_tensor_data(d->dids), *off = ember_tensor_data(d->doff);
    for (int k = 0; k < d->nb; k++) {
        for (int t = 0; t < NT; t++)
            d->df[k * NT + t] = (ember_jagged_feature){
                .values = ids + ((size_t)k * NT + (size_t)t) * (size_t)d->B, .offsets = off, .length = d->B};
        d->dj[k] = (ember_jagged){.batch = d->B, .num_features = NT, .features = d->df + (size_t)k * NT};
    }
    return EMBER_OK;
}

static ember_status data_make(data *d, const ember_bench_opts *o) {
    memset(d, 0, sizeof *d);
    d->B = o->tiny ? 256 : 16384;
    d->nb = o->tiny ? 24 : o->quick ? 64 : 160;
    for (int t = 0; t < NT; t++) d->rows[t] = o->tiny && KAGGLE[t] > 20000 ? 20000 : KAGGLE[t];
    size_t n = (size_t)d->nb * NT * (size_t)d->B;
    d->ids = malloc(n * sizeof *d->ids);
    d->off = malloc((size_t)(d->B + 1) * sizeof *d->off);
    d->f = malloc((size_t)d->nb * NT * sizeof *d->f);
    d->j = malloc((size_t)d->nb * sizeof *d->j);
    if (!d->ids || !d->off || !d->f || !d->j)
        return ember__error(EMBER_ERR_OUT_OF_MEMORY, "bench cache: %zu ids", n);
    for (int64_t s = 0; s <= d->B; s++) d->off[s] = s;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < d->nb; k++)
        for (int t = 0; t < NT; t++) {
            int64_t *ids = d->ids + ((size_t)k * NT + (size_t)t) * (size_t)d->B;
            for (int64_t s = 0; s < d->B; s++)
                ids[s] = zipf_id(((uint64_t)t << 56) ^ ((uint64_t)k * (uint64_t)d->B + (uint64_t)s), d->rows[t]);
        }
    for (int k = 0; k < d->nb; k++) {
        for (int t = 0; t < NT; t++)
            d->f[k * NT + t] = (ember_jagged_feature){
                .values = d->ids + ((size_t)k * NT + (size_t)t) * (size_t)d->B, .offsets = d->off, .length = d->B};
        d->j[k] = (ember_jagged){.batch = d->B, .num_features = NT, .features = d->f + (size_t)k * NT};
    }
    return o->cuda ? data_upload(d) : EMBER_OK;
}

static void data_free(data *d) {
    free(d->ids);
    free(d->off);
    free(d->f);
    free(d->j);
    free(d->df);
    free(d->dj);
    ember_tensor_destroy(d->dids);
    ember_tensor_destroy(d->doff);
    ember_memory_destroy(d->mm);
}

static ember_ebc_table_config *tables_of(const data *d, ember_ebc_table_config *tc) {
    static char names[NT][8];
    for (int t = 0; t < NT; t++) {
        snprintf(names[t], sizeof names[t], "C%d", t + 1);
        tc[t] = (ember_ebc_table_config){.name = names[t], .rows = d->rows[t], .dim = DIM};
    }
    return tc;
}

/* One step's state: batch k computes while k + 1 is prepared. */
typedef struct loop {
    const data *d;
    ember_ebc *ebc;   /* resident, or NULL */
    ember_cache *c;   /* cached, or NULL */
    ember_tensor *out, *grad;
    int64_t next_submit, step, first; /* batches submitted, steps done, first batch used */
    int look;
} loop;

static ember_status submit_ahead(loop *l) {
    while (l->next_submit <= l->step + l->look) {
        const ember_jagged *j = &l->d->j[(l->first + l->next_submit) % l->d->nb];
        EMBER_TRY(ember_cache_submit(l->c, j));
        l->next_submit++;
    }
    return EMBER_OK;
}

static ember_status step_op(void *arg) {
    loop *l = arg;
    ember_ebc_call call = {.lr = LR, .step = l->step + 1};
    if (!l->c) {
        const ember_jagged *j = &(l->d->dj ? l->d->dj : l->d->j)[(l->first + l->step) % l->d->nb];
        EMBER_TRY(ember_ebc_forward(l->ebc, j, l->out, &(ember_ebc_call){.trusted = 1}));
        call.trusted = 1;
        EMBER_TRY(ember_ebc_backward(l->ebc, j, l->grad, &call));
        l->step++;
        /* on a GPU, wait for the step, so the host clock times the work */
        return l->d->mm ? ember_device_synchronize(EMBER_CUDA(0)) : EMBER_OK;
    }
    EMBER_TRY(submit_ahead(l));
    ember_cache_batch *b = NULL;
    EMBER_TRY(ember_cache_next(l->c, &b));
    ember_status st = ember_cache_forward(l->c, b, l->out);
    if (st == EMBER_OK) st = ember_cache_backward(l->c, b, l->grad, &call);
    ember_status rs = ember_cache_release(l->c, b, 1);
    l->step++;
    if (st == EMBER_OK && rs == EMBER_OK && l->d->mm) rs = ember_device_synchronize(EMBER_CUDA(0));
    return st != EMBER_OK ? st : rs;
}

/* Take the batches still submitted, so the cache can be destroyed or flushed. */
static void drain(loop *l) {
    while (l->c && l->next_submit > l->step) {
        ember_cache_batch *b = NULL;
        if (ember_cache_next(l->c, &b) != EMBER_OK) break;
        ember_cache_release(l->c, b, 0);
        l->step++;
    }
}

typedef struct result {
    double rows_s;
    ember_cache_stats st;
} result;

static ember_status run_case(const ember_bench_opts *o, const data *d, const char *name, double ratio,
                             int lmdb, double resident_rows_s, result *res) {
    ember_ebc_table_config tc[NT];
    ember_ebc_config ec = {.num_tables = NT, .tables = tables_of(d, tc),
                           .optim = {.type = EMBER_SPARSE_OPTIM_ADAGRAD}};
    loop l = {.d = d, .look = 1};
    ember_rng rng = {.seed = 2024};
    char dir[256] = "";
    ember_tensor_params tp = {.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {d->B, NT * DIM},
                              .tier = d->mm ? EMBER_TIER_DEVICE : EMBER_TIER_HOST, .mm = d->mm};
    ember_status st = ember_tensor_create(&tp, &l.out);
    if (st == EMBER_OK) st = ember_tensor_create(&tp, &l.grad);
    ember_rng g = {.seed = 7};
    if (st == EMBER_OK) st = ember_rng_uniform(&g, l.grad, -1e-3f, 1e-3f);
    if (st != EMBER_OK) {
    } else if (ratio <= 0) {
        ember_ebc_config rc = ec;
        rc.mm = d->mm;
        rc.tier = d->mm ? EMBER_TIER_DEVICE : EMBER_TIER_HOST;
        st = ember_ebc_create(&rc, &l.ebc);
        if (st == EMBER_OK) st = ember_ebc_init_uniform(l.ebc, &rng, -0.05f, 0.05f);
    } else {
        if (lmdb) {
            const char *tmp = getenv("TMPDIR");
            snprintf(dir, sizeof dir, "%s/ember-bench-cache-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
        }
        st = ember_cache_create(&(ember_cache_config){.collection = ec,
                                                      .mm = d->mm,
                                                      .ratio = ratio,
                                                      .min_slots = 3 * d->B,
                                                      .lookahead = l.look,
                                                      .store = lmdb ? EMBER_CACHE_STORE_LMDB : EMBER_CACHE_STORE_HOST,
                                                      .path = lmdb ? dir : NULL,
                                                      .open = EMBER_CACHE_OPEN_CREATE},
                                &l.c);
        if (st == EMBER_OK) st = ember_cache_init_uniform(l.c, &rng, -0.05f, 0.05f);
        /* warm start: counts of the first batches of the pool, then a few steps */
        int warm = d->nb / 4;
        ember_freq *f = NULL;
        if (st == EMBER_OK) st = ember_freq_create(&(ember_freq_params){.num_tables = NT}, &f);
        for (int k = 0; k < warm && st == EMBER_OK; k++)
            for (int t = 0; t < NT && st == EMBER_OK; t++)
                st = ember_freq_add(f, t, d->j[k].features[t].values, d->B);
        if (st == EMBER_OK) st = ember_cache_warmup_counts(l.c, f);
        ember_freq_destroy(f);
        l.first = warm;
        for (int k = 0; k < 4 && st == EMBER_OK; k++) st = step_op(&l);
        if (st == EMBER_OK) ember_cache_reset_stats(l.c);
    }
    double sec = 0;
    if (st == EMBER_OK) st = ember_bench_time(o, step_op, &l, &sec);
    drain(&l);
    if (st == EMBER_OK && l.c) st = ember_cache_get_stats(l.c, &res->st);
    if (st == EMBER_OK) {
        res->rows_s = (double)(d->B * NT) / sec;
        char params[4096], sj[3072] = "";
        int n = snprintf(params, sizeof params,
                         "\"tables\":%d,\"rows_total\":33762577,\"dim\":%d,\"batch\":%lld,\"optim\":\"adagrad\","
                         "\"zipf_s\":%.2f,\"ratio\":%.4g,\"store\":\"%s\",\"lookahead\":%d,\"threads\":%d,\"device\":\"%s\"",
                         NT, DIM, (long long)d->B, ZIPF_S, ratio > 0 ? ratio : 1.0,
                         ratio <= 0 ? "resident" : lmdb ? "lmdb" : "host", l.look, ember_get_num_threads(),
                         d->mm ? "cuda:0" : "cpu");
        ember_bench_emit(o, "cache", name, "rows", res->rows_s, "rows/s", params);
        if (l.c) {
            const ember_cache_stats *s = &res->st;
            int64_t moved = 0;
            for (int i = 0; i < EMBER_CACHE_LINK_COUNT; i++) moved += s->bytes[i];
            if (resident_rows_s > 0)
                ember_bench_emit(o, "cache", name, "cache_vs_resident", res->rows_s / resident_rows_s, "x", params);
            ember_bench_emit(o, "cache", name, "hit_rate", s->hit_rate, "fraction", params);
            ember_bench_emit(o, "cache", name, "unique_hit_rate", s->unique_hit_rate, "fraction", params);
            ember_bench_emit(o, "cache", name, "moved", s->batches > 0 ? (double)moved / 1e6 / (double)s->batches : 0,
                             "MB/step", params);
            ember_cache_stats_json(s, sj, sizeof sj);
            snprintf(params + n, sizeof params - (size_t)n, ",\"stats\":%s", sj);
            ember_bench_emit(o, "cache", name, "hidden", s->hidden_fraction, "fraction", params);
        }
    }
    ember_tensor_destroy(l.out);
    ember_tensor_destroy(l.grad);
    ember_cache_destroy(l.c);
    ember_ebc_destroy(l.ebc);
    if (*dir) {
        char p[512];
        snprintf(p, sizeof p, "%s/data.mdb", dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/lock.mdb", dir);
        unlink(p);
        rmdir(dir);
    }
    return st;
}

ember_status ember_bench_suite_cache(const ember_bench_opts *o) {
    data d;
    ember_status st = data_make(&d, o);
    static const double ratios[] = {0.005, 0.015, 0.05, 1.0};
    static const char *rnames[] = {"0.5", "1.5", "5", "100"};
    result resident = {0};
    if (st == EMBER_OK) st = run_case(o, &d, "resident", 0, 0, 0, &resident);
    for (int lmdb = 0; lmdb < 2 && st == EMBER_OK; lmdb++)
        for (int i = 0; i < 4 && st == EMBER_OK; i++) {
            char name[32];
            snprintf(name, sizeof name, "%s_r%s", lmdb ? "lmdb" : "host", rnames[i]);
            result r = {0};
            st = run_case(o, &d, name, ratios[i], lmdb, resident.rows_s, &r);
        }
    data_free(&d);
    return st;
}
